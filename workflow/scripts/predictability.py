# Thin: unpack the snakemake object, call one library step.
from featureaudit import steps
from featureaudit.runner import run_step

run_step(snakemake, steps.predictability_step, snakemake.input[0], snakemake.output[0])
