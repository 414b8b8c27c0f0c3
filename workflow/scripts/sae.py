# Thin: unpack the snakemake object, call one library step.
from featureaudit import steps
from featureaudit.runner import run_step

run_step(snakemake, steps.make_sae, snakemake.wildcards.model, snakemake.input.tokens, snakemake.input.reference, snakemake.output[0])
