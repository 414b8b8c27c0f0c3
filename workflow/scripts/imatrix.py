# Thin: unpack the snakemake object, call one library function.
from featureaudit.config import ModelSource, from_params
from featureaudit.llama_cpp_producer import make_imatrix
from featureaudit.runner import run_step

i = snakemake.input
run_step(snakemake, make_imatrix, from_params(ModelSource, snakemake.params.source), i.gguf, i.calibration,
         snakemake.output[0], snakemake.threads)
