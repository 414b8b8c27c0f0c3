# Thin: unpack the snakemake object, call one library function.
from featureaudit.pipeline.run_step import run_step
from featureaudit.report.corpus_figure import write_corpus_figure

run_step(snakemake, write_corpus_figure, snakemake.input.summary, snakemake.output)
