# Thin: unpack the snakemake object, call one library function.
from featureaudit.config import CaptureSettings, CausalConfig, ModelRun, Thresholds, from_params
from featureaudit.measure.causal import write_variant_causal
from featureaudit.pipeline.run_step import run_step

i, o, p = snakemake.input, snakemake.output, snakemake.params
capture = from_params(CaptureSettings, p.capture)
inputs = {k: (v if isinstance(v, str) else (v[0] if len(v) else None)) for k, v in i.items()}
run_step(snakemake, write_variant_causal, snakemake.wildcards.variant, from_params(ModelRun, p.run), capture.hook,
         capture.center, capture.prepend_bos, p.pruning_scope, from_params(CausalConfig, p.causal),
         from_params(Thresholds, p.thresholds), p.level, inputs, o.table, o.json)
