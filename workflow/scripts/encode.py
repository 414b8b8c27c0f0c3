# Thin: unpack the snakemake object, call one library step.
from featureaudit import steps
from featureaudit.runner import run_step

run_step(snakemake, lambda cfg: steps.encode(cfg, snakemake.input.sae, snakemake.input.activations, snakemake.output[0]))
