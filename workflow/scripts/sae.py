# Thin: unpack the snakemake object, call one library function.
from featureaudit.config import CaptureSettings, ModelRun, SaeConfig, from_params
from featureaudit.pipeline.run_step import run_step
from featureaudit.sae.source import write_sae

p, i = snakemake.params, snakemake.input
run_step(snakemake, write_sae, from_params(ModelRun, p.run), from_params(CaptureSettings, p.capture),
         from_params(SaeConfig, p.sae), p.context_length, i.tokens, i.reference, snakemake.output[0])
