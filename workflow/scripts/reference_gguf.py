# Thin: unpack the snakemake object, call one library function.
from featureaudit.compress.llama_cpp_presets import write_reference_gguf
from featureaudit.pipeline.run_step import run_step

run_step(snakemake, write_reference_gguf, snakemake.input.reference, snakemake.output[0])
