# Thin: unpack the snakemake object, call one library function.
from featureaudit.overlap import write_overlap
from featureaudit.runner import run_step

i = snakemake.input
run_step(snakemake, write_overlap, i.quantized, i.pruned, i.matched, snakemake.output[0])
