# Thin: unpack the snakemake object, call one library step.
from featureaudit import steps
from featureaudit.runner import run_step

i = snakemake.input
run_step(snakemake, lambda cfg: steps.overlap_step(i.quantized, i.pruned, i.matched, snakemake.output[0]))
