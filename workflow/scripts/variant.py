# Thin: unpack the snakemake object, call one library function.
from featureaudit.config import CaptureSettings, EvaluationConfig, ModelRun, from_params
from featureaudit.pipeline.run_step import run_step
from featureaudit.variant.job import VariantInputs, VariantOutputs, write_variant

p, i, o = snakemake.params, snakemake.input, snakemake.output
inputs = VariantInputs(i.tokens, i.reference, tuple(i.saes), i.fp_heldout, i.matched or None, i.checkpoint or None,
                       i.fp_activations or None, i.fp_codes or None, i.fp_metrics or None)
run_step(snakemake, write_variant, snakemake.wildcards.variant, from_params(ModelRun, p.run),
         [from_params(CaptureSettings, c) for c in p.captures], from_params(EvaluationConfig, p.evaluation),
         p.prepend_bos, p.pruning_scope, inputs, VariantOutputs(o.activations, o.codes, o.metrics))
