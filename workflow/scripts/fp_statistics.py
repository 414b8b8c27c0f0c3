# Thin: unpack the snakemake object, call one library function.
from featureaudit.runner import run_step
from featureaudit.statistics import write_fp_statistics

run_step(snakemake, write_fp_statistics, snakemake.input.codes, snakemake.input.sae, snakemake.output[0])
