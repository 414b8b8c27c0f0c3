"""Feature survival: per-feature Pearson r between FP and variant SAE codes.

r runs over *all* audit tokens, zeros included. It is computed in one streaming pass over the
sparse codes, accumulating per-feature n, Σx, Σy, Σxy, Σx², Σy² in float64, per block of audit
sequences so the bootstrap can resample them (uncertainty.py): memory is O(blocks x d_sae) plus
one row group, whatever the number of tokens.

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

from ..config import Thresholds, UncertaintyConfig
from ..io import read_table, write_table
from ..progress import log
from ..sae.codes import Codes, check_aligned, matching
from .evidence import CellLookup, read_contexts, window_cells, write_variant_evidence
from .uncertainty import SequenceBlocks, audit_blocks, draws, interval, save_replicates

STATUSES = ("survived", "blurred", "damaged", "inactive")


class PearsonAccumulator:
    """Per-feature sums for Pearson r between two sparse signals, kept per block of sequences
    when `blocks` is given (for the bootstrap: uncertainty.py), else over all tokens."""

    SUMS = ("nx", "ny", "sx", "sy", "sxx", "syy", "sxy")

    def __init__(self, d_sae: int, blocks: SequenceBlocks | None = None):
        self.d = d_sae
        self.blocks = blocks
        self.n_blocks = blocks.n_blocks if blocks else 1
        for name in self.SUMS:
            setattr(self, name, np.zeros((self.n_blocks, d_sae), np.int64 if name in ("nx", "ny") else np.float64))

    def _cell(self, t, f):
        return f.astype(np.int64) if self.blocks is None else self.blocks.of(t) * self.d + f

    def add(self, tx, fx, vx, ty, fy, vy) -> None:
        """One chunk of tokens: (token, feature, value) nonzeros of x and of y."""
        size, shape = self.n_blocks * self.d, (self.n_blocks, self.d)
        cx, cy = self._cell(tx, fx), self._cell(ty, fy)
        vx = vx.astype(np.float64)
        vy = vy.astype(np.float64)
        self.nx += np.bincount(cx, minlength=size).reshape(shape)
        self.ny += np.bincount(cy, minlength=size).reshape(shape)
        self.sx += np.bincount(cx, vx, size).reshape(shape)
        self.sy += np.bincount(cy, vy, size).reshape(shape)
        self.sxx += np.bincount(cx, vx * vx, size).reshape(shape)
        self.syy += np.bincount(cy, vy * vy, size).reshape(shape)
        # Σxy only gets contributions where both fire on the same token.
        kx = tx.astype(np.int64) * self.d + fx
        ky = ty.astype(np.int64) * self.d + fy
        ix, iy = matching(kx, ky)
        self.sxy += np.bincount(cx[ix], vx[ix] * vy[iy], size).reshape(shape)

    def totals(self, weights: np.ndarray | None = None) -> dict:
        """The sums over all blocks (d,), or per bootstrap draw (R, d) for block weights (R, B)."""
        if weights is None:
            return {k: getattr(self, k).sum(0) for k in self.SUMS}
        return {k: weights @ getattr(self, k) for k in self.SUMS}

    def pearson(self, n_tokens: int) -> np.ndarray:
        return pearson(self.totals(), n_tokens)


def pearson(s: dict, n_tokens) -> np.ndarray:
    """r from the sums; n_tokens a number, or one per bootstrap draw (R,) for (R, d) sums."""
    n = np.asarray(n_tokens, np.float64)
    if n.ndim:
        n = n[:, None]
    cov = s["sxy"] - s["sx"] * s["sy"] / n
    varx = s["sxx"] - s["sx"] ** 2 / n
    vary = s["syy"] - s["sy"] ** 2 / n
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov / np.sqrt(varx * vary)
    # Σx² - (Σx)²/n of a constant feature is rounding noise (~n·eps·Σx², either sign), not 0:
    # a variance below that bound is zero, so r is undefined rather than noise/noise.
    tol = 4 * n * np.finfo(np.float64).eps
    r[(varx <= tol * s["sxx"]) | (vary <= tol * s["syy"])] = np.nan
    return np.clip(r, -1.0, 1.0)


def accumulate(fp: Codes, variant: Codes, blocks: SequenceBlocks | None = None) -> PearsonAccumulator:
    check_aligned(fp, variant)
    acc = PearsonAccumulator(fp.d_sae, blocks)
    for (tx, fx, vx), (ty, fy, vy) in zip(fp.groups(), variant.groups()):
        acc.add(tx, fx, vx, ty, fy, vy)
    return acc


def status_codes(r: np.ndarray, fp_active: np.ndarray, variant_active: np.ndarray, th: Thresholds) -> np.ndarray:
    """Index into STATUSES, elementwise (any shape: one row per bootstrap draw works too)."""
    active = fp_active >= th.active_min_tokens
    code = np.full(r.shape, STATUSES.index("inactive"), np.int8)
    rr = np.where(np.isnan(r), -np.inf, r)
    code[active & (rr >= th.survived_r)] = STATUSES.index("survived")
    code[active & (rr < th.survived_r) & (rr >= th.blurred_r)] = STATUSES.index("blurred")
    code[active & ((rr < th.blurred_r) | (variant_active == 0))] = STATUSES.index("damaged")
    return code


def classify(r: np.ndarray, fp_active: np.ndarray, variant_active: np.ndarray, th: Thresholds) -> np.ndarray:
    return np.asarray(STATUSES, dtype=object)[status_codes(r, fp_active, variant_active, th)]


def survival_frame(acc: PearsonAccumulator, n_tokens: int, thresholds: Thresholds) -> pd.DataFrame:
    t = acc.totals()
    r = pearson(t, n_tokens)
    status = classify(r, t["nx"], t["ny"], thresholds)
    born = (t["nx"] < thresholds.active_min_tokens) & (t["ny"] >= thresholds.active_min_tokens)
    return pd.DataFrame({
        "feature": np.arange(acc.d, dtype=np.int64),
        "fp_active_tokens": t["nx"],
        "variant_active_tokens": t["ny"],
        "r": r,
        "status": pd.Series(status, dtype="string"),
        "born": born,
    })


def survival_table(fp_codes, variant_codes, thresholds: Thresholds = Thresholds()) -> pd.DataFrame:
    fp, var = Codes(fp_codes), Codes(variant_codes)
    return survival_frame(accumulate(fp, var), fp.n_tokens, thresholds)


def replicate_statuses(acc: PearsonAccumulator, weights: np.ndarray, thresholds: Thresholds) -> np.ndarray:
    """(R, d) status codes (index into STATUSES) of each bootstrap draw of blocks. The audited
    features stay those active in FP on all audit tokens (a draw that repeats a sequence would
    otherwise count a rare feature's few tokens twice and audit it)."""
    t = acc.totals(weights)
    r = pearson(t, weights @ acc.blocks.block_tokens())
    # ...and that fire in FP somewhere in the draw: a draw without any of a rare feature's
    # sequences says nothing about it (it would otherwise count as damaged: never fired).
    fp_active = np.where(t["nx"] > 0, acc.totals()["nx"], 0)
    return status_codes(r, fp_active, t["ny"], thresholds)


def replicate_fractions(codes: np.ndarray) -> dict:
    """Per draw: the survived/blurred/damaged fractions among that draw's FP-active features."""
    active = codes != STATUSES.index("inactive")
    n = active.sum(1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {s: (codes == STATUSES.index(s)).sum(1) / n for s in ("survived", "blurred", "damaged")}


def fractions(table: pd.DataFrame) -> dict:
    active = table[table.status != "inactive"]
    n = len(active)
    out = {"n_active": n, "n_born": int(table.born.sum()) if "born" in table else 0}
    for s in ("survived", "blurred", "damaged"):
        out[f"frac_{s}"] = float((active.status == s).sum() / n) if n else float("nan")
    return out


def write_survival(fp_codes, variant_codes, stats_path, tokens_path, contexts_path, out_path, replicates_path,
                   evidence_path, thresholds: Thresholds, uncertainty: UncertaintyConfig) -> None:
    """The `survival` rule, one streaming pass over FP and variant codes: per feature r, status
    and born, with the FP statistics beside them (what predictability and the reader of the
    table need in one place); the status of every feature in every bootstrap draw; the variant's
    codes on each feature's top FP contexts."""
    import pyarrow as pa

    fp, var = Codes(fp_codes), Codes(variant_codes)
    check_aligned(fp, var)
    blocks = audit_blocks(tokens_path, fp.n_tokens, uncertainty.blocks)
    acc = PearsonAccumulator(fp.d_sae, blocks)
    contexts = read_contexts(contexts_path)
    cells = CellLookup(*window_cells(contexts, blocks.context_length), var.d_sae)
    for (tx, fx, vx), (ty, fy, vy) in zip(fp.groups(), var.groups()):
        acc.add(tx, fx, vx, ty, fy, vy)
        cells.add(ty, fy, vy)
    table = survival_frame(acc, fp.n_tokens, thresholds)
    table = table.merge(read_table(stats_path).to_pandas(), on="feature", how="left")
    write_table(pa.Table.from_pandas(table, preserve_index=False), out_path)

    weights = draws(blocks.n_blocks, uncertainty)
    codes = replicate_statuses(acc, weights, thresholds)
    save_replicates(replicates_path, status=codes, weights=weights)
    write_variant_evidence(contexts, cells.values, evidence_path)
    summary = fractions(table)
    for s, values in replicate_fractions(codes).items():
        ci = interval(values, uncertainty.level, summary[f"frac_{s}"], (0, 1))
        summary[f"frac_{s}_ci"] = [round(x, 4) for x in ci]
    log("survival: " + json.dumps(summary))
