# Thin: unpack the snakemake object, call one library step.
from featureaudit import steps
from featureaudit.runner import run_step

run_step(snakemake, steps.make_tokens, snakemake.wildcards.model, snakemake.output[0])
