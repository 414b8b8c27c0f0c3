# Thin: unpack the snakemake object, call one library function.
from featureaudit.config import PredictabilityConfig, UncertaintyConfig, from_params
from featureaudit.measure.predictability import write_predictability
from featureaudit.pipeline.run_step import run_step

i, o, p = snakemake.input, snakemake.output, snakemake.params
run_step(snakemake, write_predictability, i.survival, i.replicates, i.blocks, o.auc, o.risk,
         from_params(PredictabilityConfig, p.settings), from_params(UncertaintyConfig, p.uncertainty))
