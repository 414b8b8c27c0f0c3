"""Compressed-variant names and their parameters. Pure Python (no torch): the Snakefile parses
names on every start and in every cluster job.

  fp                       the full-precision reference
  rtn-w{b}[-g{G}|-tensor][-asym]
                           round-to-nearest to b bits: one scale per output channel, per group
                           of G input columns, or per matrix (-tensor); symmetric unless -asym
  gguf-{type}              a GGUF block format, made by gguf-py (q8_0 q5_1 q5_0 q4_1 q4_0 mxfp4)
  bnb-{nf4|fp4}            bitsandbytes 4-bit, blocks of 64
  ao-{w8a8|w4a8|fp8}       torchao: int8 weights and int8 per-token activations; int4 weights
                           (groups of 32) and int8 activations; FP8 E4M3 weights and activations
  ckpt-{name}              a checkpoint named in the config (a GGUF file, a transformers folder,
                           possibly compressed-tensors), or one the workflow writes
  mag-{s:.2f}[-global]     magnitude pruning to sparsity s, per matrix unless -global
  match-{rtn variant}      magnitude pruning at the sparsity whose perplexity matches the variant
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import AuditError

MIN_BITS, MAX_BITS = 2, 8

#: GGUF block types gguf-py quantizes (byte-identical with llama.cpp's C quantizer).
GGUF_TYPES = ("q8_0", "q5_1", "q5_0", "q4_1", "q4_0", "mxfp4")
BNB_TYPES = ("nf4", "fp4")
#: llama-quantize presets a checkpoint may name (tools/quantize/quantize.cpp's names).
LLAMA_CPP_PRESETS = ("Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_0", "Q5_1", "Q4_K_M", "Q4_K_S", "Q4_0", "Q4_1",
                     "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K", "Q2_K_S", "IQ4_XS", "IQ4_NL", "IQ3_M", "IQ3_S",
                     "IQ3_XXS", "IQ2_M", "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S")
#: Presets llama-quantize refuses without an importance matrix.
LLAMA_CPP_NEED_IMATRIX = ("IQ3_XXS", "IQ2_M", "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S", "Q2_K_S")
TORCHAO_SCHEMES = ("w8a8", "w4a8", "fp8")
#: Types a per-tensor mix may use: the 32-weight block types llama-quantize writes on any width
#: that is a multiple of 32 (the K-quants need rows of 256 and fall back on SmolLM2's 576), with
#: their bits per weight (32 weights + fp16 scale, and minimum for the _1 types).
MIX_TYPE_BITS = {"q4_0": 4.5, "q4_1": 5.0, "q5_0": 5.5, "q5_1": 6.0, "q8_0": 8.5, "iq4_nl": 4.5}
MIX_TYPES = tuple(MIX_TYPE_BITS)
#: How a mix chooses which groups get the high type (featureaudit/repair/allocate.py).
MIX_OBJECTIVES = ("features", "kl", "random", "ends")
#: Quantization blocks run along a matrix's input dimension, which must be a multiple of them.
GGUF_BLOCK = 32
BNB_BLOCK = 64  # over the flattened matrix: any shape works
TORCHAO_W4_GROUP = 32


@dataclass(frozen=True)
class Variant:
    kind: str  # "fp" | "rtn" | "gguf" | "bnb" | "torchao" | "checkpoint" | "magnitude" | "match"
    bits: int | None = None
    group_size: int | None = None
    symmetric: bool = True
    per_tensor: bool = False  # rtn: one scale for the whole matrix
    fmt: str | None = None  # gguf type, bnb type or torchao scheme
    checkpoint: str | None = None  # kind "checkpoint": its name in the config
    sparsity: float | None = None
    scope: str = "layer"  # pruning threshold per layer or over all block weights
    matched_to: str | None = None  # for kind "match": the quantized variant it is matched to

    def __post_init__(self):
        if self.kind == "rtn":
            check_bits(self.bits)
            if self.group_size is not None and self.group_size <= 0:
                raise AuditError(f"quantization group_size must be positive, got {self.group_size}")
            if self.group_size and self.per_tensor:
                raise AuditError("an RTN variant has groups or one scale per matrix, not both")
        if self.kind == "magnitude":
            check_sparsity(self.sparsity)
        if self.scope not in ("layer", "global"):
            raise AuditError(f"pruning scope must be 'layer' or 'global', got {self.scope!r}")

    @property
    def block(self) -> int | None:
        """The width every quantized matrix's input dimension must be a multiple of, if any."""
        if self.kind == "gguf":
            return GGUF_BLOCK
        if self.kind == "torchao" and self.fmt == "w4a8":
            return TORCHAO_W4_GROUP
        if self.kind == "rtn" and self.group_size:
            return self.group_size
        return None

    @property
    def family(self) -> str:
        """What the figures group by: the tool or scheme that made the variant."""
        if self.kind == "rtn":
            return "rtn-tensor" if self.per_tensor else ("rtn-group" if self.group_size else "rtn")
        return self.kind

    @property
    def name(self) -> str:
        if self.kind == "fp":
            return "fp"
        if self.kind == "rtn":
            return (
                f"rtn-w{self.bits}"
                + (f"-g{self.group_size}" if self.group_size else "")
                + ("-tensor" if self.per_tensor else "")
                + ("" if self.symmetric else "-asym")
            )
        if self.kind == "gguf":
            return f"gguf-{self.fmt}"
        if self.kind == "bnb":
            return f"bnb-{self.fmt}"
        if self.kind == "torchao":
            return f"ao-{self.fmt}"
        if self.kind == "checkpoint":
            return f"ckpt-{self.checkpoint}"
        if self.kind == "magnitude":
            return f"mag-{self.sparsity:.2f}" + ("-global" if self.scope == "global" else "")
        return f"match-{self.matched_to}"


#: Variants made by changing the reference's block weights in place, and nothing else: equal
#: weights make them the FP model. (torchao also quantizes activations; a checkpoint is loaded
#: with its own config.)
WEIGHT_ONLY_KINDS = ("rtn", "gguf", "bnb", "magnitude", "match")


def may_equal_reference(variant: str) -> bool:
    """Whether a variant can come out as the FP model (so its job takes fp's outputs)."""
    return variant != "fp" and parse_variant(variant).kind in WEIGHT_ONLY_KINDS


def check_bits(bits) -> None:
    if not isinstance(bits, int) or isinstance(bits, bool) or not MIN_BITS <= bits <= MAX_BITS:
        raise AuditError(f"quantization bits must be integers from {MIN_BITS} to {MAX_BITS}, got {bits!r}")


def check_sparsity(sparsity) -> None:
    if not isinstance(sparsity, (int, float)) or not 0.0 <= float(sparsity) < 1.0:
        raise AuditError(f"pruning sparsity must be a number in [0, 1), got {sparsity!r}")


# The one definition of the name grammar: the Snakefile's wildcard constraints are built from
# these patterns, and parse_variant reads names with them.
QUANTIZED_PATTERN = r"rtn-w(\d+)(?:-g(\d+)|(-tensor))?(-asym)?"
FORMAT_PATTERN = rf"gguf-({'|'.join(GGUF_TYPES)})|bnb-({'|'.join(BNB_TYPES)})|ao-({'|'.join(TORCHAO_SCHEMES)})"
CHECKPOINT_PATTERN = r"ckpt-([A-Za-z0-9_]+)"
PRUNED_PATTERN = r"mag-(\d*\.?\d+)(-global)?"
VARIANT_PATTERN = f"fp|{QUANTIZED_PATTERN}|{FORMAT_PATTERN}|{CHECKPOINT_PATTERN}|{PRUNED_PATTERN}|match-{QUANTIZED_PATTERN}"
_RTN = re.compile(f"^{QUANTIZED_PATTERN}$")
_FORMAT = re.compile(f"^{FORMAT_PATTERN}$")
_CHECKPOINT = re.compile(f"^{CHECKPOINT_PATTERN}$")
_MAG = re.compile(f"^{PRUNED_PATTERN}$")


def parse_variant(name: str) -> Variant:
    if name == "fp":
        return Variant("fp")
    if m := _RTN.match(name):
        return Variant("rtn", bits=int(m[1]), group_size=int(m[2]) if m[2] else None, per_tensor=bool(m[3]),
                       symmetric=not m[4])
    if m := _FORMAT.match(name):
        kind = {"gguf": "gguf", "bnb": "bnb", "ao": "torchao"}[name.split("-", 1)[0]]
        return Variant(kind, fmt=m[1] or m[2] or m[3])
    if m := _CHECKPOINT.match(name):
        return Variant("checkpoint", checkpoint=m[1])
    if m := _MAG.match(name):
        return Variant("magnitude", sparsity=float(m[1]), scope="global" if m[2] else "layer")
    if name.startswith("match-"):
        inner = parse_variant(name[len("match-"):])
        if inner.kind != "rtn":
            raise AuditError(f"variant {name!r}: only RTN variants are matched to a pruning level")
        return Variant("match", matched_to=inner.name)
    raise AuditError(
        f"unknown variant name {name!r}; expected fp, rtn-w<bits>[-g<size>|-tensor][-asym], "
        f"gguf-<{'|'.join(GGUF_TYPES)}>, bnb-<{'|'.join(BNB_TYPES)}>, ao-<{'|'.join(TORCHAO_SCHEMES)}>, "
        "ckpt-<name>, mag-<sparsity>"
    )
