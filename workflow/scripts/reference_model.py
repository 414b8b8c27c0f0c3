# Thin: unpack the snakemake object, call one library function.
from featureaudit.config import ModelSource, from_params
from featureaudit.model.reference import write_reference
from featureaudit.pipeline.run_step import run_step

run_step(snakemake, write_reference, from_params(ModelSource, snakemake.params.source), snakemake.output[0])
