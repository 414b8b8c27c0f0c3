# Thin: unpack the snakemake object, call one library function.
from featureaudit.config import AuditCorpus, ModelSource, from_params
from featureaudit.inputs.tokens import write_corpus_tokens
from featureaudit.pipeline.run_step import run_step

p = snakemake.params
run_step(snakemake, write_corpus_tokens, from_params(ModelSource, p.source), from_params(AuditCorpus, p.corpus),
         p.context_length, p.prepend_bos, list(snakemake.input.taken), snakemake.output[0])
