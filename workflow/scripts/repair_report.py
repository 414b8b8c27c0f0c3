# Thin: unpack the snakemake object, call one library function.
from featureaudit.pipeline.run_step import run_step
from featureaudit.report.repair_report import write_repair_report

i, o = snakemake.input, snakemake.output
run_step(snakemake, write_repair_report, i.summary, list(i.scans), list(i.records), snakemake.params.methods,
         o.comparison, o.additivity, list(o.figures))
