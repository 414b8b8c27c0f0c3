"""Allocators: which groups get the high type, at a bits-per-weight budget over the block
matrices. Every group starts at the low type; upgrading group g costs n_params(g) x (bits of
high - bits of low). Four ways to choose, all filling the same budget:

  features  greedy by survived fraction the scan says the group loses at the low type, per bit
  kl        greedy by the KL its low type adds, per bit (the criterion of ExLlamaV3's optimizer)
  random    a seeded random order (a floor: what any allocation at this budget gets)
  ends      the first and last blocks first, inwards (the common "keep the ends high" heuristic)

Greedy: take groups in order while each fits in what is left of the budget (a group that does
not fit is passed over, a later smaller one may still fit); a group whose gain is not positive
is never bought.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import AuditError
from ..variants import MIX_OBJECTIVES
from .groups import Group

OBJECTIVES = MIX_OBJECTIVES


@dataclass(frozen=True)
class Allocation:
    objective: str
    high: tuple  # group names upgraded, in the order they were bought
    bits_per_weight: float  # over the block matrices, as the types' sizes say
    budget: float


def gains(scan: pd.DataFrame, objective: str) -> pd.Series:
    """Per group: what the scan says upgrading it saves (higher is better)."""
    if objective == "features":
        return (-scan.groupby("group", sort=False).delta_survived.mean()).clip(lower=0.0)
    if objective == "kl":
        return scan.groupby("group", sort=False).kl.first()
    raise AuditError(f"objective {objective!r} has no scan gain; one of features, kl")


def order(groups: list[Group], objective: str, scan: pd.DataFrame | None, extra_bits: float, seed: int = 0) -> list[str]:
    """Group names in the order the objective buys them (only those worth buying)."""
    if objective in ("features", "kl"):
        if scan is None:
            raise AuditError(f"the {objective} allocator needs a sensitivity scan")
        gain = gains(scan, objective)
        missing = [g.name for g in groups if g.name not in gain.index]
        if missing:
            raise AuditError(f"the scan has no row for {missing[0]} (made for another model?); delete it and rerun")
        ratio = {g.name: gain[g.name] / (g.n_params * extra_bits) for g in groups}
        return [n for n in sorted(ratio, key=lambda n: -ratio[n]) if gain[n] > 0]
    if objective == "random":
        names = [g.name for g in groups]
        return [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    if objective == "ends":
        layers = sorted({g.layer for g in groups})
        inwards = [x for pair in zip(layers, reversed(layers)) for x in pair][: len(layers)]
        seen, out = set(), []
        for layer in inwards:
            if layer in seen:
                continue
            seen.add(layer)
            out += [g.name for g in groups if g.layer == layer]
        return out
    raise AuditError(f"objective {objective!r} is not one of {', '.join(OBJECTIVES)}")


def allocate(groups: list[Group], objective: str, budget: float, low_bits: float, high_bits: float,
             scan: pd.DataFrame | None = None, seed: int = 0) -> Allocation:
    """The groups upgraded to the high type within `budget` bits per weight."""
    total = sum(g.n_params for g in groups)
    if budget < low_bits - 1e-9:
        raise AuditError(f"budget {budget:.3f} bits per weight is below the low type's {low_bits:.3f}")
    extra = high_bits - low_bits
    left = (budget - low_bits) * total  # bits
    size = {g.name: g.n_params for g in groups}
    chosen = []
    for name in order(groups, objective, scan, extra, seed):
        cost = size[name] * extra
        if cost <= left + 1e-6:
            chosen.append(name)
            left -= cost
    used = low_bits + extra * sum(size[n] for n in chosen) / total
    return Allocation(objective, tuple(chosen), used, budget)
