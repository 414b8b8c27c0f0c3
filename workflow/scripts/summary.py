# Thin: unpack the snakemake object, call one library step.
from featureaudit import steps
from featureaudit.runner import run_step

i = snakemake.input
run_step(snakemake, steps.summary, snakemake.params.variants, i.survival, i.metrics, i.predictability, snakemake.output[0])
