# Thin: unpack the snakemake object, call one library function.
from featureaudit.config import ModelSource, from_params
from featureaudit.models import make_reference
from featureaudit.runner import run_step

run_step(snakemake, make_reference, from_params(ModelSource, snakemake.params.source), snakemake.output[0])
