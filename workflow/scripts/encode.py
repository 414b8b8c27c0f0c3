# Thin: unpack the snakemake object, call one library function.
from featureaudit.codes import encode_variant
from featureaudit.runner import run_step

i = snakemake.input
run_step(snakemake, encode_variant, i.sae, i.activations, snakemake.output[0], snakemake.params.device)
