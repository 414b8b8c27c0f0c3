# Thin: unpack the snakemake object, call one library function.
from featureaudit.config import ModelRun, PruningCurve, from_params
from featureaudit.measure.matched_pruning import write_curve
from featureaudit.pipeline.run_step import run_step

p, i = snakemake.params, snakemake.input
run_step(snakemake, write_curve, from_params(ModelRun, p.run), from_params(PruningCurve, p.curve), p.batch_size,
         i.tokens, i.reference, snakemake.output[0])
