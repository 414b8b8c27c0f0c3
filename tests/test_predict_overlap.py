"""featureaudit.measure.predictability and featureaudit.measure.overlap against scikit-learn / scipy and analytic answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import jaccard_score, roc_auc_score

from featureaudit.measure.fp_statistics import PREDICTORS
from featureaudit.measure.matched_pruning import match_sparsity
from featureaudit.measure.overlap import overlap
from featureaudit.measure.predictability import predictability

# ---------------------------------------------------------------------------------- predictability


def synthetic_table(n_active=400, n_inactive=60, seed=0, shuffle=False, clean=True):
    """FP statistics for n_active + n_inactive features; survival a function of peak_activation.

    Inactive rows get *large* peak activations: were they counted as not-survived, the marginal
    AUC of peak_activation would drop well below what scikit-learn gives on the active rows.
    """
    rng = np.random.default_rng(seed)
    n = n_active + n_inactive
    stats = {name: np.exp(rng.normal(0.0, 1.0, n)) for name in PREDICTORS}
    peak = stats["peak_activation"]
    if clean:
        survived = peak[:n_active] > np.median(peak[:n_active])
    else:  # noisy: a logistic function of log peak
        p = 1 / (1 + np.exp(-2.0 * np.log(peak[:n_active])))
        survived = rng.random(n_active) < p
    not_status = rng.choice(["blurred", "damaged"], n_active)
    status = np.where(survived, "survived", not_status).astype(object)
    if shuffle:
        status = rng.permutation(status)
    peak[n_active:] = peak.max() * 10
    status = np.concatenate([status, np.array(["inactive"] * n_inactive, dtype=object)])
    df = pd.DataFrame({"feature": np.arange(n), **stats, "status": status})
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # inactive rows interleaved


@pytest.mark.parametrize("clean", [True, False])
def test_marginal_auc_equals_sklearn(clean):
    df = synthetic_table(clean=clean, seed=1)
    out = predictability(df, folds=5, seed=0)
    active = df[df.status != "inactive"]
    y = (active.status == "survived").to_numpy()
    assert out["n_features"] == len(active) == 400
    assert out["n_survived"] == int(y.sum())
    assert out["n_not_survived"] == int((~y).sum())
    assert set(out["marginal_auc"]) == set(PREDICTORS)
    for name in PREDICTORS:
        assert out["marginal_auc"][name] == pytest.approx(roc_auc_score(y, active[name].to_numpy()), abs=1e-12)
    if clean:
        assert out["marginal_auc"]["peak_activation"] == pytest.approx(1.0)
    # Had inactive rows been counted as negatives, peak's AUC would be far lower:
    y_all = (df.status == "survived").to_numpy()
    assert roc_auc_score(y_all, df.peak_activation) < out["marginal_auc"]["peak_activation"] - 0.05


def test_cv_auc_high_when_survival_follows_peak_activation():
    out = predictability(synthetic_table(seed=2), folds=5, seed=0)
    assert out["reason"] is None
    assert 0.0 <= out["auc"] <= 1.0
    assert out["auc"] > 0.85
    assert len(out["fold_auc"]) == 5
    assert all(0.0 <= a <= 1.0 for a in out["fold_auc"])
    assert out["auc"] == pytest.approx(np.mean(out["fold_auc"]))
    assert out["auc_std"] == pytest.approx(np.std(out["fold_auc"]))


@pytest.mark.parametrize("seed", [3, 4])
def test_cv_auc_near_chance_when_labels_shuffled(seed):
    out = predictability(synthetic_table(seed=seed, shuffle=True), folds=5, seed=0)
    assert out["reason"] is None
    assert 0.35 <= out["auc"] <= 0.65


def test_cv_auc_deterministic_for_a_seed():
    df = synthetic_table(seed=5, clean=False)
    assert predictability(df, seed=3)["fold_auc"] == predictability(df, seed=3)["fold_auc"]


def test_too_few_in_a_class_gives_reason_not_auc():
    df = synthetic_table(n_active=100, seed=6)
    active_idx = df.index[df.status != "inactive"]
    df.loc[active_idx, "status"] = "damaged"
    df.loc[active_idx[:3], "status"] = "survived"  # 3 survived < 5 folds
    out = predictability(df, folds=5)
    assert out["auc"] is None and out["auc_std"] is None
    assert isinstance(out["reason"], str) and "5-fold" in out["reason"] and "3 survived" in out["reason"]
    # The marginal AUCs need no folds: still there.
    y = (df.loc[active_idx].status == "survived").to_numpy()
    assert out["marginal_auc"]["decoder_norm"] == pytest.approx(roc_auc_score(y, df.loc[active_idx, "decoder_norm"]))


def test_one_class_only_has_no_auc_at_all():
    df = synthetic_table(n_active=50, seed=7)
    df.loc[df.status != "inactive", "status"] = "survived"
    out = predictability(df, folds=5)
    assert out["auc"] is None and isinstance(out["reason"], str)
    assert all(v is None for v in out["marginal_auc"].values())


# ------------------------------------------------------------------------------------------ overlap


def status_of(r, inactive):
    s = np.where(r >= 0.9, "survived", np.where(r >= 0.5, "blurred", "damaged")).astype(object)
    s[np.isnan(r)] = "damaged"  # the variant never fires it
    s[inactive] = "inactive"
    return s


def overlap_tables(n=300, seed=0):
    rng = np.random.default_rng(seed)
    inactive = rng.random(n) < 0.2
    base = rng.uniform(-0.2, 1.0, n)
    r_q = np.clip(base + rng.normal(0, 0.15, n), -1, 1)
    r_p = np.clip(base + rng.normal(0, 0.15, n), -1, 1)
    r_q[rng.random(n) < 0.05] = np.nan
    r_p[rng.random(n) < 0.05] = np.nan
    # Inactive features: r values that would shift both statistics if they were counted.
    r_q[inactive] = -1.0
    r_p[inactive] = 1.0
    q = pd.DataFrame({"feature": np.arange(n), "r": r_q, "status": status_of(r_q, inactive)})
    p = pd.DataFrame({"feature": np.arange(n), "r": r_p, "status": status_of(r_p, inactive)})
    return q, p, inactive


def test_overlap_matches_sklearn_and_scipy():
    q, p, inactive = overlap_tables(seed=1)
    shuffled_p = p.sample(frac=1.0, random_state=3).reset_index(drop=True)  # rows in another order
    out = overlap(q, shuffled_p)

    act = ~inactive
    bad_q = q.status.to_numpy()[act] != "survived"
    bad_p = p.status.to_numpy()[act] != "survived"
    assert out["n_active"] == int(act.sum())
    assert out["n_not_survived_quantized"] == int(bad_q.sum())
    assert out["n_not_survived_pruned"] == int(bad_p.sum())
    assert out["n_not_survived_both"] == int((bad_q & bad_p).sum())
    assert out["jaccard"] == pytest.approx(jaccard_score(bad_q, bad_p), abs=1e-12)

    dq = 1.0 - np.nan_to_num(q.r.to_numpy()[act], nan=0.0)
    dp = 1.0 - np.nan_to_num(p.r.to_numpy()[act], nan=0.0)
    rho = spearmanr(dq, dp).statistic
    assert out["spearman"] == pytest.approx(rho, abs=1e-12)
    assert 0.3 < rho < 1.0  # correlated damage, not identical

    # Counting inactive rows would give different numbers (the test can tell).
    all_q = q.status.to_numpy() != "survived"
    all_p = p.status.to_numpy() != "survived"
    assert jaccard_score(all_q, all_p) != pytest.approx(out["jaccard"], abs=1e-3)
    rho_all = spearmanr(1 - np.nan_to_num(q.r.to_numpy()), 1 - np.nan_to_num(p.r.to_numpy())).statistic
    assert rho_all != pytest.approx(out["spearman"], abs=1e-3)


def test_overlap_nan_r_counts_as_full_damage():
    """A feature the variant never fires (r NaN) ranks with damage 1, i.e. with r = 0."""
    q, p, inactive = overlap_tables(n=120, seed=4)
    act = ~inactive
    out = overlap(q, p)
    # Replacing NaN by 0 explicitly must not change anything; replacing it by 1 must.
    q0, p0 = q.copy(), p.copy()
    q0["r"], p0["r"] = q0.r.fillna(0.0), p0.r.fillna(0.0)
    assert overlap(q0, p0)["spearman"] == pytest.approx(out["spearman"], abs=1e-12)
    q1 = q.copy()
    q1["r"] = q1.r.fillna(1.0)
    ref1 = spearmanr(1 - q1.r.to_numpy()[act], 1 - p.r.fillna(0.0).to_numpy()[act]).statistic
    assert overlap(q1, p)["spearman"] == pytest.approx(ref1, abs=1e-12)
    assert ref1 != pytest.approx(out["spearman"], abs=1e-4)


def test_overlap_identical_tables():
    q, _, inactive = overlap_tables(n=100, seed=5)
    out = overlap(q, q.copy())
    assert out["jaccard"] == 1.0
    assert out["spearman"] == pytest.approx(1.0)


# ------------------------------------------------------------------------------------ match_sparsity


def ppl(s):
    return 10.0 * math.exp(3.0 * s * s)


def inverse(target):
    return math.sqrt(math.log(target / 10.0) / 3.0)


@pytest.mark.parametrize("s_true", [0.05, 0.3, 0.5, 0.77, 0.9])
def test_match_sparsity_finds_analytic_inverse(s_true):
    target = ppl(s_true)
    tol = 1e-4
    out = match_sparsity(ppl, target, tolerance=tol, max_evaluations=40, progress=False)
    assert out["converged"]
    assert abs(out["matched_perplexity"] - target) <= tol * target
    assert out["matched_perplexity"] == pytest.approx(ppl(out["matched_sparsity"]))
    # |d ln ppl / ds| = 6 s, so a relative perplexity error tol means |ds| <= tol / (6 s).
    assert abs(out["matched_sparsity"] - inverse(target)) <= tol / (6 * s_true) * 1.01
    assert out["target_perplexity"] == target


def test_match_sparsity_default_tolerance():
    target = ppl(0.42)
    out = match_sparsity(ppl, target, progress=False)  # tolerance 0.01
    assert out["converged"] and abs(out["matched_perplexity"] / target - 1) <= 0.01
    assert abs(out["matched_sparsity"] - 0.42) <= 0.01 / (6 * 0.42) * 1.01


def test_match_sparsity_target_below_range_returns_low_end():
    out = match_sparsity(ppl, 5.0, low=0.0, high=0.95, progress=False)
    assert out["matched_sparsity"] == 0.0
    assert out["matched_perplexity"] == pytest.approx(10.0)
    assert not out["converged"]
    assert len(out["evaluations"]) == 1


def test_match_sparsity_target_above_range_returns_high_end():
    out = match_sparsity(ppl, 1e6, low=0.0, high=0.95, progress=False)
    assert out["matched_sparsity"] == 0.95
    assert out["matched_perplexity"] == pytest.approx(ppl(0.95))
    assert not out["converged"]
    assert len(out["evaluations"]) == 2


def test_match_sparsity_custom_bracket():
    target = ppl(0.6)
    out = match_sparsity(ppl, target, low=0.5, high=0.7, tolerance=1e-5, progress=False)
    assert abs(out["matched_sparsity"] - 0.6) < 1e-4
    assert all(0.5 <= e["sparsity"] <= 0.7 for e in out["evaluations"])
    out = match_sparsity(ppl, target, low=0.65, high=0.9, progress=False)  # target below this bracket
    assert out["matched_sparsity"] == 0.65


@pytest.mark.parametrize("max_evaluations", [3, 6, 11])
def test_match_sparsity_counts_evaluations(max_evaluations):
    calls = []

    def counted(s):
        calls.append(s)
        return ppl(s)

    # An unreachable tolerance forces the search to use its whole budget.
    out = match_sparsity(counted, ppl(1 / 3), tolerance=1e-15, max_evaluations=max_evaluations, progress=False)
    assert len(calls) == len(out["evaluations"]) <= max_evaluations
    assert len(calls) == max_evaluations
    assert [e["sparsity"] for e in out["evaluations"]] == calls
    assert [e["perplexity"] for e in out["evaluations"]] == [ppl(s) for s in calls]
    # The answer is the best point seen.
    best = min(calls, key=lambda s: abs(ppl(s) - ppl(1 / 3)))
    assert out["matched_sparsity"] == best


def test_match_sparsity_progress_goes_to_stderr(capsys):
    match_sparsity(ppl, ppl(0.3), progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "sparsity" in captured.err


# ------------------------------------------------------------- match_sparsity from a shared curve


@pytest.mark.parametrize("s_true", [0.05, 0.3, 0.5, 0.77])
def test_match_sparsity_from_curve_agrees_and_evaluates_only_inside_the_bracket(s_true):
    """Seeded with a 9-point curve, the search gives the same answer within tolerance, never
    re-evaluates a curve point, and only evaluates inside the curve's bracket."""
    grid = [0.95 * k / 8 for k in range(9)]
    calls = []

    def counted(s):
        calls.append(s)
        return ppl(s)

    target, tol = ppl(s_true), 1e-3
    out = match_sparsity(counted, target, tolerance=tol, low=0.0, high=0.95, progress=False,
                         known=[(s, ppl(s)) for s in grid])
    assert out["converged"] and abs(out["matched_perplexity"] / target - 1) <= tol
    assert abs(out["matched_sparsity"] - s_true) <= tol / (6 * s_true) * 1.01
    lo = max(s for s in grid if ppl(s) < target)
    hi = min(s for s in grid if ppl(s) >= target)
    assert all(lo < s < hi for s in calls) and not set(calls) & set(grid)
    plain = match_sparsity(ppl, target, tolerance=tol, low=0.0, high=0.95, progress=False)
    assert len(calls) < len(plain["evaluations"])


def test_match_sparsity_settled_by_the_curve_evaluates_nothing():
    grid = [(s, ppl(s)) for s in (0.0, 0.2, 0.4)]
    fail = lambda s: pytest.fail(f"evaluated {s}")  # noqa: E731
    out = match_sparsity(fail, ppl(0.2) * 1.001, tolerance=0.01, low=0.0, high=0.4, known=grid, progress=False)
    assert out["matched_sparsity"] == 0.2 and out["converged"]
    out = match_sparsity(fail, 9.0, tolerance=0.01, low=0.0, high=0.4, known=grid, progress=False)
    assert out["matched_sparsity"] == 0.0  # the target is below the unpruned model's perplexity
