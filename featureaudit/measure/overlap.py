"""Does quantization damage the same features as pruning that costs the same perplexity?

Over FP-active features: the Jaccard index of the non-surviving (blurred + damaged) sets of a
quantized variant and of pruning at its matched sparsity (found by matched_pruning.py), and the
Spearman correlation of damage scores 1 - r (a feature the variant never fires, r undefined,
counts as damage 1). `write_overlap` is the body of the `overlap` rule.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ..config import UncertaintyConfig
from ..io import read_json, read_table, write_json
from .survival import STATUSES
from .uncertainty import interval, load_replicates


def damage(table: pd.DataFrame) -> pd.Series:
    return 1.0 - table["r"].fillna(0.0)


def overlap(quantized: pd.DataFrame, pruned: pd.DataFrame) -> dict:
    q = quantized.set_index("feature")
    p = pruned.set_index("feature").reindex(q.index)
    active = q.status != "inactive"
    bad_q = set(q.index[active & q.status.isin(["blurred", "damaged"])])
    bad_p = set(p.index[active & p.status.isin(["blurred", "damaged"])])
    union = bad_q | bad_p
    jaccard = len(bad_q & bad_p) / len(union) if union else math.nan
    dq, dp = damage(q[active]), damage(p[active])
    rho = spearmanr(dq, dp).statistic if len(dq) > 2 and dq.nunique() > 1 and dp.nunique() > 1 else math.nan
    return {"jaccard": float(jaccard), "spearman": float(rho), "n_active": int(active.sum()),
            "n_not_survived_quantized": len(bad_q), "n_not_survived_pruned": len(bad_p),
            "n_not_survived_both": len(bad_q & bad_p)}


def replicate_jaccard(quantized: np.ndarray, pruned: np.ndarray) -> np.ndarray:
    """Jaccard of the non-surviving sets in each bootstrap draw ((R, d) status codes of the
    same draws), among that draw's FP-active features."""
    bad = [STATUSES.index("blurred"), STATUSES.index("damaged")]
    bq, bp = np.isin(quantized, bad), np.isin(pruned, bad)
    union = (bq | bp).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, (bq & bp).sum(1) / union, np.nan)


def write_overlap(quantized_survival, pruned_survival, matched_json, quantized_replicates, pruned_replicates,
                  out_path, uncertainty: UncertaintyConfig) -> None:
    """The `overlap` rule: a quantized variant against pruning at its matched perplexity, with
    a bootstrap interval of the Jaccard index."""
    result = overlap(read_table(quantized_survival).to_pandas(), read_table(pruned_survival).to_pandas())
    jac = replicate_jaccard(load_replicates(quantized_replicates)["status"], load_replicates(pruned_replicates)["status"])
    result["jaccard_lo"], result["jaccard_hi"] = interval(jac, uncertainty.level, result["jaccard"], (0, 1))
    matched = read_json(matched_json)
    result.update({k: matched[k] for k in ("matched_sparsity", "matched_perplexity", "target_perplexity", "converged")})
    write_json(result, out_path)
