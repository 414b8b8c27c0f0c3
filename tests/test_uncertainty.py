"""The block bootstrap: a draw's r equals scipy's r on the explicitly resampled tokens; its
intervals cover in repeated simulation; perplexity's standard error matches the delta method;
the predictability model's AUC equals sklearn's pipeline."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from featureaudit.config import Thresholds, UncertaintyConfig
from featureaudit.measure.overlap import replicate_jaccard
from featureaudit.measure.predictability import cv_auc
from featureaudit.measure.survival import STATUSES, PearsonAccumulator, pearson, replicate_fractions, replicate_statuses
from featureaudit.measure.uncertainty import SequenceBlocks, bootstrap_perplexity, draws, interval


def sparse(x):
    rows, feats = np.nonzero(x)
    return rows.astype(np.int64), feats.astype(np.int32), x[rows, feats].astype(np.float32)


def accumulate(x, y, blocks):
    acc = PearsonAccumulator(x.shape[1], blocks)
    acc.add(*sparse(x), *sparse(y))
    return acc


def test_a_draw_is_pearson_on_the_resampled_sequences():
    T, n_seq, d, B = 8, 30, 6, 7
    rng = np.random.default_rng(1)
    x = np.where(rng.random((n_seq * T, d)) < 0.3, rng.exponential(1, (n_seq * T, d)), 0)
    y = np.where(x > 0, x + 0.3 * rng.standard_normal(x.shape), 0)
    y[:, 5] = np.where(rng.random(n_seq * T) < 0.2, 1.0, 0)  # unrelated
    x, y = x.astype(np.float32).astype(np.float64), y.astype(np.float32).astype(np.float64)  # as codes store them
    blocks = SequenceBlocks(T, n_seq, T, B)
    acc = accumulate(x, y, blocks)
    w = draws(B, UncertaintyConfig(replicates=5, seed=4))
    got = pearson(acc.totals(w), w @ blocks.block_tokens())
    block_of_seq = np.arange(n_seq) % B
    for i, counts in enumerate(w.astype(int)):
        seqs = np.concatenate([np.repeat(np.flatnonzero(block_of_seq == b), c) for b, c in enumerate(counts)])
        rows = (seqs[:, None] * T + np.arange(T)).reshape(-1)
        for f in range(d):
            want = pearsonr(x[rows, f], y[rows, f]).statistic
            assert got[i, f] == pytest.approx(want, abs=1e-9), (i, f)
    # the full data is the sum of all blocks
    np.testing.assert_allclose(acc.pearson(n_seq * T), [pearsonr(x[:, f], y[:, f]).statistic for f in range(d)], atol=1e-9)


def simulate(rng, p, sigma, n_seq, T):
    """Codes whose population r is known; firing rates vary by (sequence, feature), so tokens of
    one sequence are correlated and a token-level bootstrap would be too narrow."""
    d = len(p)
    m = rng.gamma(2.0, 0.5, (n_seq, 1, d))
    fires = (rng.random((n_seq, T, d)) < p * m).reshape(n_seq * T, d)
    x = np.where(fires, rng.gamma(9, 1 / 9, fires.shape), 0.0)
    y = np.where(fires, x + sigma * rng.standard_normal(fires.shape), 0.0)
    return x, y


def test_interval_covers_in_repeated_simulation():
    """95 % intervals of the survived fraction over 40 independent audits. The target is the
    fraction an audit of this size finds on average (Monte Carlo over the same 40 plus 40 more
    fresh audits): thresholding a noisy r biases a finite audit's fraction (here by ~1 point
    against the infinite-token fraction), which no resampling of the same text can see."""
    d, T, n_seq, B = 200, 64, 128, 64
    rng0 = np.random.default_rng(0)
    p = rng0.uniform(0.02, 0.08, d)
    r_true = rng0.uniform(0.75, 1.0, d)
    var_x = p * (1 + 1 / 9) - p**2
    sigma = np.sqrt(var_x * (1 / r_true**2 - 1) / p)  # r of x and x + noise where x fires
    th = Thresholds(active_min_tokens=1)
    settings = UncertaintyConfig(replicates=200, blocks=B, seed=1)
    blocks = SequenceBlocks(T, n_seq, T, B)
    w = draws(B, settings)
    measured, intervals, spreads = [], [], []
    for rep in range(80):
        x, y = simulate(np.random.default_rng(100 + rep), p, sigma, n_seq, T)
        acc = accumulate(x, y, blocks)
        theta = float((acc.pearson(n_seq * T) >= th.survived_r).mean())
        measured.append(theta)
        if rep < 40:
            frac = replicate_fractions(replicate_statuses(acc, w, th))["survived"]
            intervals.append(interval(frac, settings.level, theta, (0, 1)))
            spreads.append(frac.std())
    target = np.mean(measured)
    covered = sum(lo <= target <= hi for lo, hi in intervals)
    assert covered >= 34, (covered, target)  # nominal 38 of 40; P(<= 33 | 95 %) < 0.1 %
    # the draws' spread is the sampling spread of a fresh audit (sequences, not tokens, resampled)
    assert 0.7 < np.mean(spreads) / np.std(measured) < 1.4


def test_interval_is_centred_on_the_measured_value():
    values = np.array([0.80, 0.82, 0.84, 0.86, 0.88])
    lo, hi = interval(values, 0.5, center=0.90, bounds=(0, 1))
    want_lo, mid, want_hi = np.quantile(values, [0.25, 0.5, 0.75])
    assert (lo, hi) == pytest.approx((0.90 - (mid - want_lo), 0.90 + (want_hi - mid)))
    assert interval(values, 0.5) == pytest.approx((want_lo, want_hi))
    assert interval([np.nan, np.nan], 0.95) != interval([np.nan, np.nan], 0.95)  # (nan, nan)


def test_perplexity_standard_error_matches_the_delta_method():
    rng = np.random.default_rng(2)
    n, L = 400, 63
    per_token = rng.gamma(4, 0.8, n)  # mean NLL per token differs by sequence
    nll = per_token * L
    out = bootstrap_perplexity({"nll": nll, "fp_nll": nll * 0.97}, L, UncertaintyConfig(replicates=2000, seed=0))
    ppl = np.exp(nll.sum() / (n * L))
    delta = ppl * per_token.std(ddof=1) / np.sqrt(n)
    assert out["perplexity_se"] == pytest.approx(delta, rel=0.1)
    assert out["perplexity_lo"] < ppl < out["perplexity_hi"]
    change = np.exp(nll.sum() / (n * L)) / np.exp(0.97 * nll.sum() / (n * L)) - 1
    assert out["perplexity_change_lo"] < change < out["perplexity_change_hi"]


def test_replicate_jaccard_by_sets():
    s = STATUSES.index
    q = np.array([[s("survived"), s("blurred"), s("damaged"), s("inactive")],
                  [s("blurred"), s("blurred"), s("survived"), s("survived")]])
    p = np.array([[s("blurred"), s("survived"), s("damaged"), s("inactive")],
                  [s("survived"), s("survived"), s("survived"), s("survived")]])
    got = replicate_jaccard(q, p)
    assert got[0] == pytest.approx(len({0, 2} & {1, 2}) / len({0, 2} | {1, 2}))
    assert got[1] == 0.0


def test_cv_auc_equals_sklearns_pipeline():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((300, 6)) * [1, 2, 0.5, 3, 1, 1] + [0, 1, 2, 3, 4, 5]
    y = (x[:, 0] + 0.5 * x[:, 3] + rng.standard_normal(300)) > 1.5
    want = cross_val_score(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)), x, y,
                           cv=StratifiedKFold(5, shuffle=True, random_state=0), scoring="roc_auc")
    np.testing.assert_allclose(cv_auc(x, y, 5, 0), want, atol=2e-3)
