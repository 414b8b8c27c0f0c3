# Thin: unpack the snakemake object, call one library function.
from featureaudit.config import CaptureSettings, ModelRun, Thresholds, from_params
from featureaudit.pipeline.run_step import run_step
from featureaudit.repair.scan import write_scan

p, i, o = snakemake.params, snakemake.input, snakemake.output
run_step(snakemake, write_scan, snakemake.wildcards.target, from_params(ModelRun, p.run),
         [from_params(CaptureSettings, c) for c in p.captures], from_params(Thresholds, p.thresholds), i.tokens,
         i.reference, list(i.saes), o.scan, o.additivity, p.seed)
