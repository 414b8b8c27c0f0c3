# Thin: unpack the snakemake object, call one library function.
from featureaudit.measure.domains import DomainInputs, write_domains
from featureaudit.pipeline.run_step import run_step

i, p = snakemake.input, snakemake.params
corpora, hooks, variants = list(p.corpora), list(p.hooks), dict(p.variants)
inputs = DomainInputs.from_lists(corpora, hooks, variants, list(i.survival), list(i.fp_metrics),
                                 list(i.fp_activations), list(i.saes))
run_step(snakemake, write_domains, corpora, hooks, variants, inputs, snakemake.output[0])
