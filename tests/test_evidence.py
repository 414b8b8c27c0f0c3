"""Per-feature evidence against brute force on dense codes: the streaming top-k contexts, the
cell lookup every variant's evidence uses, and the window geometry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from featureaudit.config import EvidenceConfig
from featureaudit.measure.evidence import CellLookup, TopContexts, context_windows, window_cells
from featureaudit.measure.uncertainty import SequenceBlocks

T, N_SEQ, D, K = 16, 40, 12, 5


@pytest.fixture(scope="module")
def dense():
    """(N_SEQ * T, D) codes; BOS (position 0) never captured, so those rows stay zero."""
    rng = np.random.default_rng(3)
    x = np.where(rng.random((N_SEQ * T, D)) < 0.15, rng.exponential(1.0, (N_SEQ * T, D)), 0.0).astype(np.float32)
    x[::T] = 0.0
    x[:, 7] = 0.0  # a feature that never fires
    x[5 * T + 3, 9] = 50.0  # one feature's clear winner
    return x


def chunks(x, bounds):
    """(token, feature, value) nonzeros per chunk of whole sequences, as a codes file holds them."""
    for a, b in zip(bounds[:-1], bounds[1:]):
        rows, feats = np.nonzero(x[a * T: b * T])
        yield rows + a * T, feats.astype(np.int32), x[a * T: b * T][rows, feats]


def brute_top(x, k):
    """Per feature: the k sequences with the largest max activation, each at its argmax token."""
    out = {}
    per_seq = x.reshape(N_SEQ, T, D)
    for f in range(D):
        best = per_seq[:, :, f].max(1)
        arg = per_seq[:, :, f].argmax(1)
        seqs = [s for s in np.argsort(-best, kind="stable") if best[s] > 0][:k]
        out[f] = [(s * T + arg[s], best[s]) for s in seqs]
    return out


@pytest.mark.parametrize("bounds", [[0, N_SEQ], [0, 7, 8, 25, N_SEQ], list(range(N_SEQ + 1))])
def test_top_contexts_equal_brute_force(dense, bounds):
    top = TopContexts(D, K, T)
    for t, f, v in chunks(dense, bounds):
        top.add(t, f, v)
    got = top.entries()
    want = brute_top(dense, K)
    for f in range(D):
        rows = got[got.feature == f].sort_values("rank")
        assert list(rows.token) == [t for t, _ in want[f]], f
        np.testing.assert_array_equal(rows.value.to_numpy(), np.array([v for _, v in want[f]], np.float32))
    assert (got.feature != 7).all()
    assert got[(got.feature == 9) & (got["rank"] == 0)].token.item() == 5 * T + 3


def test_windows_stay_inside_their_sequence_and_skip_bos(dense):
    top = TopContexts(D, K, T)
    for t, f, v in chunks(dense, [0, N_SEQ]):
        top.add(t, f, v)
    blocks = SequenceBlocks(T, N_SEQ, T - 1, 4)
    ctx = context_windows(top.entries(), blocks, EvidenceConfig(top_k=K, before=6, after=2))
    assert (ctx.start >= 1).all() and (ctx.stop <= T).all()
    assert ((ctx.center >= ctx.start) & (ctx.center < ctx.stop)).all()
    assert ((ctx.stop - ctx.start) <= 9).all()
    assert (ctx.sequence * T + ctx.center == ctx.token).all()


def test_cell_lookup_reads_the_dense_matrix(dense):
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, N_SEQ * T, 300)
    feats = rng.integers(0, D, 300)
    keys = pd.unique(tokens.astype(np.int64) * D + feats)  # cells are unique, as windows' are
    tokens, feats = keys // D, (keys % D).astype(np.int32)
    look = CellLookup(tokens, feats, D)
    for t, f, v in chunks(dense, [0, 3, 19, N_SEQ]):
        look.add(t, f, v)
    np.testing.assert_array_equal(look.values, dense[tokens, feats])


def test_window_cells_are_each_windows_tokens():
    ctx = pd.DataFrame({"feature": [2, 5], "sequence": [1, 3], "start": [4, 1], "stop": [7, 3]})
    tokens, feats = window_cells(ctx, T)
    assert list(tokens) == [T + 4, T + 5, T + 6, 3 * T + 1, 3 * T + 2]
    assert list(feats) == [2, 2, 2, 5, 5]
