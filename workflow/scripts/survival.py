# Thin: unpack the snakemake object, call one library step.
from featureaudit import steps
from featureaudit.runner import run_step

i = snakemake.input
run_step(snakemake, steps.survival, i.fp, i.variant, i.statistics, snakemake.output[0])
