"""Typed configuration: the workflow's config.yaml as dataclasses.

`load_config(dict)` validates against workflow/schemas/config.schema.yaml (unknown keys and
wrong types are one-line errors naming the key) and then builds the dataclasses, whose
__post_init__ checks what a schema cannot (cross-field rules).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from .errors import AuditError
from .variants import Variant, check_bits, check_sparsity

SCHEMA = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"


# The stage modules' own settings (sae, survival, tokens) live here too, so that reading a
# config never imports torch: the Snakefile does it on every start and in every cluster job.
@dataclass(frozen=True)
class SaeTraining:
    d_sae: int = 4608
    k: int = 32
    steps: int = 600
    batch_size: int = 1024
    lr: float = 4e-4
    seed: int = 0


@dataclass(frozen=True)
class Thresholds:
    active_min_tokens: int = 10
    survived_r: float = 0.9
    blurred_r: float = 0.5

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
    context_length: int = 128
    audit_tokens: int = 16384
    heldout_tokens: int = 4096
    sae_train_tokens: int = 0
    prepend_bos: bool = True
    seed: int = 0

    def sequences(self, split: str) -> int:
        n = {"sae_train": self.sae_train_tokens, "audit": self.audit_tokens, "heldout": self.heldout_tokens}[split]
        return -(-n // self.context_length) if n else 0


@dataclass(frozen=True)
class CorpusConfig:
    source: str = "pydoc"
    paths: tuple = ()
    name: str | None = None
    split: str = "train"
    column: str = "text"
    n_tokens: int = 16384
    sae_train_tokens: int = 32768
    context_length: int = 128
    prepend_bos: bool = True
    seed: int = 0

    def __post_init__(self):
        if self.source == "text_files" and not self.paths:
            raise AuditError("corpus.paths: list at least one text file for corpus.source: text_files")
        if self.source == "hf_dataset" and not self.name:
            raise AuditError("corpus.name: name the Hugging Face dataset for corpus.source: hf_dataset")


@dataclass(frozen=True)
class SaeConfig:
    source: str = "train"
    path: str | None = None
    release: str | None = None
    id: str | None = None
    train: SaeTraining = field(default_factory=SaeTraining)


@dataclass(frozen=True)
class ModelConfig:
    name: str
    source: str
    path: str
    hook: str
    sae: SaeConfig
    dtype: str = "auto"
    batch_size: int = 16
    exclude_bos: bool = True
    center: bool | None = None  # None: follow the SAE's metadata

    def __post_init__(self):
        key = f"models.{self.name}.sae"
        if self.sae.source == "disk" and not self.sae.path:
            raise AuditError(f"{key}.path: set the folder saved by SAELens for sae.source: disk")
        if self.sae.source == "saelens" and not (self.sae.release and self.sae.id):
            raise AuditError(f"{key}.release and {key}.id: both are needed for sae.source: saelens")


@dataclass(frozen=True)
class QuantizationConfig:
    bits: tuple = (8, 7, 6, 5, 4)
    group_size: int | None = None
    symmetric: bool = True

    def __post_init__(self):
        for b in self.bits:
            check_bits(b)

    def variants(self) -> list[Variant]:
        return [Variant("rtn", bits=b, group_size=self.group_size, symmetric=self.symmetric) for b in self.bits]


@dataclass(frozen=True)
class PruningConfig:
    sparsity: tuple = (0.1, 0.3, 0.5)
    scope: str = "layer"
    match: bool = True
    match_tolerance: float = 0.01
    match_tokens: int = 2048
    max_sparsity: float = 0.95

    def __post_init__(self):
        for s in self.sparsity:
            check_sparsity(s)

    def variants(self) -> list[Variant]:
        return [Variant("magnitude", sparsity=float(s), scope=self.scope) for s in self.sparsity]


@dataclass(frozen=True)
class EvaluationConfig:
    n_tokens: int = 4096
    window: int | None = None  # default: the corpus context length
    stride: int | None = None  # default: half the window
    batch_size: int = 8


@dataclass(frozen=True)
class PredictabilityConfig:
    folds: int = 5
    seed: int = 0


@dataclass(frozen=True)
class GateConfig:
    min_survived: float = 0.5
    max_damaged: float = 0.2


@dataclass(frozen=True)
class AuditConfig:
    models: dict
    results: str = "results"
    device: str = "auto"
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)
    pruning: PruningConfig = field(default_factory=PruningConfig)
    survival: Thresholds = field(default_factory=Thresholds)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    predictability: PredictabilityConfig = field(default_factory=PredictabilityConfig)
    gate: GateConfig = field(default_factory=GateConfig)

    def token_budget(self, model: str) -> TokenBudget:
        c = self.corpus
        trains = self.models[model].sae.source == "train"
        return TokenBudget(c.context_length, c.n_tokens, self.evaluation.n_tokens,
                           c.sae_train_tokens if trains else 0, c.prepend_bos, c.seed)

    def variants(self) -> list[str]:
        """Every variant name, in the order figures and the summary list them."""
        names = ["fp"] + [v.name for v in self.quantization.variants()] + [v.name for v in self.pruning.variants()]
        if self.pruning.match:
            names += [f"match-{v.name}" for v in self.quantization.variants()]
        return names

    def quantized(self) -> list[str]:
        return [v.name for v in self.quantization.variants()]


def validate_schema(raw: dict) -> None:
    import jsonschema

    schema = yaml.safe_load(SCHEMA.read_text())
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(raw))
    if error is None:
        return
    key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        where = f"{key}." if error.absolute_path else ""
        raise AuditError(f"config key {where}{extra[0] if extra else '?'} is unknown; allowed here: {', '.join(allowed)}")
    if error.validator == "required":
        raise AuditError(f"config key {key}: {error.message}")
    raise AuditError(f"config key {key}: {error.message}")


def _build(cls, raw: dict | None, **extra):
    raw = dict(raw or {})
    kwargs = {}
    for f in fields(cls):
        if f.name in raw:
            v = raw[f.name]
            kwargs[f.name] = tuple(v) if isinstance(v, list) else v
    return cls(**kwargs, **extra)


def load_config(raw: dict) -> AuditConfig:
    validate_schema(raw)
    models = {}
    for name, m in raw["models"].items():
        sae_raw = dict(m["sae"])
        sae = _build(SaeConfig, {k: v for k, v in sae_raw.items() if k != "train"},
                     train=_build(SaeTraining, sae_raw.get("train")))
        models[name] = _build(ModelConfig, {k: v for k, v in m.items() if k != "sae"}, name=name, sae=sae)
    return AuditConfig(
        models=models,
        results=raw.get("results", "results"),
        device=raw.get("device", "auto"),
        corpus=_build(CorpusConfig, raw.get("corpus")),
        quantization=_build(QuantizationConfig, raw.get("quantization")),
        pruning=_build(PruningConfig, raw.get("pruning")),
        survival=_build(Thresholds, raw.get("survival")),
        evaluation=_build(EvaluationConfig, raw.get("evaluation")),
        predictability=_build(PredictabilityConfig, raw.get("predictability")),
        gate=_build(GateConfig, raw.get("gate")),
    )


def load_config_file(path) -> AuditConfig:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise AuditError(f"could not read config {path}: {e}") from None
    return load_config(raw or {})
