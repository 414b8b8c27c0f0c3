# Thin: unpack the snakemake object, call one library function.
from featureaudit.config import UncertaintyConfig, from_params
from featureaudit.measure.overlap import write_overlap
from featureaudit.pipeline.run_step import run_step

i = snakemake.input
run_step(snakemake, write_overlap, i.quantized, i.pruned, i.matched, i.quantized_replicates, i.pruned_replicates,
         snakemake.output[0], from_params(UncertaintyConfig, snakemake.params.uncertainty))
