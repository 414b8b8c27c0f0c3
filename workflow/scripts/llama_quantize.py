# Thin: unpack the snakemake object, call one library function.
from featureaudit.llama_cpp_producer import make_preset
from featureaudit.runner import run_step

i = snakemake.input
run_step(snakemake, make_preset, i.gguf, snakemake.params.preset, i.imatrix, snakemake.output[0], snakemake.threads)
