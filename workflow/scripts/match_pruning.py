# Thin: unpack the snakemake object, call one library function.
from featureaudit.config import MatchSearch, ModelRun, from_params
from featureaudit.measure.matched_pruning import write_matched
from featureaudit.pipeline.run_step import run_step

p, i = snakemake.params, snakemake.input
run_step(snakemake, write_matched, snakemake.wildcards.quantized, from_params(ModelRun, p.run),
         from_params(MatchSearch, p.search), p.batch_size, i.tokens, i.reference, i.curve,
         snakemake.output[0])
