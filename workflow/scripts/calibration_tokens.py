# Thin: unpack the snakemake object, call one library function.
from featureaudit.calibration import make_calibration
from featureaudit.config import CorpusConfig, ModelSource, TokenBudget, from_params
from featureaudit.runner import run_step

p = snakemake.params
run_step(snakemake, make_calibration, from_params(ModelSource, p.source), from_params(CorpusConfig, p.corpus),
         from_params(TokenBudget, p.budget), p.n_tokens, snakemake.output[0])
