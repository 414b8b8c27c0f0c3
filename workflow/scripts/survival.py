# Thin: unpack the snakemake object, call one library function.
from featureaudit.config import Thresholds, from_params
from featureaudit.runner import run_step
from featureaudit.survival import write_survival

i = snakemake.input
run_step(snakemake, write_survival, i.fp, i.variant, i.statistics, snakemake.output[0],
         from_params(Thresholds, snakemake.params.thresholds))
