# Thin: unpack the snakemake object, call one library function.
from featureaudit.plots import make_figures
from featureaudit.runner import run_step

i, p = snakemake.input, snakemake.params
run_step(snakemake, make_figures, i.summary, p.variants, i.survival, i.predictability, p.quantized, i.overlap,
         snakemake.output, p.gate["perplexity_tolerance"], dict(zip(p.causal_variants, i.causal)),
         p.thresholds["survived_r"])
