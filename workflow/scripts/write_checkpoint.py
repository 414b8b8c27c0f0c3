# Thin: unpack the snakemake object, call one library function.
from featureaudit.compress.gguf_writer import write_mixed_gguf
from featureaudit.pipeline.run_step import run_step

run_step(snakemake, write_mixed_gguf, snakemake.input.reference, snakemake.params.mix, snakemake.output[0])
