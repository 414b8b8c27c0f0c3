# Thin: unpack the snakemake object, call one library function.
from featureaudit.config import CaptureSettings, Thresholds, from_params
from featureaudit.runner import run_step
from featureaudit.runtime import audit_runtime

i, p = snakemake.input, snakemake.params
run_step(snakemake, audit_runtime, snakemake.wildcards.variant, i.gguf, i.tokens, i.sae, i.activations, i.fp_codes,
         i.variant_codes, from_params(CaptureSettings, p.capture), from_params(Thresholds, p.thresholds), p.n_tokens,
         snakemake.threads, snakemake.output[0])
