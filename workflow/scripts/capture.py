# Thin: unpack the snakemake object, call one library step.
from featureaudit import steps
from featureaudit.runner import run_step

w, i = snakemake.wildcards, snakemake.input
run_step(snakemake, steps.capture, w.model, w.variant, i.tokens, i.reference, i.sae, snakemake.output[0], i.matched or None)
