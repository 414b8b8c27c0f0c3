# Thin: unpack the snakemake object, call one library function.
from featureaudit.config import CorpusConfig, ModelSource, TokenBudget, from_params
from featureaudit.inputs.tokens import write_tokens
from featureaudit.pipeline.run_step import run_step

p = snakemake.params
run_step(snakemake, write_tokens, from_params(ModelSource, p.source), from_params(CorpusConfig, p.corpus),
         from_params(TokenBudget, p.budget), snakemake.output[0])
