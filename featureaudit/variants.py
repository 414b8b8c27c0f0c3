"""Compressed-variant names and their parameters, e.g. ``rtn-w4-g128``, ``mag-0.30``,
``match-rtn-w4``. Pure Python (no torch): the Snakefile parses names on every start and in
every cluster job."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import AuditError

MIN_BITS, MAX_BITS = 2, 8


@dataclass(frozen=True)
class Variant:
    kind: str  # "fp" | "rtn" | "magnitude" | "match"
    bits: int | None = None
    group_size: int | None = None
    symmetric: bool = True
    sparsity: float | None = None
    scope: str = "layer"  # pruning threshold per layer or over all block weights
    matched_to: str | None = None  # for kind "match": the quantized variant it is matched to

    def __post_init__(self):
        if self.kind == "rtn":
            check_bits(self.bits)
            if self.group_size is not None and self.group_size <= 0:
                raise AuditError(f"quantization group_size must be positive, got {self.group_size}")
        if self.kind == "magnitude":
            check_sparsity(self.sparsity)
        if self.scope not in ("layer", "global"):
            raise AuditError(f"pruning scope must be 'layer' or 'global', got {self.scope!r}")

    @property
    def name(self) -> str:
        if self.kind == "fp":
            return "fp"
        if self.kind == "rtn":
            return (
                f"rtn-w{self.bits}"
                + (f"-g{self.group_size}" if self.group_size else "")
                + ("" if self.symmetric else "-asym")
            )
        if self.kind == "magnitude":
            return f"mag-{self.sparsity:.2f}" + ("-global" if self.scope == "global" else "")
        return f"match-{self.matched_to}"


def check_bits(bits) -> None:
    if not isinstance(bits, int) or isinstance(bits, bool) or not MIN_BITS <= bits <= MAX_BITS:
        raise AuditError(f"quantization bits must be integers from {MIN_BITS} to {MAX_BITS}, got {bits!r}")


def check_sparsity(sparsity) -> None:
    if not isinstance(sparsity, (int, float)) or not 0.0 <= float(sparsity) < 1.0:
        raise AuditError(f"pruning sparsity must be a number in [0, 1), got {sparsity!r}")


# The one definition of the name grammar: the Snakefile's wildcard constraints are built from
# these patterns, and parse_variant reads names with them.
QUANTIZED_PATTERN = r"rtn-w(\d+)(?:-g(\d+))?(-asym)?"
PRUNED_PATTERN = r"mag-(\d*\.?\d+)(-global)?"
VARIANT_PATTERN = f"fp|{QUANTIZED_PATTERN}|{PRUNED_PATTERN}|match-{QUANTIZED_PATTERN}"
_RTN = re.compile(f"^{QUANTIZED_PATTERN}$")
_MAG = re.compile(f"^{PRUNED_PATTERN}$")


def parse_variant(name: str) -> Variant:
    if name == "fp":
        return Variant("fp")
    if m := _RTN.match(name):
        return Variant("rtn", bits=int(m[1]), group_size=int(m[2]) if m[2] else None, symmetric=not m[3])
    if m := _MAG.match(name):
        return Variant("magnitude", sparsity=float(m[1]), scope="global" if m[2] else "layer")
    if name.startswith("match-"):
        inner = parse_variant(name[len("match-"):])
        if inner.kind != "rtn":
            raise AuditError(f"variant {name!r}: only quantized variants are matched to a pruning level")
        return Variant("match", matched_to=inner.name)
    raise AuditError(f"unknown variant name {name!r}; expected fp, rtn-w<bits>[-g<size>][-asym], mag-<sparsity>")
