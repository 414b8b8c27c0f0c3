# Thin: unpack the snakemake object, call one library function.
from featureaudit.config import UncertaintyConfig, from_params
from featureaudit.measure.method_overlap import write_method_overlap
from featureaudit.pipeline.run_step import run_step

i, p = snakemake.input, snakemake.params
run_step(snakemake, write_method_overlap, list(p.variants), dict(p.methods), list(i.survival), list(i.replicates),
         snakemake.output[0], from_params(UncertaintyConfig, p.uncertainty))
