"""Does quantization damage the same features as pruning that costs the same perplexity?

1. Matched sparsity: a bracketing search (bisection with log-linear interpolation) over
   magnitude-pruning sparsity until the pruned model's
   perplexity is within a relative tolerance of the quantized variant's.
2. Overlap over FP-active features: Jaccard index of the non-surviving (blurred + damaged) sets,
   and Spearman correlation of damage scores 1 - r (a feature the variant never fires, r
   undefined, counts as damage 1).
"""

from __future__ import annotations

import math
import sys
from typing import Callable

import pandas as pd
from scipy.stats import spearmanr


def match_sparsity(perplexity_at: Callable[[float], float], target: float, tolerance: float = 0.01,
                   low: float = 0.0, high: float = 0.95, max_evaluations: int = 20, progress: bool = True) -> dict:
    """Bracketing search for s with |ppl(s) - target| <= tolerance * target; ppl grows with s."""
    evaluations = []

    def evaluate(s):
        p = perplexity_at(s)
        evaluations.append({"sparsity": s, "perplexity": p})
        if progress:
            print(f"match: sparsity {s:.4f} -> perplexity {p:.3f} (target {target:.3f})", file=sys.stderr, flush=True)
        return p

    def done(p):
        return abs(p - target) <= tolerance * target

    p_low = evaluate(low)
    if p_low >= target or done(p_low):
        return _result(low, p_low, target, evaluations, converged=done(p_low))
    p_high = evaluate(high)
    if p_high <= target:
        return _result(high, p_high, target, evaluations, converged=done(p_high))
    best = min(((low, p_low), (high, p_high)), key=lambda sp: abs(sp[1] - target))
    # Bracketing search: the next point interpolates log-perplexity linearly inside the bracket
    # (perplexity grows about exponentially with sparsity, so this lands close in a few steps),
    # kept at least a quarter of the bracket away from its ends so the bracket always shrinks
    # at least as fast as plain bisection would every other step.
    while len(evaluations) < max_evaluations:
        f_low, f_high = math.log(p_low / target), math.log(p_high / target)
        guess = low + (high - low) * (-f_low) / (f_high - f_low)
        margin = 0.25 * (high - low)
        mid = min(max(guess, low + margin), high - margin)
        p = evaluate(mid)
        if abs(p - target) < abs(best[1] - target):
            best = (mid, p)
        if done(p):
            break
        if p < target:
            low, p_low = mid, p
        else:
            high, p_high = mid, p
    return _result(best[0], best[1], target, evaluations, converged=done(best[1]))


def _result(s, p, target, evaluations, converged):
    return {"matched_sparsity": float(s), "matched_perplexity": float(p), "target_perplexity": float(target),
            "converged": bool(converged), "evaluations": evaluations}


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
