"""Feature survival: per-feature Pearson r between FP and variant SAE codes.

r runs over *all* audit tokens, zeros included. It is computed in one streaming pass over the
sparse codes, accumulating per-feature n, Σx, Σy, Σxy, Σx², Σy² in float64: memory is O(d_sae)
plus one row group, whatever the number of tokens.

Among features active in FP (firing on >= active_min_tokens tokens):
  survived  r >= survived_r
  blurred   blurred_r <= r < survived_r
  damaged   r < blurred_r, or the variant never fires it
Other features are `inactive`; those the variant makes active are counted as *born*.
`write_survival` is the body of the `survival` rule.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from .codes import Codes, check_aligned
from .config import Thresholds
from .io import read_table, write_table
from .progress import log

STATUSES = ("survived", "blurred", "damaged", "inactive")


class PearsonAccumulator:
    """Per-feature sums for Pearson r between two sparse signals over n_tokens tokens."""

    def __init__(self, d_sae: int):
        self.d = d_sae
        self.nx = np.zeros(d_sae, np.int64)
        self.ny = np.zeros(d_sae, np.int64)
        self.sx = np.zeros(d_sae)
        self.sy = np.zeros(d_sae)
        self.sxx = np.zeros(d_sae)
        self.syy = np.zeros(d_sae)
        self.sxy = np.zeros(d_sae)

    def add(self, tx, fx, vx, ty, fy, vy) -> None:
        """One chunk of tokens: (token, feature, value) nonzeros of x and of y."""
        d = self.d
        vx = vx.astype(np.float64)
        vy = vy.astype(np.float64)
        self.nx += np.bincount(fx, minlength=d)
        self.ny += np.bincount(fy, minlength=d)
        self.sx += np.bincount(fx, vx, d)
        self.sy += np.bincount(fy, vy, d)
        self.sxx += np.bincount(fx, vx * vx, d)
        self.syy += np.bincount(fy, vy * vy, d)
        # Σxy only gets contributions where both fire on the same token.
        kx = tx.astype(np.int64) * d + fx
        ky = ty.astype(np.int64) * d + fy
        ix, iy = _matching(kx, ky)
        self.sxy += np.bincount(fx[ix], vx[ix] * vy[iy], d)

    def pearson(self, n_tokens: int) -> np.ndarray:
        n = float(n_tokens)
        cov = self.sxy - self.sx * self.sy / n
        varx = self.sxx - self.sx**2 / n
        vary = self.syy - self.sy**2 / n
        with np.errstate(invalid="ignore", divide="ignore"):
            r = cov / np.sqrt(varx * vary)
        # Σx² - (Σx)²/n of a constant feature is rounding noise (~n·eps·Σx², either sign), not 0:
        # a variance below that bound is zero, so r is undefined rather than noise/noise.
        tol = 4 * n * np.finfo(np.float64).eps
        r[(varx <= tol * self.sxx) | (vary <= tol * self.syy)] = np.nan
        return np.clip(r, -1.0, 1.0)


def _matching(kx: np.ndarray, ky: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions (ix, iy) with kx[ix] == ky[iy], iy ascending; keys are unique within each array.

    Codes row groups are sorted by (token, feature), so kx is normally sorted already and a
    binary search of ky in it replaces np.intersect1d's argsort of both arrays together (the
    same pairs; ~15% faster, ~40% of the temporary memory). Unsorted kx is sorted first.
    """
    if len(kx) == 0 or len(ky) == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    order = None
    if not (kx[1:] > kx[:-1]).all():
        order = np.argsort(kx, kind="stable")
        kx = kx[order]
    pos = np.searchsorted(kx, ky)
    np.minimum(pos, len(kx) - 1, out=pos)
    iy = np.flatnonzero(kx[pos] == ky)
    ix = pos[iy]
    return (ix if order is None else order[ix]), iy


def accumulate(fp: Codes, variant: Codes) -> PearsonAccumulator:
    check_aligned(fp, variant)
    acc = PearsonAccumulator(fp.d_sae)
    for (tx, fx, vx), (ty, fy, vy) in zip(fp.groups(), variant.groups()):
        acc.add(tx, fx, vx, ty, fy, vy)
    return acc


def classify(r: np.ndarray, fp_active: np.ndarray, variant_active: np.ndarray, th: Thresholds) -> np.ndarray:
    active = fp_active >= th.active_min_tokens
    status = np.full(len(r), "inactive", dtype=object)
    rr = np.where(np.isnan(r), -np.inf, r)
    status[active & (rr >= th.survived_r)] = "survived"
    status[active & (rr < th.survived_r) & (rr >= th.blurred_r)] = "blurred"
    status[active & ((rr < th.blurred_r) | (variant_active == 0))] = "damaged"
    return status


def survival_table(fp_codes, variant_codes, thresholds: Thresholds = Thresholds()) -> pd.DataFrame:
    fp, var = Codes(fp_codes), Codes(variant_codes)
    acc = accumulate(fp, var)
    r = acc.pearson(fp.n_tokens)
    status = classify(r, acc.nx, acc.ny, thresholds)
    born = (acc.nx < thresholds.active_min_tokens) & (acc.ny >= thresholds.active_min_tokens)
    return pd.DataFrame({
        "feature": np.arange(fp.d_sae, dtype=np.int64),
        "fp_active_tokens": acc.nx,
        "variant_active_tokens": acc.ny,
        "r": r,
        "status": pd.Series(status, dtype="string"),
        "born": born,
    })


def fractions(table: pd.DataFrame) -> dict:
    active = table[table.status != "inactive"]
    n = len(active)
    out = {"n_active": n, "n_born": int(table.born.sum()) if "born" in table else 0}
    for s in ("survived", "blurred", "damaged"):
        out[f"frac_{s}"] = float((active.status == s).sum() / n) if n else float("nan")
    return out


def write_survival(fp_codes, variant_codes, stats_path, out_path, thresholds: Thresholds) -> None:
    """The `survival` rule: per feature r, status and born, with the FP statistics beside them
    (what predictability and the reader of the table need in one place)."""
    import pyarrow as pa

    table = survival_table(fp_codes, variant_codes, thresholds)
    table = table.merge(read_table(stats_path).to_pandas(), on="feature", how="left")
    write_table(pa.Table.from_pandas(table, preserve_index=False), out_path)
    log("survival: " + json.dumps(fractions(table)))
