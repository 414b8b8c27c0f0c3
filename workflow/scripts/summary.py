# Thin: unpack the snakemake object, call one library function.
from featureaudit.config import GateConfig, UncertaintyConfig, from_params
from featureaudit.pipeline.run_step import run_step
from featureaudit.report.summary import CorpusInputs, write_summary

i, p = snakemake.input, snakemake.params
run_step(snakemake, write_summary, p.variants, list(p.hooks), i.survival, i.metrics, i.predictability, i.replicates,
         i.overlap, snakemake.output[0], from_params(UncertaintyConfig, p.uncertainty),
         from_params(GateConfig, p.gate), list(i.causal), list(i.runtime), dict(p.methods), p.corpus,
         CorpusInputs(list(p.corpora), list(i.corpus_survival), list(i.corpus_metrics), list(i.corpus_predictability),
                      list(i.corpus_replicates)), i.scan[0] if i.scan else None, p.high)
