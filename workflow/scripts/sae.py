# Thin: unpack the snakemake object, call one library function.
from featureaudit.config import CaptureSettings, ModelRun, SaeConfig, from_params
from featureaudit.runner import run_step
from featureaudit.sae_training import make_sae

p, i = snakemake.params, snakemake.input
run_step(snakemake, make_sae, from_params(ModelRun, p.run), from_params(CaptureSettings, p.capture),
         from_params(SaeConfig, p.sae), p.context_length, i.tokens, i.reference, snakemake.output[0])
