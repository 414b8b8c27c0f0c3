# Thin: unpack the snakemake object, call one library function.
from featureaudit.runner import run_step
from featureaudit.summary import write_summary

i = snakemake.input
run_step(snakemake, write_summary, snakemake.params.variants, i.survival, i.metrics, i.predictability,
         snakemake.output[0])
