# Thin: unpack the snakemake object, call one library function.
from featureaudit.config import Thresholds, UncertaintyConfig, from_params
from featureaudit.measure.survival import write_survival
from featureaudit.pipeline.run_step import run_step

i, o, p = snakemake.input, snakemake.output, snakemake.params
run_step(snakemake, write_survival, i.fp, i.variant, i.statistics, i.tokens, i.contexts, o.table, o.replicates,
         o.evidence, from_params(Thresholds, p.thresholds), from_params(UncertaintyConfig, p.uncertainty))
