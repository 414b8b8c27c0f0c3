# Thin: unpack the snakemake object, call one library function.
from featureaudit.compress.llama_cpp_presets import write_preset
from featureaudit.pipeline.run_step import run_step

i, q = snakemake.input, snakemake.params.quantize
run_step(snakemake, write_preset, i.gguf, q["base"], i.imatrix, snakemake.output[0], snakemake.threads,
         i.recipe or None, q["pure"])
