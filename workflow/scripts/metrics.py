# Thin: unpack the snakemake object, call one library function.
from featureaudit.config import EvaluationConfig, ModelRun, from_params
from featureaudit.metrics import write_metrics
from featureaudit.runner import run_step

p, i = snakemake.params, snakemake.input
run_step(snakemake, write_metrics, snakemake.wildcards.variant, from_params(ModelRun, p.run),
         from_params(EvaluationConfig, p.evaluation), p.prepend_bos, p.pruning_scope, i.tokens, i.reference,
         snakemake.output[0], i.matched or None,
         i.checkpoint or None)
