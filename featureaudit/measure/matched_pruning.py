"""Matched sparsity: the magnitude-pruning level whose perplexity equals a quantized variant's.

A bracketing search (bisection with log-linear interpolation) over sparsity until the pruned
model's perplexity on held-out tokens is within a relative tolerance of the quantized
variant's. The overlap stage then compares the features the two damage. One perplexity curve
per model (`write_curve`, the `pruning_curve` rule) serves every target's search
(`write_matched`, the `match_pruning` rule), which adds evaluations only inside its bracket.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from ..compress.builtin import apply_variant, build_variant
from ..config import MatchSearch, ModelRun, PruningCurve
from ..inputs.tokens import read_tokens
from ..io import read_json, write_json
from ..model.reference import load_reference
from ..progress import log
from ..variant.metrics import perplexity
from ..variants import Variant


def match_sparsity(perplexity_at: Callable[[float], float], target: float, tolerance: float = 0.01,
                   low: float = 0.0, high: float = 0.95, max_evaluations: int = 20, progress: bool = True,
                   known: Sequence[tuple[float, float]] = ()) -> dict:
    """Bracketing search for s with |ppl(s) - target| <= tolerance * target; ppl grows with s.
    `known`: (sparsity, perplexity) pairs already measured (the shared curve); they narrow the
    bracket for free, and only new evaluations count towards `max_evaluations`."""
    evaluations = []
    table = {float(s): float(p) for s, p in known}

    def evaluate(s):
        if s in table:
            evaluations.append({"sparsity": s, "perplexity": table[s], "from_curve": True})
            return table[s]
        p = perplexity_at(s)
        evaluations.append({"sparsity": s, "perplexity": p})
        if progress:
            log(f"match: sparsity {s:.4f} -> perplexity {p:.3f} (target {target:.3f})")
        return p

    def done(p):
        return abs(p - target) <= tolerance * target

    def new_evaluations():
        return sum(not e.get("from_curve") for e in evaluations)

    p_low = evaluate(low)
    if p_low >= target or done(p_low):
        return _result(low, p_low, target, evaluations, converged=done(p_low))
    p_high = evaluate(high)
    if p_high <= target:
        return _result(high, p_high, target, evaluations, converged=done(p_high))
    best = min(((low, p_low), (high, p_high)), key=lambda sp: abs(sp[1] - target))
    for s, p in sorted(table.items()):  # the tightest bracket the known points give
        if low < s < high:
            evaluations.append({"sparsity": s, "perplexity": p, "from_curve": True})
            if abs(p - target) < abs(best[1] - target):
                best = (s, p)
            if p < target:
                low, p_low = s, p
            else:
                high, p_high = s, p
                break
    if done(best[1]):
        return _result(best[0], best[1], target, evaluations, converged=True)
    # Bracketing search: the next point interpolates log-perplexity linearly inside the bracket
    # (perplexity grows about exponentially with sparsity, so this lands close in a few steps),
    # kept at least a quarter of the bracket away from its ends so the bracket always shrinks
    # at least as fast as plain bisection would every other step.
    while new_evaluations() < max_evaluations:
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


#: Points of the shared perplexity-versus-sparsity curve, evenly spaced from 0 to max_sparsity.
CURVE_POINTS = 9


def match_ids(tokens_path, n_tokens: int):
    """The held-out sequences every step of the search is scored on: the first ones, enough
    for `n_tokens` tokens (the same ones a variant's metrics list first)."""
    ids = read_tokens(tokens_path, "heldout")
    return ids[: max(1, -(-n_tokens // ids.shape[1]))]


def pruned_perplexity(fp, ids, scope: str, batch_size: int):
    return lambda s: perplexity(apply_variant(fp, Variant("magnitude", sparsity=s, scope=scope)), ids, batch_size)


def write_curve(run: ModelRun, curve: PruningCurve, batch_size: int, tokens_path, ref_dir, out_path) -> None:
    """The `pruning_curve` rule: the pruned model's perplexity at CURVE_POINTS sparsities, once
    per model; every matched-pruning search starts from it."""
    fp, _ = load_reference(ref_dir, run, tokenizer=False)
    ids = match_ids(tokens_path, curve.n_tokens)
    ppl_at = pruned_perplexity(fp, ids, curve.scope, batch_size)
    points = []
    for k in range(CURVE_POINTS):
        s = curve.max_sparsity * k / (CURVE_POINTS - 1)
        points.append({"sparsity": s, "perplexity": ppl_at(s)})
        log(f"curve: sparsity {s:.3f} -> perplexity {points[-1]['perplexity']:.3f}")
    write_json({"scope": curve.scope, "n_tokens": int(ids[:, 1:].numel()), "points": points}, out_path)


def write_matched(quantized: str, run: ModelRun, search: MatchSearch, batch_size: int, tokens_path, ref_dir,
                  curve_json, out_path) -> None:
    """The `match_pruning` rule: the sparsity matched to one quantized variant (JSON with the
    search's trace), starting from the shared curve. The target is the quantized variant's
    perplexity on the search's sequences, computed here (a quick build and one short forward)
    rather than read from its variant job: the search then never waits for that job, and the
    matched variant can start as early as any other."""
    curve = read_json(curve_json)
    ids = match_ids(tokens_path, search.n_tokens)
    fp, _ = load_reference(ref_dir, run, tokenizer=False)
    target = perplexity(build_variant(fp, quantized), ids, batch_size)
    known = [(p["sparsity"], p["perplexity"]) for p in curve["points"]]
    result = match_sparsity(pruned_perplexity(fp, ids, search.scope, batch_size), target, search.tolerance, 0.0,
                            search.max_sparsity, known=known)
    result.update(quantized=quantized, scope=search.scope, n_tokens=int(ids[:, 1:].numel()))
    write_json(result, out_path)
