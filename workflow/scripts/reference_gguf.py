# Thin: unpack the snakemake object, call one library function.
from featureaudit.llama_cpp_producer import make_reference_gguf
from featureaudit.runner import run_step

run_step(snakemake, make_reference_gguf, snakemake.input.reference, snakemake.output[0])
