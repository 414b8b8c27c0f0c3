"""The gate's way forward: when a variant fails, the cheapest mix of the scan's types that the
scan predicts to clear the gate: every group at the scan's target, then groups upgraded to the
high type in the order of survived features saved per bit, until every hook clears (or nothing
is left to upgrade), and what that costs in bits per weight. The prediction starts from the
target everywhere (measured: the summary's gguf-<target> row on the audit tokens where the
audit has it, else the scan's own whole-model measurement, additivity.csv's "all") and adds
back each upgraded group's single-group loss; additivity.csv says how far such sums hold. Pure
pandas: the gate CLI reads the tables beside the summary (repair/<target>/)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import AuditError
from ..variants import MIX_TYPE_BITS
from .allocate import order
from .groups import Group


@dataclass(frozen=True)
class WayForward:
    target: str  # the scan's type: every group not upgraded
    high: str
    groups: tuple  # upgraded, best first
    bits_added: float  # bits per weight over the block matrices
    predicted: dict  # hook -> predicted survived fraction after the upgrade
    base: dict  # hook -> survived fraction with every group at the target (measured)
    reaches: bool  # whether every hook is predicted to clear min_survived

    def line(self, variant: str, min_survived: float) -> str:
        low = MIX_TYPE_BITS[self.target]
        worst = min(self.predicted, key=lambda h: self.predicted[h])
        verdict = "clears" if self.reaches else "still misses"
        if not self.groups:
            return (f"way forward for {variant}: {self.target} everywhere ({low:.2f} bits per weight) already "
                    f"{verdict} {min_survived:g}: survived {self.base[worst]:.3f} at {worst}")
        names = ", ".join(self.groups[:6]) + (f" and {len(self.groups) - 6} more" if len(self.groups) > 6 else "")
        return (f"way forward for {variant}: a {self.target} mix with {names} at {self.high} "
                f"({len(self.groups)} groups, {low:.2f} -> {low + self.bits_added:.2f} bits per weight); the scan "
                f"predicts survived {self.base[worst]:.3f} ({self.target} everywhere) -> {self.predicted[worst]:.3f} "
                f"at {worst}, which {verdict} {min_survived:g}")


def target_survival(scan_path, summary: pd.DataFrame | None, corpus=None) -> dict:
    """hook -> survived fraction with every group at the scan's target: the summary's
    gguf-<target> rows (audit tokens) where it has them, else additivity.csv's "all" (scan tokens)."""
    scan_path = Path(scan_path)
    target = scan_path.parent.name
    if summary is not None:
        rows = summary[summary.variant == f"gguf-{target}"]
        if corpus is not None and "corpus" in rows:
            rows = rows[rows.corpus == corpus]
        if len(rows):
            return dict(zip(rows.hook, rows.frac_survived.astype(float)))
    from ..integrity import verify_file

    additivity = pd.read_csv(verify_file(scan_path.parent / "additivity.csv"))
    whole = additivity[additivity.subset == "all"]
    return dict(zip(whole.hook, whole.measured_survived.astype(float)))


def way_forward(scan: pd.DataFrame, base: dict, min_survived: float, high: str) -> WayForward:
    """Groups by survived fraction saved per bit, until every hook's prediction clears."""
    target = str(scan.target.iloc[0])
    hooks = [h for h in base if h in set(scan.hook)]
    if not hooks:
        raise AuditError("the scan table has none of the summary's hooks (made for another audit?); rerun the scan")
    first = scan.drop_duplicates("group")
    groups = [Group(int(r.layer), r.part, (), int(r.n_params)) for r in first.itertuples()]
    sizes = first.set_index("group").n_params
    gain = -scan.pivot_table(index="group", columns="hook", values="delta_survived", sort=False)[hooks]
    extra_bits = MIX_TYPE_BITS[high] - MIX_TYPE_BITS[target]
    predicted = {h: base[h] for h in hooks}
    chosen = []
    for g in order(groups, "features", scan, extra_bits):  # the features allocator's order
        if all(predicted[h] >= min_survived for h in hooks):
            break
        chosen.append(g)
        for h in hooks:
            predicted[h] = min(1.0, predicted[h] + max(0.0, gain.loc[g, h]))
    extra = extra_bits * sizes[chosen].sum() / sizes.sum()
    return WayForward(target, high, tuple(chosen), float(extra), predicted, {h: base[h] for h in hooks},
                      all(predicted[h] >= min_survived for h in hooks))


def scan_tables(summary_path) -> list[Path]:
    """The scan tables beside a summary (results/<model>/repair/<target>/scan.csv)."""
    return sorted((Path(summary_path).parent / "repair").glob("*/scan.csv"))


def write_recipe_file(scan: pd.DataFrame, plan: WayForward, reference_gguf, out_path) -> None:
    """The way forward as a recipe file (every block tensor named: the plan's groups at high,
    the rest at the scan's target), for `{llama_cpp: <TARGET>, recipe: <file>}`."""
    from ..io import atomic_path
    from .groups import gguf_groups
    from ..compress.recipe_file import recipe_lines
    from .recipe import mix_types

    types = mix_types(gguf_groups(reference_gguf), plan.groups, plan.target, plan.high)
    with atomic_path(out_path, seal=False) as tmp:
        tmp.write_text("\n".join(recipe_lines(types)) + "\n")
