# Thin: unpack the snakemake object, call one library function.
from featureaudit.pipeline.run_step import run_step
from featureaudit.report.browser import write_browser

i, p, w = snakemake.input, snakemake.params, snakemake.wildcards
run_step(snakemake, write_browser, w.model, w.hook, list(p.hooks), p.variants, i.survival, i.risk, i.contexts,
         i.evidence, i.summary, p.source, p.thresholds, snakemake.output[0], dict(zip(p.causal_variants, i.causal)))
