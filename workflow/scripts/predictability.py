# Thin: unpack the snakemake object, call one library function.
from featureaudit.config import PredictabilityConfig, from_params
from featureaudit.predict import write_predictability
from featureaudit.runner import run_step

run_step(snakemake, write_predictability, snakemake.input[0], snakemake.output[0],
         from_params(PredictabilityConfig, snakemake.params.settings))
