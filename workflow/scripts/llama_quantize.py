# Thin: unpack the snakemake object, call one library function.
from featureaudit.compress.llama_cpp_presets import write_preset
from featureaudit.pipeline.run_step import run_step

i = snakemake.input
run_step(snakemake, write_preset, i.gguf, snakemake.params.preset, i.imatrix, snakemake.output[0], snakemake.threads)
