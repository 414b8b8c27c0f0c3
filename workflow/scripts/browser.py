# Thin: unpack the snakemake object, call one library function.
from featureaudit.browser import write_browser
from featureaudit.runner import run_step

i, p = snakemake.input, snakemake.params
run_step(snakemake, write_browser, snakemake.wildcards.model, p.variants, i.survival, i.risk, i.contexts, i.evidence,
         i.summary, p.source, p.thresholds, snakemake.output[0], dict(zip(p.causal_variants, i.causal)))
