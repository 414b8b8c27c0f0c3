# Thin: unpack the snakemake object, call one library step.
from featureaudit import steps
from featureaudit.runner import run_step

w, i = snakemake.wildcards, snakemake.input
run_step(snakemake, steps.match_pruning, w.model, w.quantized, i.tokens, i.reference, snakemake.output[0])
