# Config loading, every input and params function, and each rule's rerun triggers.
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir)))

from featureaudit.config import as_params, load_config
from featureaudit.errors import AuditError
from featureaudit.hooks import HOOK_PATTERN
from featureaudit.figure_names import CORPUS_FIGURE, DEPTH_FIGURE, FIGURES
from featureaudit.integrity import scan
from featureaudit.paths import corpus_dir_pattern, corpus_subfolder, resolve_path
from featureaudit.pipeline.hub import hub_problems
from featureaudit.pipeline.locks import clear_stale_lock, run_in_progress
from featureaudit.pipeline.preflight import preflight
from featureaudit.pipeline.rerun_triggers import closure_hash
from featureaudit.variants import MIX_TYPES, QUANTIZED_PATTERN, VARIANT_PATTERN, may_equal_reference

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
# Outputs kept per hook live under results/<model>/<hook>/ (the SAE, its FP statistics, every
# table and figure); per variant (its activations and codes at every hook, from one forward;
# its metrics) and per model (tokens, reference, summary) under results/<model>/.
H = f"{R}/{{model}}/{{hook}}"
# A further audit corpus (corpora:) has the same layout under results/<model>/corpora/<label>/: its
# tokens, activations, codes and metrics, and per hook its FP statistics, survival and
# predictability. {corpus_dir} is empty for the main corpus and the folder below the model's
# for the others (featureaudit/paths.py).
C = f"{R}/{{model}}{{corpus_dir}}"
HC = f"{C}/{{hook}}"
EXTRA_CORPORA = [c.label for c in CFG.corpora]
CORPUS_DIR_PATTERN = corpus_dir_pattern(EXTRA_CORPORA)


def corpus_dir(label):
    return corpus_subfolder(label, CFG.corpus.label)


MODELS = list(CFG.models)
QUANTIZED = CFG.quantized()
# The causal jobs' settings, without the list of variants that get one: adding a variant to
# causal.variants plans its own job, not again those of the variants already there.
CAUSAL = {k: v for k, v in as_params(CFG.causal).items() if k not in ("variants", "hooks")}
# The corpora's settings that decide their tokens: not the name the summary gives them, nor (for a
# further corpus) the variants audited on it.
MAIN_CORPUS = {k: v for k, v in as_params(CFG.corpus).items() if k != "label"}


def extra_corpus_params(wildcards):
    c = as_params(CFG.extra_corpus(wildcards.corpus))
    return {k: v for k, v in c.items() if k != "variants"}


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
    return as_params(CFG.capture_settings(wildcards.model, wildcards.hook))


def get_captures(wildcards):
    """Every hook's capture settings, shallowest first: the variant job captures them all."""
    return [as_params(CFG.capture_settings(wildcards.model, h)) for h in CFG.hooks(wildcards.model)]


def get_hooks(wildcards):
    return CFG.hooks(wildcards.model)


def get_saes(wildcards):
    return [f"{R}/{wildcards.model}/{h}/sae" for h in CFG.hooks(wildcards.model)]


def get_token_budget(wildcards):
    return as_params(CFG.token_budget(wildcards.model))


def get_sae_settings(wildcards):
    return as_params(CFG.models[wildcards.model].saes[wildcards.hook])


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


def hooks_of(wildcards):
    """The rule's own hook, or every hook of the model (the summary reads them all)."""
    return [wildcards.hook] if hasattr(wildcards, "hook") else CFG.hooks(wildcards.model)


def per_hook(pattern, variants=None, hooks=None):
    """Input function: `pattern` (with {hook} and {variant}) for each hook of hooks_of (those
    of them `hooks(wildcards)` keeps) and each variant (`variants(wildcards)`, default every
    variant of the model), hook-major."""

    def inputs(wildcards):
        names = (variants or get_variants)(wildcards)
        keep = set(hooks(wildcards)) if hooks else None
        return [
            pattern.format(R=R, model=wildcards.model, hook=h, variant=v)
            for h in hooks_of(wildcards)
            if keep is None or h in keep
            for v in names
        ]

    return inputs


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
        "codes": "codes/fp",
        "metrics": "metrics/fp.json",
    }[kind]

    def inputs(wildcards):
        if not may_equal_reference(wildcards.variant):
            return []
        return f"{R}/{wildcards.model}{wildcards.corpus_dir}/{path}"

    return inputs


def get_reference_file(wildcards):
    return resolve_path(CFG.models[wildcards.model].path)


get_survival_all = per_hook("{R}/{model}/{hook}/survival/{variant}.parquet")
get_predictability_all = per_hook("{R}/{model}/{hook}/predictability/{variant}.json")
get_replicates_all = per_hook("{R}/{model}/{hook}/bootstrap/{variant}.npz")
get_risk_all = per_hook("{R}/{model}/{hook}/predictability/{variant}.risk.parquet")
get_evidence_all = per_hook("{R}/{model}/{hook}/evidence/{variant}.parquet")
get_causal_all = per_hook(
    "{R}/{model}/{hook}/causal/{variant}.json",
    lambda wc: CFG.causal_variants(wc.model),
    lambda wc: CFG.causal_hooks(wc.model),
)
get_causal_tables = per_hook(
    "{R}/{model}/{hook}/causal/{variant}.parquet",
    lambda wc: CFG.causal_variants(wc.model),
    lambda wc: CFG.causal_hooks(wc.model),
)
get_overlap_all = per_hook(
    "{R}/{model}/{hook}/overlap/{variant}.json",
    lambda wc: QUANTIZED if CFG.pruning.match else [],
)


def per_corpus(pattern):
    """Input function of the summary: `pattern` (with {dir}, {hook}, {variant}) for each further
    corpus, hook and variant audited on it, corpus-major then hook-major."""

    def inputs(wildcards):
        m = wildcards.model
        return [
            pattern.format(R=R, model=m, dir=corpus_dir(c), hook=h, variant=v)
            for c in EXTRA_CORPORA
            for h in CFG.hooks(m)
            for v in CFG.corpus_variants(m, c)
        ]

    return inputs


get_corpus_survival = per_corpus("{R}/{model}{dir}/{hook}/survival/{variant}.parquet")
get_corpus_predictability = per_corpus("{R}/{model}{dir}/{hook}/predictability/{variant}.json")
get_corpus_replicates = per_corpus("{R}/{model}{dir}/{hook}/bootstrap/{variant}.npz")


def get_corpus_metrics(wildcards):
    m = wildcards.model
    return [
        f"{R}/{m}{corpus_dir(c)}/metrics/{v}.json"
        for c in EXTRA_CORPORA
        for v in CFG.corpus_variants(m, c)
    ]


def get_corpora(wildcards):
    """[label, [variants]] of each further corpus, in the config's order (the summary's params)."""
    return [[c, CFG.corpus_variants(wildcards.model, c)] for c in EXTRA_CORPORA]


def get_taken_tokens(wildcards):
    """What a further corpus's tokens must not repeat: every token table drawn before it."""
    m, label = wildcards.model, wildcards.corpus
    taken = [f"{R}/{m}/tokens.parquet"]
    if CFG.calibrates(m):
        taken.append(f"{R}/{m}/calibration.parquet")
    before = EXTRA_CORPORA[: EXTRA_CORPORA.index(label)]
    return taken + [f"{R}/{m}{corpus_dir(c)}/tokens.parquet" for c in before]


def _every_corpus(wildcards):
    """(corpus, its folder under results/<model>) for every audit corpus, main first."""
    return [(c, f"{R}/{wildcards.model}{corpus_dir(c)}") for c in CFG.corpus_labels()]


def get_domain_survival(wildcards):
    """Survival tables per corpus, hook and variant audited on it (corpus-major)."""
    m = wildcards.model
    return [
        f"{root}/{h}/survival/{v}.parquet"
        for c, root in _every_corpus(wildcards)
        for h in CFG.hooks(m)
        for v in CFG.corpus_variants(m, c)
    ]


def get_domain_fp_metrics(wildcards):
    return [f"{root}/metrics/fp.json" for _, root in _every_corpus(wildcards)]


def get_domain_fp_activations(wildcards):
    return [f"{root}/activations/fp" for _, root in _every_corpus(wildcards)]


def get_metrics_all(wildcards):
    return expand(
        f"{R}/{wildcards.model}/metrics/{{variant}}.json", variant=get_variants(wildcards)
    )


def get_fp_causal_inputs(wildcards):
    here = f"{R}/{wildcards.model}/{wildcards.hook}"
    inputs = {
        "tokens": f"{R}/{wildcards.model}/tokens.parquet",
        "reference": f"{R}/{wildcards.model}/reference",
        "sae": f"{here}/sae",
        "fp_survival": f"{here}/survival/fp.parquet",
        "statistics": f"{here}/fp_statistics.parquet",
    }
    if CFG.gate.watchlist:
        inputs["watchlist"] = CFG.gate.watchlist
    return inputs


# --------------------------------------------------------------------------- repair


def get_scan_taken(wildcards):
    """What the scan split must not repeat: the main corpus's splits and calibration tokens."""
    taken = [f"{R}/{wildcards.model}/tokens.parquet"]
    if CFG.calibrates(wildcards.model):
        taken.append(f"{R}/{wildcards.model}/calibration.parquet")
    return taken


def mix_keys():
    """Wildcard pattern of the checkpoint keys that are mixes (llama_cpp: mix)."""
    keys = sorted({k for m in MODELS for k in CFG.mixes(m)})
    return "|".join(keys) if keys else "(?!)"


def get_mix_settings(wildcards):
    c = CFG.models[wildcards.model].checkpoints[wildcards.ckpt]
    return {k: getattr(c, k) for k in ("objective", "budget", "low", "high", "seed")}


def get_recipe_scan(wildcards):
    """A features or KL mix reads the scan of its low type; random and ends need none."""
    c = CFG.models[wildcards.model].checkpoints[wildcards.ckpt]
    if c.objective in ("features", "kl"):
        return f"{R}/{wildcards.model}/repair/{c.low}/scan.csv"
    return []


def get_recipe(wildcards):
    """The recipe file a llama.cpp checkpoint is quantized with: the mix's, or the user's."""
    c = CFG.models[wildcards.model].checkpoints[wildcards.ckpt]
    if c.llama_cpp == "mix":
        return f"{R}/{wildcards.model}/repair/recipes/{wildcards.ckpt}.txt"
    return resolve_path(c.recipe) if c.recipe else []


def get_quantize_settings(wildcards):
    """llama-quantize's base type and --pure: a mix names every block tensor (its low type the
    base), a user's recipe goes on top of its preset."""
    c = CFG.models[wildcards.model].checkpoints[wildcards.ckpt]
    if c.llama_cpp == "mix":
        return {"base": c.low.upper(), "pure": True}
    return {"base": c.llama_cpp, "pure": False}


def get_way_forward_scan(wildcards):
    """The scan the summary's way forward reads (the model's first scan target's), and its
    additivity check (the target everywhere, measured)."""
    targets = CFG.scan_targets(wildcards.model)
    if not targets:
        return []
    return [
        f"{R}/{wildcards.model}/repair/{targets[0]}/{name}.csv" for name in ("scan", "additivity")
    ]


def get_scans(wildcards):
    return [
        f"{R}/{wildcards.model}/repair/{t}/{name}.csv"
        for t in CFG.scan_targets(wildcards.model)
        for name in ("scan", "additivity")
    ]


def get_recipe_records(wildcards):
    return [f"{R}/{wildcards.model}/repair/recipes/{k}.json" for k in CFG.mixes(wildcards.model)]


def get_repair_methods(wildcards):
    """The variants the repair comparison sets side by side: every llama.cpp checkpoint."""
    m = CFG.models[wildcards.model]
    return {f"ckpt-{k}": c.method for k, c in m.checkpoints.items() if c.producer == "llama.cpp"}


def get_final_outputs():
    out = expand(f"{R}/{{model}}/summary.csv", model=MODELS)
    for m in MODELS:
        if CFG.scan_targets(m) or CFG.mixes(m):
            out.append(f"{R}/{m}/repair/comparison.csv")
    out += expand(f"{R}/{{model}}/figures/{DEPTH_FIGURE}.png", model=MODELS)
    if EXTRA_CORPORA:
        out += expand(f"{R}/{{model}}/domains.csv", model=MODELS)
        out += expand(f"{R}/{{model}}/figures/{CORPUS_FIGURE}.png", model=MODELS)
    for m in MODELS:
        here = [f"{R}/{m}/{h}" for h in CFG.hooks(m)]
        out += expand("{here}/figures/{name}.png", here=here, name=FIGURES)
        out += expand("{here}/browser.html", here=here)
        out += expand("{here}/method_overlap.csv", here=here)
    return out


def figure(name, per_hook=True):
    """Both files of one figure (one per hook, or one per model), in the report under its own
    caption (report/<name>.rst)."""
    where = f"{R}/{{{{model}}}}/{{{{hook}}}}" if per_hook else f"{R}/{{{{model}}}}"
    return report(
        expand(f"{where}/figures/{name}.{{ext}}", ext=["png", "svg"]),
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
