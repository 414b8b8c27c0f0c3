# Thin: unpack the snakemake object, call one library function.
from featureaudit.config import ModelRun, from_params
from featureaudit.pipeline.run_step import run_step
from featureaudit.variant.fp_heldout import write_fp_heldout

p, i = snakemake.params, snakemake.input
run_step(snakemake, write_fp_heldout, from_params(ModelRun, p.run), p.batch_size, i.tokens, i.reference,
         snakemake.output[0], p.split)
