# Thin: unpack the snakemake object, call one library step.
from featureaudit import steps
from featureaudit.runner import run_step

run_step(snakemake, lambda cfg: steps.fp_statistics(snakemake.input.codes, snakemake.input.sae, snakemake.output[0]))
