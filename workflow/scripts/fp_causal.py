# Thin: unpack the snakemake object, call one library function.
from featureaudit.config import CaptureSettings, CausalConfig, ModelRun, from_params
from featureaudit.inputs.watchlist import ids_at, read_watchlist
from featureaudit.measure.causal import write_fp_causal
from featureaudit.pipeline.run_step import run_step

i, o, p = snakemake.input, snakemake.output, snakemake.params
capture = from_params(CaptureSettings, p.capture)
watch = ids_at(read_watchlist(i.watchlist), capture.hook) if "watchlist" in i.keys() else []
run_step(snakemake, write_fp_causal, from_params(ModelRun, p.run), capture.hook, capture.center, capture.prepend_bos,
         from_params(CausalConfig, p.causal), dict(i.items()), o.npz, o.json, watch)
