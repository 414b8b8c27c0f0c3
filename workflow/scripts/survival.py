# Thin: unpack the snakemake object, call one library function.
from featureaudit.config import Thresholds, UncertaintyConfig, from_params
from featureaudit.measure.survival import write_survival
from featureaudit.pipeline.run_step import run_step
from featureaudit.sae.codes import hook_codes

i, o, p, hook = snakemake.input, snakemake.output, snakemake.params, snakemake.wildcards.hook
run_step(snakemake, write_survival, hook_codes(i.fp, hook), hook_codes(i.variant, hook), i.statistics, i.tokens,
         i.contexts, o.table, o.replicates, o.evidence, from_params(Thresholds, p.thresholds),
         from_params(UncertaintyConfig, p.uncertainty))
