# Thin: unpack the snakemake object, call one library function.
from featureaudit.pipeline.run_step import run_step
from featureaudit.report.figures import write_figures

i, p = snakemake.input, snakemake.params
run_step(snakemake, write_figures, i.summary, snakemake.wildcards.hook, p.variants, i.survival, i.predictability,
         p.quantized, i.overlap, snakemake.output, p.gate["perplexity_tolerance"],
         dict(zip(p.causal_variants, i.causal)), p.thresholds["survived_r"])
