# Config loading and every input function, in one place.
import hashlib
import sys
from pathlib import Path

from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir)))

from featureaudit.config import load_config
from featureaudit.errors import AuditError
from featureaudit.outputs import FIGURES
from featureaudit.preflight import preflight

if not config:
    sys.exit("featureaudit: no config given; pass --configfile config.yaml (or use --profile profiles/default)")
try:
    CFG = load_config(config)
    SHAPES = preflight(CFG)
except AuditError as e:
    sys.exit(f"featureaudit: {e}")
validate(config, "../schemas/config.schema.yaml")

R = CFG.results
MODELS = list(CFG.models)
VARIANTS = CFG.variants()
QUANTIZED = CFG.quantized()
ENV = "../../envs/featureaudit.yaml"
# Model jobs get half the cores each: on a small machine two single-threaded forwards side by
# side get more done than one two-threaded forward (measured: 215 vs 147 tokens/s per job).
HEAVY_THREADS = max(1, (workflow.cores or 2) // 2)


def library_code(*modules):
    """Hash of the library modules behind a step. Snakemake tracks a script but not
    what it imports, so this param makes a change of library code rerun the rules it affects."""
    h = hashlib.sha256()
    for m in ("__init__", "config", "io", "steps", "errors", "variants", "hooks", "outputs") + modules:
        h.update((Path(workflow.basedir) / "featureaudit" / f"{m}.py").read_bytes())
    return h.hexdigest()[:16]


def model_params(wildcards):
    m = CFG.models[wildcards.model]
    return {"source": m.source, "path": m.path, "hook": m.hook, "dtype": m.dtype, "device": CFG.device,
            "exclude_bos": m.exclude_bos, "center": m.center}


def corpus_params(wildcards):
    return {"corpus": config.get("corpus", {}), "heldout_tokens": CFG.evaluation.n_tokens,
            "sae_source": CFG.models[wildcards.model].sae.source}


def sae_params(wildcards):
    return config["models"][wildcards.model]["sae"]


def get_matched_json(wildcards):
    if wildcards.variant.startswith("match-"):
        return f"{R}/{wildcards.model}/matched/{wildcards.variant[len('match-'):]}.json"
    return []


def get_survival_all(wildcards):
    return expand(f"{R}/{wildcards.model}/survival/{{variant}}.parquet", variant=VARIANTS)


def get_metrics_all(wildcards):
    return expand(f"{R}/{wildcards.model}/metrics/{{variant}}.json", variant=VARIANTS)


def get_predictability_all(wildcards):
    return expand(f"{R}/{wildcards.model}/predictability/{{variant}}.json", variant=VARIANTS)


def get_overlap_all(wildcards):
    if not CFG.pruning.match:
        return []
    return expand(f"{R}/{wildcards.model}/overlap/{{q}}.json", q=QUANTIZED)


def get_final_outputs():
    return expand(f"{R}/{{model}}/summary.csv", model=MODELS) + expand(
        f"{R}/{{model}}/figures/{{name}}.png", model=MODELS, name=FIGURES
    )


def _estimate(wildcards, attempt, stage):
    from featureaudit.resources import estimate_resources

    shape = SHAPES[wildcards.model]
    tokens = CFG.corpus.n_tokens + CFG.evaluation.n_tokens + CFG.corpus.sae_train_tokens
    device = "cuda" if CFG.device == "cuda" else "cpu"
    return estimate_resources(shape["n_params"], shape["d_model"], tokens, stage, attempt, device=device)


def mem_mb(stage):
    """Memory request from the model's size and the token budget; grows with each retry."""
    return lambda wildcards, attempt: _estimate(wildcards, attempt, stage)["mem_mb"]


def runtime(stage):
    return lambda wildcards, attempt: _estimate(wildcards, attempt, stage)["runtime"]


def gpus(wildcards):
    return 1 if CFG.device == "cuda" else 0
