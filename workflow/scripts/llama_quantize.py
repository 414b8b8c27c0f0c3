# Thin: unpack the snakemake object, call one library function.
from featureaudit.compress.llama_cpp_presets import write_preset
from featureaudit.pipeline.run_step import run_step
from featureaudit.repair.recipe import write_mix

i, q = snakemake.input, snakemake.params.quantize
if i.recipe:
    run_step(snakemake, write_mix, i.gguf, i.recipe, q["base"], q["pure"], i.imatrix or None, snakemake.output[0],
             snakemake.threads)
else:
    run_step(snakemake, write_preset, i.gguf, q["base"], i.imatrix, snakemake.output[0], snakemake.threads)
