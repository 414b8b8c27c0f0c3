# Thin: unpack the snakemake object, call one library function.
from featureaudit.config import EvidenceConfig, UncertaintyConfig, from_params
from featureaudit.measure.fp_statistics import write_fp_statistics
from featureaudit.pipeline.run_step import run_step
from featureaudit.sae.codes import hook_codes

i, o, p, hook = snakemake.input, snakemake.output, snakemake.params, snakemake.wildcards.hook
run_step(snakemake, write_fp_statistics, hook_codes(i.codes, hook), i.sae, i.tokens, o.statistics, o.blocks,
         o.contexts, from_params(UncertaintyConfig, p.uncertainty), from_params(EvidenceConfig, p.evidence))
