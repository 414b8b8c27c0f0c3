# Thin: unpack the snakemake object, call one library function.
from featureaudit.config import EvidenceConfig, UncertaintyConfig, from_params
from featureaudit.measure.fp_statistics import write_fp_statistics
from featureaudit.pipeline.run_step import run_step

i, o, p = snakemake.input, snakemake.output, snakemake.params
run_step(snakemake, write_fp_statistics, i.codes, i.sae, i.tokens, o.statistics, o.blocks, o.contexts,
         from_params(UncertaintyConfig, p.uncertainty), from_params(EvidenceConfig, p.evidence))
