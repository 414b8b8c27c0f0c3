# Config loading, every input and params function, and each rule's rerun triggers.
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir)))

from featureaudit.config import as_params, load_config
from featureaudit.errors import AuditError
from featureaudit.figure_names import FIGURES
from featureaudit.integrity import scan
from featureaudit.paths import resolve_path
from featureaudit.pipeline.hub import hub_problems
from featureaudit.pipeline.locks import clear_stale_lock, run_in_progress
from featureaudit.pipeline.preflight import preflight
from featureaudit.pipeline.rerun_triggers import closure_hash
from featureaudit.variants import QUANTIZED_PATTERN, VARIANT_PATTERN, may_equal_reference

if not config:
    sys.exit(
        "featureaudit: no config given; pass --configfile config.yaml (or use --profile profiles/default)"
    )


def fail(error):
    """Every problem found, one line each, no traceback; Snakemake exits non-zero."""
    sys.exit("\n".join(f"featureaudit: {line}" for line in str(error).splitlines()))


def runs_jobs():
    """Whether this start will run jobs (not -n, --lint, --rulegraph, --report, ...): Snakemake
    decides that only after reading this file, so its command line is read here."""
    from snakemake.cli import get_argument_parser

    args, _ = get_argument_parser().parse_known_args(sys.argv[1:])
    listings = (
        "dryrun",
        "lint",
        "rulegraph",
        "dag",
        "filegraph",
        "d3dag",
        "report",
        "list_rules",
        "list_target_rules",
        "summary",
        "detailed_summary",
        "unlock",
        "containerize",
    )
    return not any(getattr(args, name, None) for name in listings)


RUNS_JOBS = workflow.is_main_process and runs_jobs()
if RUNS_JOBS:
    # A second run beside one at work would race it for the same outputs: say so, touch nothing.
    busy = run_in_progress()
    if busy:
        fail(busy)

try:
    # load_config validates against workflow/schemas/config.schema.yaml and the cross-field
    # rules; preflight checks files, models, SAEs, corpus, device, results folder and what would
    # come from the hub. Each collects every problem, so a config with five mistakes fails once,
    # with five lines.
    CFG = load_config(config)
    SHAPES = preflight(CFG, local=workflow.local_exec, hub=RUNS_JOBS)
except AuditError as e:
    fail(e)

if workflow.is_main_process and not RUNS_JOBS:
    # A plan (-n, --rulegraph) needs no download: what a run would fail to fetch is said, not fatal.
    for line in hub_problems(CFG):
        print(f"featureaudit: note: {line}", file=sys.stderr)

if workflow.is_main_process:
    # Only the process the user started: jobs (on a cluster, each re-reads this file) would
    # race with outputs being renamed into place.
    note = clear_stale_lock()
    if note:
        print(f"featureaudit: {note}", file=sys.stderr)
    damaged = scan(CFG.results, full=False)
    if damaged:
        fail("\n".join(d.line() for d in damaged))

R = CFG.results
MODELS = list(CFG.models)
QUANTIZED = CFG.quantized()
# The causal jobs' settings, without the list of variants that get one: adding a variant to
# causal.variants plans its own job, not again those of the variants already there.
CAUSAL = {k: v for k, v in as_params(CFG.causal).items() if k != "variants"}
ENV = "../../envs/featureaudit.yaml"
# Model jobs get half the cores each: on a small machine two single-threaded forwards side by
# side get more done than one two-threaded forward (measured: 215 vs 147 tokens/s per job).
HEAVY_THREADS = max(1, (workflow.cores or 2) // 2)
# Every capture waits for the SAE, and nothing else can run beside it at first (the model jobs
# need tokens.parquet, as it does): it trains with every core, before anything else (priority).
ALL_THREADS = max(1, workflow.cores or 2)


# --------------------------------------------------------------------------- rerun triggers
# Settings reach a rule only through its params (the scripts read nothing else of the config),
# so a changed setting reruns exactly the rules that read it. Library code reaches a rule
# through its script's imports: `code` hashes the import closure (featureaudit/pipeline/rerun_triggers.py).


def script_code(script):
    """Hash of the featureaudit modules workflow/scripts/<script>.py runs."""
    base = Path(workflow.basedir)
    return closure_hash(base / "workflow" / "scripts" / f"{script}.py", base / "featureaudit")


def get_source(wildcards):
    return as_params(CFG.model_source(wildcards.model))


def get_run(wildcards):
    return as_params(CFG.model_run(wildcards.model))


def get_capture_settings(wildcards):
    return as_params(CFG.capture_settings(wildcards.model))


def get_token_budget(wildcards):
    return as_params(CFG.token_budget(wildcards.model))


def get_sae_settings(wildcards):
    return as_params(CFG.models[wildcards.model].sae)


def get_variants(wildcards):
    return CFG.variants(wildcards.model)


def producer_keys(producer):
    """Wildcard pattern of the checkpoint keys one producer makes: each producer's rule
    writes only its own checkpoints (a pattern that matches nothing when it has none)."""
    keys = sorted({k for m in MODELS for k in CFG.produced(m, producer)})
    return "|".join(keys) if keys else "(?!)"


def module_code(module):
    """Hash of a featureaudit module (dotted, e.g. compress.llm_compress) and the package
    modules it imports (a `shell:` rule's script_code)."""
    base = Path(workflow.basedir)
    return closure_hash(
        base / "featureaudit" / f"{module.replace('.', '/')}.py", base / "featureaudit"
    )


def _llm_compressor_python():
    """The interpreter of llm-compressor's environment: conda's own `python` under
    --sdm conda, else the venv `make llm-compressor` built (featureaudit.compress.llm_compress)."""
    from snakemake_interface_executor_plugins.settings import DeploymentMethod

    from featureaudit.compress.llm_compress import environment_python

    if (
        DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
        and not os.environ.get("FEATUREAUDIT_LLM_COMPRESSOR_PYTHON")
    ):
        return "python"
    return environment_python()


LLM_COMPRESSOR_PYTHON = _llm_compressor_python()
# what the llm_compress rule's log says it ran in
LLM_COMPRESSOR_ENVIRONMENT = (
    "conda (envs/llm-compressor.yaml)"
    if LLM_COMPRESSOR_PYTHON == "python"
    else f"venv {LLM_COMPRESSOR_PYTHON}"
)


def _check_producers():
    """The producers' tools exist before any job starts (building them takes minutes)."""
    from featureaudit.compress.llama_cpp import BUILD_HINT, available

    wanted = {p for m in MODELS for p in ("llama.cpp", "llm-compressor") if CFG.produced(m, p)}
    if any(CFG.runtime_variants(m) for m in MODELS):
        wanted.add("llama.cpp")
    if "llama.cpp" in wanted and not available():
        fail(
            f"a llama_cpp preset or runtime: enabled needs llama.cpp, which is not built for this environment; {BUILD_HINT}"
        )
    if "llm-compressor" in wanted and LLM_COMPRESSOR_PYTHON is None:
        fail(
            "a checkpoint names an llm_compressor recipe but its environment is missing; build it once with "
            "`make llm-compressor`, or run with --sdm conda"
        )


_check_producers()


def get_imatrix(wildcards):
    if CFG.models[wildcards.model].checkpoints[wildcards.ckpt].imatrix:
        return f"{R}/{wildcards.model}/llama_cpp/imatrix.gguf"
    return []


def get_runtime_gguf(wildcards):
    """The GGUF llama.cpp runs for a variant: the reference as F32 for fp, else the checkpoint."""
    if wildcards.variant == "fp":
        return f"{R}/{wildcards.model}/llama_cpp/reference.f32.gguf"
    return get_checkpoint(wildcards)


def get_runtime_all(wildcards):
    return expand(
        f"{R}/{wildcards.model}/runtime/{{variant}}.json",
        variant=CFG.runtime_variants(wildcards.model),
    )


def get_methods(wildcards):
    return {v: CFG.method(wildcards.model, v) for v in CFG.variants(wildcards.model)}


def get_mix(wildcards):
    return CFG.models[wildcards.model].checkpoints[wildcards.ckpt].mix


# --------------------------------------------------------------------------- inputs


def get_matched_json(wildcards):
    if wildcards.variant.startswith("match-"):
        return f"{R}/{wildcards.model}/matched/{wildcards.variant[len('match-'):]}.json"
    return []


def get_checkpoint(wildcards):
    """A ckpt- variant's file or folder: the user's, or the one write_checkpoint writes."""
    if not wildcards.variant.startswith("ckpt-"):
        return []
    key = wildcards.variant[len("ckpt-") :]
    ck = CFG.models[wildcards.model].checkpoints[key]
    if ck.path:
        return resolve_path(ck.path)
    made = f"{R}/{wildcards.model}/checkpoints/{key}"
    return made if ck.llm_compressor else f"{made}.gguf"


def get_fp_output(kind):
    """fp's activations, codes or metrics, for a variant that may turn out to be the FP model."""
    path = {
        "activations": "activations/fp",
        "codes": "codes/fp.parquet",
        "metrics": "metrics/fp.json",
    }[kind]

    def inputs(wildcards):
        if not may_equal_reference(wildcards.variant):
            return []
        return f"{R}/{wildcards.model}/{path}"

    return inputs


def get_reference_file(wildcards):
    return resolve_path(CFG.models[wildcards.model].path)


def get_survival_all(wildcards):
    return expand(
        f"{R}/{wildcards.model}/survival/{{variant}}.parquet", variant=get_variants(wildcards)
    )


def get_metrics_all(wildcards):
    return expand(
        f"{R}/{wildcards.model}/metrics/{{variant}}.json", variant=get_variants(wildcards)
    )


def get_predictability_all(wildcards):
    return expand(
        f"{R}/{wildcards.model}/predictability/{{variant}}.json", variant=get_variants(wildcards)
    )


def get_replicates_all(wildcards):
    return expand(
        f"{R}/{wildcards.model}/bootstrap/{{variant}}.npz", variant=get_variants(wildcards)
    )


def get_risk_all(wildcards):
    return expand(
        f"{R}/{wildcards.model}/predictability/{{variant}}.risk.parquet",
        variant=get_variants(wildcards),
    )


def get_evidence_all(wildcards):
    return expand(
        f"{R}/{wildcards.model}/evidence/{{variant}}.parquet", variant=get_variants(wildcards)
    )


def get_fp_causal_inputs(wildcards):
    inputs = {
        "tokens": f"{R}/{wildcards.model}/tokens.parquet",
        "reference": f"{R}/{wildcards.model}/reference",
        "sae": f"{R}/{wildcards.model}/sae",
        "fp_survival": f"{R}/{wildcards.model}/survival/fp.parquet",
        "statistics": f"{R}/{wildcards.model}/fp_statistics.parquet",
    }
    if CFG.gate.watchlist:
        inputs["watchlist"] = CFG.gate.watchlist
    return inputs


def get_causal_all(wildcards):
    return expand(
        f"{R}/{wildcards.model}/causal/{{variant}}.json",
        variant=CFG.causal_variants(wildcards.model),
    )


def get_causal_tables(wildcards):
    return expand(
        f"{R}/{wildcards.model}/causal/{{variant}}.parquet",
        variant=CFG.causal_variants(wildcards.model),
    )


def get_overlap_all(wildcards):
    if not CFG.pruning.match:
        return []
    return expand(f"{R}/{wildcards.model}/overlap/{{q}}.json", q=QUANTIZED)


def get_final_outputs():
    return (
        expand(f"{R}/{{model}}/summary.csv", model=MODELS)
        + expand(f"{R}/{{model}}/figures/{{name}}.png", model=MODELS, name=FIGURES)
        + expand(f"{R}/{{model}}/browser.html", model=MODELS)
        + expand(f"{R}/{{model}}/method_overlap.csv", model=MODELS)
    )


def figure(name):
    """Both files of one figure, in the report under its own caption (report/<name>.rst)."""
    return report(
        expand(f"{R}/{{{{model}}}}/figures/{name}.{{ext}}", ext=["png", "svg"]),
        caption=f"../report/{name}.rst",
        category="Figures",
    )


# --------------------------------------------------------------------------- resources


def _estimate(wildcards, attempt, stage):
    from featureaudit.pipeline.resources import estimate_resources

    shape = SHAPES[wildcards.model]
    tokens = CFG.corpus.n_tokens + CFG.evaluation.n_tokens + CFG.corpus.sae_train_tokens
    device = "cuda" if CFG.device == "cuda" else "cpu"
    return estimate_resources(
        shape["n_params"], shape["d_model"], tokens, stage, attempt, device=device
    )


def mem_mb(stage):
    """Memory request from the model's size and the token budget; grows with each retry."""
    return lambda wildcards, attempt: _estimate(wildcards, attempt, stage)["mem_mb"]


def runtime(stage):
    return lambda wildcards, attempt: _estimate(wildcards, attempt, stage)["runtime"]


def gpus(wildcards):
    return 1 if CFG.device == "cuda" else 0
