# Thin: unpack the snakemake object, call one library function.
from featureaudit.pipeline.run_step import run_step
from featureaudit.report.figures import write_depth_figure

run_step(snakemake, write_depth_figure, snakemake.input.summary, snakemake.output)
