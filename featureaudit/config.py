"""Typed configuration: the workflow's config.yaml as dataclasses.

`load_config(dict)` validates against workflow/schemas/config.schema.yaml (unknown keys and
wrong types are one-line errors naming the key) and then builds the dataclasses, whose
__post_init__ checks what a schema cannot (cross-field rules).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import get_type_hints

import yaml

from .errors import AuditError, Problems
from .hooks import parse_hook
from .variants import (GGUF_TYPES, LLAMA_CPP_NEED_IMATRIX, LLAMA_CPP_PRESETS, MIX_OBJECTIVES, MIX_TYPE_BITS, MIX_TYPES, Variant,
                       check_bits, check_sparsity, parse_variant)

SCHEMA = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"


def hook_order(hook: str) -> tuple[int, int]:
    """Depth order of hook names: by layer, and within a layer as the residual stream runs."""
    h = parse_hook(hook)
    return h.layer, ("hook_resid_pre", "hook_attn_out", "hook_mlp_out", "hook_resid_post").index(h.point)


# The stage modules' own settings (sae, survival, tokens) live here too, so that reading a
# config never imports torch: the Snakefile does it on every start and in every cluster job.
# Every field is documented in workflow/schemas/config.schema.yaml (and config/README.md,
# generated from it); the comments here say the same in short.
@dataclass(frozen=True)
class SaeTraining:
    """How the workflow trains its own TopK SAE (models.<name>.sae.train)."""

    d_sae: int = 4608  # number of features
    k: int = 32  # features active per token
    steps: int = 600  # optimiser steps
    batch_size: int = 1024  # activations per step
    lr: float = 4e-4  # constant Adam learning rate
    seed: int = 0  # initialisation and batch sampling


@dataclass(frozen=True)
class Thresholds:
    """Survival classes by the Pearson r between FP and variant codes (survival)."""

    active_min_tokens: int = 10  # a feature is audited if it fires on at least this many FP tokens
    survived_r: float = 0.9  # r >= this: survived
    blurred_r: float = 0.5  # blurred_r <= r < survived_r: blurred; below (or silent): damaged

    def __post_init__(self):
        if not -1.0 <= self.blurred_r <= self.survived_r <= 1.0:
            raise AuditError(
                f"survival thresholds need -1 <= blurred_r <= survived_r <= 1, got blurred_r={self.blurred_r}, "
                f"survived_r={self.survived_r}"
            )
        if self.active_min_tokens < 1:
            raise AuditError("survival.active_min_tokens must be at least 1")


@dataclass(frozen=True)
class TokenBudget:
    """How many sequences of which length go to each split of tokens.parquet."""

    context_length: int = 128  # tokens per sequence, BOS included
    audit_tokens: int = 16384  # tokens FP and variant codes are compared on
    heldout_tokens: int = 4096  # tokens for perplexity, KL, top-1 agreement
    sae_train_tokens: int = 0  # tokens the workflow trains its SAE on (0: pretrained SAE)
    prepend_bos: bool = True  # BOS first in every sequence
    seed: int = 0  # shuffles sequences before the split

    def sequences(self, split: str) -> int:
        n = {"sae_train": self.sae_train_tokens, "audit": self.audit_tokens, "heldout": self.heldout_tokens}[split]
        return -(-n // self.context_length) if n else 0


@dataclass(frozen=True)
class CorpusConfig:
    """Where the text comes from and how much of it each split takes (corpus)."""

    source: str = "pydoc"  # pydoc (CPython's help topics) | cpython (those + stdlib docstrings) | packages | text_files | hf_dataset
    label: str = "main"  # its name in results and summary.csv's corpus column
    paths: tuple = ()  # text files, for source text_files
    name: str | None = None  # dataset id, for source hf_dataset
    split: str = "train"  # dataset split, for source hf_dataset
    column: str = "text"  # dataset text column, for source hf_dataset
    n_tokens: int = 16384  # audit tokens
    sae_train_tokens: int = 32768  # SAE training tokens (used only when the workflow trains one)
    context_length: int = 128  # tokens per sequence, BOS included
    prepend_bos: bool = True  # BOS first in every sequence (match the SAE's training)
    seed: int = 0  # shuffles sequences before the split

    def __post_init__(self):
        if self.source == "text_files" and not self.paths:
            raise AuditError("corpus.paths: list at least one text file for corpus.source: text_files")
        if self.source == "hf_dataset" and not self.name:
            raise AuditError("corpus.name: name the Hugging Face dataset for corpus.source: hf_dataset")


@dataclass(frozen=True)
class AuditCorpus:
    """A further audit corpus (an entry of `corpora`): other text, the same model, SAEs and
    variants. Only audit tokens are drawn from it (its sequences' length and BOS are the main
    corpus's: the SAEs see them as they were trained); they are disjoint from every sequence of
    the main corpus's splits, its calibration tokens and the corpora listed before it."""

    label: str  # its name in results (results/<model>/corpora/<label>/) and the summary
    source: str = "packages"  # as corpus.source
    paths: tuple = ()
    name: str | None = None
    split: str = "train"
    column: str = "text"
    n_tokens: int = 8192  # its audit tokens (perplexity and KL are measured on them too)
    seed: int = 0  # shuffles its sequences before they are drawn
    variants: tuple = ()  # the variants audited on it (empty: every variant of the sweep)

    def __post_init__(self):  # load_config puts corpora[i]. before these
        if self.source == "text_files" and not self.paths:
            raise AuditError("paths: list at least one text file for source: text_files")
        if self.source == "hf_dataset" and not self.name:
            raise AuditError("name: name the Hugging Face dataset for source: hf_dataset")


@dataclass(frozen=True)
class SaeConfig:
    """The frozen SAE every variant is encoded with (models.<name>.sae)."""

    source: str = "train"  # train | disk (a folder saved by SAELens) | saelens (a pretrained release)
    path: str | None = None  # folder, for source disk
    release: str | None = None  # SAELens release, for source saelens
    id: str | None = None  # SAE id within the release, for source saelens
    train: SaeTraining = field(default_factory=SaeTraining)  # for source train


#: llm-compressor recipes a checkpoint may name (featureaudit/compress/llm_compress.py builds each).
LLM_COMPRESSOR_RECIPES = ("gptq-w4a16", "awq-w4a16", "smoothquant-gptq-w8a8", "fp8-dynamic", "sparsegpt-50",
                          "sparsegpt-2of4", "wanda-50")


@dataclass(frozen=True)
class CheckpointConfig:
    """A checkpoint variant, ckpt-<key> (models.<name>.checkpoints.<key>): a file or folder you
    have (path), or one the workflow makes from the reference: a GGUF with mixed types (mix), a
    llama.cpp preset (llama_cpp, optionally with an importance matrix), or an llm-compressor
    recipe (llm_compressor). Exactly one of the four."""

    path: str | None = None  # a GGUF file or a transformers folder (plain or compressed-tensors)
    mix: dict | None = None  # GGUF type per block part, e.g. {attn: q8_0, mlp: q4_0}
    llama_cpp: str | None = None  # llama-quantize preset: Q4_K_M, Q6_K, IQ4_XS, ...
    imatrix: bool = False  # llama_cpp: quantize with an importance matrix of the calibration tokens
    llm_compressor: str | None = None  # recipe: gptq-w4a16, awq-w4a16, smoothquant-gptq-w8a8, ...
    group_size: int = 64  # llm_compressor W4A16 recipes: weights per scale (576 is no multiple of 128)
    recipe: str | None = None  # llama_cpp: a --tensor-type-file of per-tensor types on top of the preset
    # llama_cpp: mix, a per-tensor mix the workflow allocates (featureaudit/repair/): each block's
    # attention and MLP at low or high, chosen by objective within budget bits per weight
    objective: str | None = None  # features | kl | random | ends
    budget: str | float | None = None  # bits per weight, or a preset's name: what it stores on this model
    low: str = "q4_0"  # the mix's types (32-weight blocks: q4_0 q4_1 q5_0 q5_1 q8_0 iq4_nl)
    high: str = "q8_0"
    seed: int = 0  # objective random: its draw

    def __post_init__(self):
        given = [k for k in ("path", "mix", "llama_cpp", "llm_compressor") if getattr(self, k) is not None]
        if len(given) != 1:
            raise AuditError("a checkpoint has exactly one of path (a file you have), mix, llama_cpp or "
                             f"llm_compressor (made by the workflow); got {', '.join(given) or 'none'}")
        for part, t in (self.mix or {}).items():
            if t not in GGUF_TYPES:
                raise AuditError(f"checkpoint mix: {part}: {t!r} is not one of {', '.join(GGUF_TYPES)}")
        if self.llama_cpp == "mix":
            self._check_mix()
        elif self.objective is not None or self.budget is not None:
            raise AuditError("checkpoint objective and budget belong to llama_cpp: mix")
        if self.recipe is not None and (self.llama_cpp is None or self.llama_cpp == "mix"):
            raise AuditError("checkpoint recipe: a recipe file goes with a llama_cpp preset (its base type), "
                             "e.g. {llama_cpp: Q4_0, recipe: fix.txt}")
        if self.llama_cpp is not None and self.llama_cpp != "mix" and self.llama_cpp not in LLAMA_CPP_PRESETS:
            raise AuditError(f"checkpoint llama_cpp: {self.llama_cpp!r} is not one of {', '.join(LLAMA_CPP_PRESETS)}")
        if self.llama_cpp in LLAMA_CPP_NEED_IMATRIX and not self.imatrix:
            raise AuditError(f"checkpoint llama_cpp: {self.llama_cpp} needs an importance matrix; add imatrix: true")
        if self.imatrix and self.llama_cpp is None:
            raise AuditError("checkpoint imatrix: true belongs to a llama_cpp preset")
        if self.llm_compressor is not None and self.llm_compressor not in LLM_COMPRESSOR_RECIPES:
            raise AuditError(f"checkpoint llm_compressor: {self.llm_compressor!r} is not one of "
                             f"{', '.join(LLM_COMPRESSOR_RECIPES)}")

    def _check_mix(self):
        if self.objective not in MIX_OBJECTIVES:
            raise AuditError(f"checkpoint llama_cpp: mix needs objective: one of {', '.join(MIX_OBJECTIVES)}")
        for key in ("low", "high"):
            if getattr(self, key) not in MIX_TYPES:
                raise AuditError(f"checkpoint {key}: {getattr(self, key)!r} is not a type a mix may use "
                                 f"({', '.join(MIX_TYPES)}: 32-weight blocks fit every width)")
        bits = {k: MIX_TYPE_BITS[getattr(self, k)] for k in ("low", "high")}
        if bits["high"] <= bits["low"]:
            raise AuditError(f"checkpoint high ({self.high}) must store more bits than low ({self.low})")
        if self.budget is None:
            raise AuditError("checkpoint llama_cpp: mix needs budget: bits per weight, or a preset such as Q4_K_M")
        if isinstance(self.budget, str) and self.budget.upper() not in LLAMA_CPP_PRESETS:
            raise AuditError(f"checkpoint budget: {self.budget!r} is neither bits per weight nor a llama.cpp preset")
        if isinstance(self.budget, (int, float)) and not bits["low"] <= self.budget <= bits["high"]:
            raise AuditError(f"checkpoint budget: {self.budget} bits per weight is outside what {self.low} "
                             f"({bits['low']}) and {self.high} ({bits['high']}) can make; give a budget between them")

    @property
    def producer(self) -> str:
        """Who makes the file: user | gguf-py | llama.cpp | llm-compressor."""
        if self.path is not None:
            return "user"
        return "gguf-py" if self.mix else ("llama.cpp" if self.llama_cpp else "llm-compressor")

    @property
    def method(self) -> str:
        """What the comparison table calls it: the preset or recipe by name."""
        if self.llama_cpp == "mix":
            budget = self.budget if isinstance(self.budget, str) else f"{self.budget:g} bpw"
            return f"{self.objective} mix @{budget}" + (" imatrix" if self.imatrix else "")
        if self.llama_cpp:
            return f"llama.cpp {self.llama_cpp}" + (" recipe" if self.recipe else "") + (" imatrix" if self.imatrix else "")
        if self.llm_compressor:
            return f"llm-compressor {self.llm_compressor}"
        return "gguf-py mix" if self.mix else "user checkpoint"


@dataclass(frozen=True)
class RepairConfig:
    """Sensitivity scans (repair): each block's attention and MLP quantized alone to a target
    type, measured on a split of scan tokens of its own; the mixes (llama_cpp: mix) and the
    gate's way forward read them."""

    targets: tuple = ()  # types scanned (each mix's low type is scanned whether listed or not)
    scan_tokens: int = 2048  # tokens of the scan split (disjoint from every other split)
    high: str = "q8_0"  # the type the gate's way forward upgrades groups to
    seed: int = 0  # the scan split's draw and the additivity check's random subsets


@dataclass(frozen=True)
class CalibrationConfig:
    """Calibration tokens (calibration): a split of their own, disjoint from SAE-training, audit
    and held-out tokens; the same for every calibrated method (importance matrix, GPTQ, AWQ,
    SmoothQuant, SparseGPT, Wanda)."""

    n_tokens: int = 8192  # tokens, in sequences of corpus.context_length


@dataclass(frozen=True)
class ModelConfig:
    """One audited model (models.<name>)."""

    name: str  # the key under models: (results/<name>/...)
    source: str  # gguf | hf
    path: str  # GGUF file, package:<pkg>/<file>, transformers folder or hub id
    hook: str | None = None  # SAE hook, TransformerLens name: blocks.<L>.hook_resid_post etc. (with sae)
    sae: SaeConfig | None = None  # the SAE at hook
    dtype: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | float32 | bfloat16 | float16
    batch_size: int = 16  # sequences per forward when capturing activations
    exclude_bos: bool = True  # leave the BOS position out of the audit (it is an outlier)
    center: bool | None = None  # subtract each token's mean activation; None: as the SAE's metadata says
    checkpoints: dict = field(default_factory=dict)  # ckpt-<key> variants: key -> CheckpointConfig
    hooks: dict = field(default_factory=dict)  # several depths: hook -> SaeConfig (instead of hook + sae)

    def __post_init__(self):
        if self.source != "gguf" and any(c.mix or c.llama_cpp for c in self.checkpoints.values()):
            raise AuditError(f"models.{self.name}.checkpoints: a mix or llama_cpp preset is made from a GGUF "
                             "reference; convert the model with llama.cpp's convert_hf_to_gguf.py and use source: gguf")
        where = f"models.{self.name}"
        if self.hooks and (self.hook or self.sae):
            raise AuditError(f"{where}: give either hook and sae (one depth) or hooks (several), not both")
        if not self.hooks and not (self.hook and self.sae):
            raise AuditError(f"{where}: name where the SAE reads: hook and sae, or hooks (hook -> sae)")
        for hook, sae in self.saes.items():
            key = f"{where}.sae" if self.hook else f"{where}.hooks.{hook}"
            if sae.source == "disk" and not sae.path:
                raise AuditError(f"{key}.path: set the folder saved by SAELens for source: disk")
            if sae.source == "saelens" and not (sae.release and sae.id):
                raise AuditError(f"{key}.release and {key}.id: both are needed for source: saelens")

    @property
    def saes(self) -> dict:
        """hook -> SaeConfig, shallowest first (the one-hook form is the one pair)."""
        pairs = self.hooks or {self.hook: self.sae}
        return dict(sorted(pairs.items(), key=lambda kv: hook_order(kv[0])))

    def sae_key(self, hook: str) -> str:
        """The config key that names the SAE at `hook` (for messages)."""
        return f"models.{self.name}.sae" if self.hook else f"models.{self.name}.hooks.{hook}"


@dataclass(frozen=True)
class QuantizationConfig:
    """Round-to-nearest weight quantization variants (quantization)."""

    bits: tuple = (8, 7, 6, 5, 4)  # one variant per bit-width
    group_size: int | None = None  # scales per group of this many input columns; None: per output channel
    symmetric: bool = True  # symmetric (no zero point) or asymmetric

    def __post_init__(self):
        for b in self.bits:
            check_bits(b)

    def variants(self) -> list[Variant]:
        return [Variant("rtn", bits=b, group_size=self.group_size, symmetric=self.symmetric) for b in self.bits]


@dataclass(frozen=True)
class PruningConfig:
    """Magnitude-pruning variants and the matched-perplexity search (pruning)."""

    sparsity: tuple = (0.1, 0.3, 0.5)  # one variant per sparsity
    scope: str = "layer"  # layer (threshold per matrix) | global (one threshold for all block weights)
    match: bool = True  # find, per RTN variant, the sparsity with the same perplexity
    match_tolerance: float = 0.01  # relative perplexity tolerance of the match
    match_tokens: int = 2048  # held-out tokens scored per step of the search
    max_sparsity: float = 0.95  # upper end of the search

    def __post_init__(self):
        for s in self.sparsity:
            check_sparsity(s)

    def variants(self) -> list[Variant]:
        return [Variant("magnitude", sparsity=float(s), scope=self.scope) for s in self.sparsity]

    def search(self) -> MatchSearch:
        return MatchSearch(self.scope, self.match_tolerance, self.match_tokens, self.max_sparsity)

    def curve(self) -> PruningCurve:
        return PruningCurve(self.scope, self.match_tokens, self.max_sparsity)


@dataclass(frozen=True)
class MatchSearch:
    """What the matched-pruning search needs of `pruning` (not the list of sparsities)."""

    scope: str
    tolerance: float
    n_tokens: int
    max_sparsity: float


@dataclass(frozen=True)
class PruningCurve:
    """What the shared perplexity-versus-sparsity curve needs (not the match tolerance)."""

    scope: str
    n_tokens: int
    max_sparsity: float


@dataclass(frozen=True)
class EvaluationConfig:
    """Task metrics on held-out tokens (evaluation)."""

    n_tokens: int = 4096  # held-out tokens
    sliding: bool = False  # also a sliding-window perplexity (a second forward over the held-out tokens)
    window: int | None = None  # sliding-window perplexity window; None: the context length
    stride: int | None = None  # sliding-window stride; None: half the window
    batch_size: int = 8  # sequences per forward


@dataclass(frozen=True)
class PredictabilityConfig:
    """Cross-validated prediction of survival from FP statistics (predictability)."""

    folds: int = 5  # stratified CV folds
    seed: int = 0  # fold shuffling


@dataclass(frozen=True)
class GateConfig:
    """Deployment gate thresholds (gate): featureaudit-gate's defaults and the summary's verdict."""

    min_survived: float = 0.5  # fraction of FP-active features that must survive
    max_damaged: float = 0.2  # fraction that may be damaged
    # Perplexity within this relative change of FP counts as "perplexity says fine": llama.cpp
    # keeps a few percent next to its quantized-model perplexity baselines.
    perplexity_tolerance: float = 0.02
    watchlist: str | None = None  # file of feature ids that must survive (featureaudit-gate; sampled by causal)


@dataclass(frozen=True)
class UncertaintyConfig:
    """Seeded block bootstrap over audit sequences (uncertainty): confidence intervals."""

    replicates: int = 200  # bootstrap draws
    auc_replicates: int = 50  # of those, how many refit the predictability model (5 fits each)
    blocks: int = 100  # sequences are pooled into at most this many blocks (memory: blocks x d_sae)
    level: float = 0.95  # two-sided interval
    seed: int = 0  # the same draws for every variant, so intervals of differences are paired


@dataclass(frozen=True)
class CausalConfig:
    """Causal fidelity at the hook (causal): splice scores, ablation and steering per variant."""

    variants: tuple = ("rtn-w6", "rtn-w5", "rtn-w4")  # which variants get the causal audit
    hooks: tuple = ()  # at which hooks (empty: every hook of the model)
    features: int = 24  # FP-active features sampled (the gate's watch-list always included)
    sequences_per_feature: int = 2  # held-out sequences per feature, those where it fires hardest
    pool: int = 32  # held-out sequences the features and their sequences are drawn from (at most all)
    splice_sequences: int = 16  # held-out sequences for the splice scores
    steer_scale: float = 4.0  # steering adds this x the feature's mean FP activation when active
    top_k: int = 10  # promoted tokens compared for steering transfer
    min_overlap: float = 0.5  # steering transfers when this share of the top-k agree
    seed: int = 0


@dataclass(frozen=True)
class RuntimeConfig:
    """llama.cpp's own activations for GGUF variants (runtime): what the shipped runtime computes."""

    enabled: bool = False  # fp (as F32 GGUF) and every GGUF checkpoint variant, through llama.cpp
    n_tokens: int = 8192  # the first audit sequences holding this many tokens (both paths compared on them)


@dataclass(frozen=True)
class EvidenceConfig:
    """Per-feature evidence for the feature browser (evidence): top FP contexts per feature."""

    top_k: int = 8  # contexts per feature, at most one per sequence
    before: int = 10  # tokens shown before the max-activating token
    after: int = 4  # and after it


@dataclass(frozen=True)
class ModelSource:
    """Where the reference model is loaded from (the tokens and reference_model rules)."""

    name: str  # the model's key, for error messages
    source: str
    path: str


@dataclass(frozen=True)
class ModelRun:
    """How a model job loads and runs the reference: what every model rule passes on."""

    name: str  # the model's key, for error messages
    dtype: str
    device: str


@dataclass(frozen=True)
class CaptureSettings:
    """What capturing activations at the SAE's hook needs (the sae and capture rules)."""

    hook: str
    batch_size: int
    exclude_bos: bool
    center: bool | None
    prepend_bos: bool


@dataclass(frozen=True)
class AuditConfig:
    """The whole config.yaml. The Snakefile hands each rule only the views it uses (the
    methods below), as params: a setting a rule reads is therefore one of its rerun triggers."""

    models: dict
    results: str = "results"  # folder every output goes to
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    corpora: tuple = ()  # AuditCorpus, each: more text to audit on (results keyed by variant, hook, corpus)
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)
    formats: tuple = ()  # shipped formats and per-tensor RTN: gguf-q4_0, bnb-nf4, ao-w8a8, rtn-w6-tensor, ...
    pruning: PruningConfig = field(default_factory=PruningConfig)
    survival: Thresholds = field(default_factory=Thresholds)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    predictability: PredictabilityConfig = field(default_factory=PredictabilityConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    uncertainty: UncertaintyConfig = field(default_factory=UncertaintyConfig)
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)
    causal: CausalConfig = field(default_factory=CausalConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    repair: RepairConfig = field(default_factory=RepairConfig)

    def scan_targets(self, model: str) -> list[str]:
        """The types the model is scanned at: repair.targets and every mix's low type."""
        lows = [c.low for c in self.models[model].checkpoints.values()
                if c.llama_cpp == "mix" and c.objective in ("features", "kl")]
        return list(dict.fromkeys(list(self.repair.targets) + lows))

    def mixes(self, model: str) -> list[str]:
        return [k for k, c in self.models[model].checkpoints.items() if c.llama_cpp == "mix"]

    def token_budget(self, model: str) -> TokenBudget:
        c = self.corpus
        trains = any(sae.source == "train" for sae in self.models[model].saes.values())
        return TokenBudget(c.context_length, c.n_tokens, self.evaluation.n_tokens,
                           c.sae_train_tokens if trains else 0, c.prepend_bos, c.seed)

    def corpus_labels(self) -> list[str]:
        """The audit corpora's names, main first."""
        return [self.corpus.label] + [c.label for c in self.corpora]

    def extra_corpus(self, label: str) -> AuditCorpus:
        return next(c for c in self.corpora if c.label == label)

    def corpus_variants(self, model: str, label: str) -> list[str]:
        """The model's variants audited on a corpus, in the model's order (fp always)."""
        if label == self.corpus.label:
            return self.variants(model)
        wanted = set(self.extra_corpus(label).variants)
        return [v for v in self.variants(model) if not wanted or v in wanted or v == "fp"]

    def model_source(self, model: str) -> ModelSource:
        m = self.models[model]
        return ModelSource(model, m.source, m.path)

    def model_run(self, model: str) -> ModelRun:
        m = self.models[model]
        return ModelRun(model, m.dtype, self.device)

    def capture_settings(self, model: str, hook: str) -> CaptureSettings:
        m = self.models[model]
        return CaptureSettings(hook, m.batch_size, m.exclude_bos, m.center, self.corpus.prepend_bos)

    def hooks(self, model: str) -> list[str]:
        """The model's hooks, shallowest first."""
        return list(self.models[model].saes)

    def variants(self, model: str) -> list[str]:
        """Every variant of a model, in the order figures and the summary list them."""
        names = ["fp"] + [v.name for v in self.quantization.variants()] + list(self.formats)
        names += [f"ckpt-{key}" for key in self.models[model].checkpoints]
        names += [v.name for v in self.pruning.variants()]
        if self.pruning.match:
            names += [f"match-{v.name}" for v in self.quantization.variants()]
        return names

    def causal_variants(self, model: str) -> list[str]:
        """The model's variants that get the causal audit (causal.variants, in the model's order)."""
        wanted = set(self.causal.variants)
        return [v for v in self.variants(model) if v in wanted and v != "fp"]

    def causal_hooks(self, model: str) -> list[str]:
        """The model's hooks that get the causal audit (causal.hooks, or all of them)."""
        wanted = set(self.causal.hooks)
        return [h for h in self.hooks(model) if not wanted or h in wanted]

    def produced(self, model: str, producer: str) -> list[str]:
        """The model's checkpoint keys a producer makes (llama.cpp, llm-compressor, gguf-py)."""
        return [k for k, c in self.models[model].checkpoints.items() if c.producer == producer]

    def runtime_variants(self, model: str) -> list[str]:
        """Variants whose activations llama.cpp also computes: fp (its F32 GGUF) and every
        checkpoint that is a GGUF file, when runtime is enabled for a GGUF reference."""
        m = self.models[model]
        if not self.runtime.enabled or m.source != "gguf":
            return []
        ggufs = [f"ckpt-{k}" for k, c in m.checkpoints.items()
                 if c.mix or c.llama_cpp or (c.path and str(c.path).endswith(".gguf"))]
        return ["fp"] + ggufs

    def method(self, model: str, variant: str) -> str:
        """What the method comparison calls a variant: the tool and its setting."""
        v = parse_variant(variant)
        if v.kind == "checkpoint":
            return self.models[model].checkpoints[v.checkpoint].method
        if v.kind == "rtn":
            return f"RTN w{v.bits}" + (f" g{v.group_size}" if v.group_size else "") + (
                " per-tensor" if v.per_tensor else "") + ("" if v.symmetric else " asym")
        names = {"fp": "reference", "gguf": f"gguf-py {str(v.fmt).upper()}", "bnb": f"bitsandbytes {str(v.fmt).upper()}",
                 "torchao": f"torchao {str(v.fmt).upper()}"}
        if v.kind in names:
            return names[v.kind]
        if v.kind == "magnitude":
            return f"magnitude {v.sparsity:.2f}" + (" global" if v.scope == "global" else "")
        return f"magnitude matched to {v.matched_to}"

    def calibrates(self, model: str) -> bool:
        """Whether any of the model's checkpoints is made with calibration tokens."""
        return any(c.imatrix or c.llm_compressor for c in self.models[model].checkpoints.values())

    def quantized(self) -> list[str]:
        return [v.name for v in self.quantization.variants()]


def as_params(settings) -> dict:
    """A settings dataclass as a plain dict: what Snakemake can record and compare as a param
    (it silently ignores params it cannot repr, dataclasses among them)."""
    return asdict(settings)


def from_params(cls, raw: dict):
    """Rebuild a settings dataclass from `as_params`'s dict (nested dataclasses included)."""
    hints = get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):
        if f.name in raw:
            value = raw[f.name]
            if is_dataclass(hints[f.name]) and isinstance(value, dict):
                value = from_params(hints[f.name], value)
            kwargs[f.name] = value
    return cls(**kwargs)


def validate_schema(raw: dict) -> None:
    """Every schema violation of the config, one line each (the most specific error per key)."""
    import jsonschema

    schema = yaml.safe_load(SCHEMA.read_text())
    by_key: dict[tuple, list] = {}
    for error in jsonschema.Draft202012Validator(schema).iter_errors(raw):
        by_key.setdefault(tuple(error.absolute_path), []).append(error)
    problems = Problems()
    for path in sorted(by_key, key=lambda p: tuple(map(str, p))):
        problems.add(_schema_line(jsonschema.exceptions.best_match(by_key[path])))
    problems.raise_any()


def _schema_line(error) -> str:
    key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        where = f"{key}." if error.absolute_path else ""
        return f"config key {where}{extra[0] if extra else '?'} is unknown; allowed here: {', '.join(allowed)}"
    return f"config key {key}: {error.message}"


def _build(cls, raw: dict | None, **extra):
    raw = dict(raw or {})
    kwargs = {}
    for f in fields(cls):
        if f.name in raw:
            v = raw[f.name]
            kwargs[f.name] = tuple(v) if isinstance(v, list) else v
    return cls(**kwargs, **extra)


def _formats(names: list) -> tuple:
    for name in names:
        try:
            kind = parse_variant(name).kind
        except AuditError as e:
            raise AuditError(f"formats: {e}") from None
        if kind not in ("rtn", "gguf", "bnb", "torchao"):
            raise AuditError(f"formats: {name} is not a format (gguf-*, bnb-*, ao-*, rtn-w<bits>-tensor)")
    return tuple(names)


def load_config(raw: dict) -> AuditConfig:
    """The typed config; every mistake found is reported at once (AuditError, one per line)."""
    validate_schema(raw)
    problems = Problems()
    models = {}
    for name, m in raw["models"].items():
        def build_sae(sae_raw: dict, key: str):
            train = problems.check(_build, SaeTraining, sae_raw.get("train"), prefix=f"{key}.train: ")
            return problems.check(_build, SaeConfig, {k: v for k, v in sae_raw.items() if k != "train"},
                                  train=train or SaeTraining())

        sae = build_sae(dict(m["sae"]), f"models.{name}.sae") if m.get("sae") else None
        hooks = {h: build_sae(dict(v), f"models.{name}.hooks.{h}") for h, v in (m.get("hooks") or {}).items()}
        checkpoints = {k: problems.check(_build, CheckpointConfig, v, prefix=f"models.{name}.checkpoints.{k}: ")
                       for k, v in (m.get("checkpoints") or {}).items()}
        if (m.get("sae") and sae is None) or None in hooks.values() or None in checkpoints.values():
            continue
        model = problems.check(_build, ModelConfig,
                               {k: v for k, v in m.items() if k not in ("sae", "hooks", "checkpoints")},
                               name=name, sae=sae, hooks=hooks, checkpoints=checkpoints)
        if model is not None:
            models[name] = model
    sections = {
        "corpus": CorpusConfig, "quantization": QuantizationConfig, "pruning": PruningConfig,
        "survival": Thresholds, "evaluation": EvaluationConfig, "predictability": PredictabilityConfig,
        "gate": GateConfig, "uncertainty": UncertaintyConfig, "evidence": EvidenceConfig,
        "causal": CausalConfig, "calibration": CalibrationConfig, "runtime": RuntimeConfig,
        "repair": RepairConfig,
    }
    built = {key: problems.check(_build, cls, raw.get(key)) for key, cls in sections.items()}
    formats = problems.check(_formats, raw.get("formats") or [])
    corpora = tuple(problems.check(_build, AuditCorpus, c, prefix=f"corpora[{i}].") for i, c in enumerate(raw.get("corpora") or []))
    problems.raise_any()
    cfg = AuditConfig(models=models, results=raw.get("results", "results"), device=raw.get("device", "auto"),
                      formats=formats, corpora=corpora, **built)
    for name in cfg.models:
        names = cfg.variants(name)
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            problems.add(f"variant {twice[0]} is asked for twice (quantization.bits and formats?); list it once")
    problems.raise_any()
    return cfg


def unknown_variants(cfg: AuditConfig, wanted, key: str) -> list[str]:
    """One line for each variant `key` names that no model's sweep has, with the closest names
    (a misspelt or dropped variant would otherwise be skipped without a word)."""
    import difflib

    known = list(dict.fromkeys(v for m in cfg.models for v in cfg.variants(m)))
    out = []
    for v in wanted:
        if v in known:
            continue
        close = difflib.get_close_matches(v, known, n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}?" if close else f"the sweep has {', '.join(known)}"
        out.append(f"{key}: {v} is not a variant of this sweep ({hint}); add it to the sweep or drop it from {key}")
    return out


def cross_field_problems(cfg: AuditConfig) -> list[str]:
    """Rules between settings that no single key's schema can state."""
    out = []
    c, e = cfg.corpus, cfg.evaluation
    for name, m in cfg.models.items():
        for hook, sae in m.saes.items():
            t = sae.train
            if sae.source != "train":
                continue
            key = f"{m.sae_key(hook)}.train"
            if t.k >= t.d_sae:
                out.append(f"{key}: k ({t.k}) must be below d_sae ({t.d_sae}); lower k or raise d_sae")
            usable = c.sae_train_tokens - (c.sae_train_tokens // c.context_length if m.exclude_bos else 0)
            if t.batch_size > usable:
                out.append(f"{key}.batch_size ({t.batch_size}) is more than the {usable} activations of corpus."
                           f"sae_train_tokens ({c.sae_train_tokens}); raise corpus.sae_train_tokens or lower the batch")
    window = e.window or c.context_length
    if e.stride is not None and e.stride > window:
        out.append(f"evaluation.stride ({e.stride}) is longer than the window ({window}); tokens between windows would "
                   "never be scored: lower evaluation.stride")
    if e.n_tokens < c.context_length:
        out.append(f"evaluation.n_tokens ({e.n_tokens}) is less than one sequence (corpus.context_length "
                   f"{c.context_length}); raise it")
    if cfg.pruning.match and cfg.pruning.match_tokens > e.n_tokens:
        out.append(f"pruning.match_tokens ({cfg.pruning.match_tokens}) is more than the held-out tokens "
                   f"(evaluation.n_tokens {e.n_tokens}); lower it or raise evaluation.n_tokens")
    if c.n_tokens < c.context_length:
        out.append(f"corpus.n_tokens ({c.n_tokens}) is less than one sequence (corpus.context_length "
                   f"{c.context_length}); raise it")
    for name in cfg.models:
        for hook in cfg.causal_hooks(name):
            if cfg.causal_variants(name) and parse_hook(hook).point not in ("hook_resid_post", "hook_resid_pre"):
                out.append(f"causal: models.{name} hook {hook} is not in the residual stream, where the causal "
                           "audit edits; name residual hooks in causal.hooks, or set causal.variants: []")
    for name, m in cfg.models.items():
        sequences = -(-c.n_tokens // c.context_length)
        audited = sequences * (c.context_length - (1 if m.exclude_bos else 0))
        if cfg.survival.active_min_tokens > audited:
            out.append(f"survival.active_min_tokens ({cfg.survival.active_min_tokens}) is more than the {audited} audit "
                       f"tokens models.{name} is encoded on, so no feature could be audited; lower it or raise "
                       "corpus.n_tokens")
    out += corpus_problems(cfg)
    if cfg.causal.variants != CausalConfig.variants:  # named by the user: each must be in the sweep
        out += unknown_variants(cfg, cfg.causal.variants, "causal.variants")
    audited = sorted({h for m in cfg.models.values() for h in m.saes}, key=hook_order)
    for hook in cfg.causal.hooks:
        if hook not in audited:
            out.append(f"causal.hooks: {hook} is not a hook of this audit ({', '.join(audited)}); name one of those")
    if cfg.gate.watchlist and not Path(cfg.gate.watchlist).is_file():
        out.append(f"gate.watchlist: {cfg.gate.watchlist} does not exist; give a text file of feature ids, one per line")
    return out


def corpus_problems(cfg: AuditConfig) -> list[str]:
    """The audit corpora: names unique (each is a results folder), budgets of whole sequences,
    variants that the sweep has."""
    out, seen = [], {cfg.corpus.label: "corpus.label"}
    for i, c in enumerate(cfg.corpora):
        key = f"corpora[{i}]"
        if c.label in seen:
            out.append(f"{key}.label: {c.label} is already the name of {seen[c.label]}; give each corpus its own label")
        seen.setdefault(c.label, key)
        if c.n_tokens < cfg.corpus.context_length:
            out.append(f"{key}.n_tokens ({c.n_tokens}) is less than one sequence (corpus.context_length "
                       f"{cfg.corpus.context_length}); raise it")
        out += unknown_variants(cfg, [v for v in c.variants if v != "fp"], f"{key}.variants")
    return out
