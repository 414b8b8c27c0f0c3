"""Matched sparsity: the magnitude-pruning level whose perplexity equals a quantized variant's.

A bracketing search (bisection with log-linear interpolation) over sparsity until the pruned
model's perplexity on held-out tokens is within a relative tolerance of the quantized
variant's. The overlap stage then compares the features the two damage. `write_matched` is
the body of the `match_pruning` rule.
"""

from __future__ import annotations

import math
from typing import Callable

from .compression import apply_variant, build_variant
from .config import MatchSearch, ModelRun
from .io import write_json
from .metrics import perplexity
from .models import load_reference
from .progress import log
from .tokens import read_tokens
from .variants import Variant


def match_sparsity(perplexity_at: Callable[[float], float], target: float, tolerance: float = 0.01,
                   low: float = 0.0, high: float = 0.95, max_evaluations: int = 20, progress: bool = True) -> dict:
    """Bracketing search for s with |ppl(s) - target| <= tolerance * target; ppl grows with s."""
    evaluations = []

    def evaluate(s):
        p = perplexity_at(s)
        evaluations.append({"sparsity": s, "perplexity": p})
        if progress:
            log(f"match: sparsity {s:.4f} -> perplexity {p:.3f} (target {target:.3f})")
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


def write_matched(quantized: str, run: ModelRun, search: MatchSearch, batch_size: int, tokens_path, ref_dir,
                  out_path) -> None:
    """The `match_pruning` rule: the sparsity matched to one quantized variant (JSON with the
    search's trace)."""
    fp, _ = load_reference(ref_dir, run)
    ids = read_tokens(tokens_path, "heldout")
    ids = ids[: max(1, -(-search.n_tokens // ids.shape[1]))]
    target = perplexity(build_variant(fp, quantized), ids, batch_size)

    def ppl_at(s: float) -> float:
        return perplexity(apply_variant(fp, Variant("magnitude", sparsity=s, scope=search.scope)), ids, batch_size)

    result = match_sparsity(ppl_at, target, search.tolerance, 0.0, search.max_sparsity)
    result.update(quantized=quantized, scope=search.scope, n_tokens=int(ids[:, 1:].numel()))
    write_json(result, out_path)
