# Thin: unpack the snakemake object, call one library function.
from featureaudit.config import CorpusConfig, ModelSource, from_params
from featureaudit.inputs.tokens import write_scan_tokens
from featureaudit.pipeline.run_step import run_step

p = snakemake.params
run_step(snakemake, write_scan_tokens, from_params(ModelSource, p.source), from_params(CorpusConfig, p.corpus),
         p.n_tokens, p.seed, list(snakemake.input.taken), snakemake.output[0])
