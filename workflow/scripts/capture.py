# Thin: unpack the snakemake object, call one library function.
from featureaudit.capture import capture_variant
from featureaudit.config import CaptureSettings, ModelRun, from_params
from featureaudit.runner import run_step

p, i = snakemake.params, snakemake.input
run_step(snakemake, capture_variant, snakemake.wildcards.variant, from_params(ModelRun, p.run),
         from_params(CaptureSettings, p.capture), p.pruning_scope, i.tokens, i.reference, i.sae,
         snakemake.output[0], i.matched or None,
         i.checkpoint or None)
