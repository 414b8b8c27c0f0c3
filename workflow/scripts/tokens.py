# Thin: unpack the snakemake object, call one library function.
from featureaudit.config import CorpusConfig, ModelSource, TokenBudget, from_params
from featureaudit.runner import run_step
from featureaudit.tokens import make_tokens

p = snakemake.params
run_step(snakemake, make_tokens, from_params(ModelSource, p.source), from_params(CorpusConfig, p.corpus),
         from_params(TokenBudget, p.budget), snakemake.output[0])
