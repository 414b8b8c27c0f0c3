# Thin: unpack the snakemake object, call one library function.
from featureaudit.pipeline.run_step import run_step
from featureaudit.repair.recipe import write_recipe

m, i, o = snakemake.params.mix, snakemake.input, snakemake.output
run_step(snakemake, write_recipe, m["objective"], m["budget"], m["low"], m["high"], m["seed"], i.gguf,
         i.scan or None, o.recipe, o.record, snakemake.threads)
