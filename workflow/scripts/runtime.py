# Thin: unpack the snakemake object, call one library function.
from featureaudit.config import CaptureSettings, Thresholds, from_params
from featureaudit.measure.llama_cpp_activations import write_runtime_audit
from featureaudit.pipeline.run_step import run_step

i, p = snakemake.input, snakemake.params
run_step(snakemake, write_runtime_audit, snakemake.wildcards.variant, i.gguf, i.tokens, list(i.saes), i.activations,
         i.fp_codes, i.variant_codes, [from_params(CaptureSettings, c) for c in p.captures],
         from_params(Thresholds, p.thresholds), p.n_tokens, snakemake.threads, snakemake.output[0])
