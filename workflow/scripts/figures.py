# Thin: unpack the snakemake object, call one library step.
from featureaudit import steps
from featureaudit.runner import run_step

from featureaudit.plots import make_figures
i = snakemake.input
run_step(snakemake, lambda cfg: make_figures(i.summary, snakemake.params.variants, i.survival, i.predictability, snakemake.params.quantized, i.overlap, snakemake.output, cfg.survival))
