# Thin: unpack the snakemake object, call one library function.
from featureaudit.compress.llama_cpp_presets import write_imatrix
from featureaudit.config import ModelSource, from_params
from featureaudit.pipeline.run_step import run_step

i = snakemake.input
run_step(snakemake, write_imatrix, from_params(ModelSource, snakemake.params.source), i.gguf, i.calibration,
         snakemake.output[0], snakemake.threads)
