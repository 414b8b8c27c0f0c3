"""Per-feature evidence: each feature's top FP contexts, and every variant's code on them.

`TopContexts` keeps, in one streaming pass over the FP codes, the k sequences on which each
feature fires hardest (at most one context per sequence, so a feature that fires on a run of
tokens shows k different texts): memory O(d_sae x k), whatever the number of tokens. A context
is a window of tokens around the max-activating one. `CellLookup` then reads any codes file's
values on exactly those (token, feature) cells, so FP and each variant are shown on the same
tokens. Written by the `fp_statistics` rule (contexts.parquet, FP values) and the `survival`
rule (evidence/<variant>.parquet).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from ..config import EvidenceConfig
from ..io import read_table, write_table
from ..sae.codes import matching
from .uncertainty import SequenceBlocks


class TopContexts:
    """Streaming top-k (value, token) per feature, one token per (feature, sequence)."""

    def __init__(self, d_sae: int, k: int, context_length: int):
        self.k, self.T = k, context_length
        self.value = np.full((d_sae, k), -np.inf, np.float32)
        self.token = np.full((d_sae, k), -1, np.int64)

    def add(self, t: np.ndarray, f: np.ndarray, v: np.ndarray) -> None:
        if len(t) == 0:
            return
        seq = t // self.T
        # the best token of each (feature, sequence) pair in this chunk
        order = np.lexsort((-v, seq, f))
        fs, ss = f[order], seq[order]
        first = np.ones(len(order), bool)
        first[1:] = (fs[1:] != fs[:-1]) | (ss[1:] != ss[:-1])
        sel = order[first]
        f1, v1, t1 = f[sel], v[sel], t[sel]
        # its k best per feature
        order = np.lexsort((-v1, f1))
        f1, v1, t1 = f1[order], v1[order], t1[order]
        starts = np.r_[0, np.flatnonzero(f1[1:] != f1[:-1]) + 1]
        rank = np.arange(len(f1)) - np.repeat(starts, np.diff(np.r_[starts, len(f1)]))
        keep = rank < self.k
        cand_v = np.full_like(self.value, -np.inf)
        cand_t = np.full_like(self.token, -1)
        cand_v[f1[keep], rank[keep]] = v1[keep]
        cand_t[f1[keep], rank[keep]] = t1[keep]
        # merge: a chunk never repeats a sequence of an earlier chunk (shards hold whole sequences)
        all_v = np.concatenate([self.value, cand_v], 1)
        all_t = np.concatenate([self.token, cand_t], 1)
        best = np.argsort(-all_v, axis=1, kind="stable")[:, : self.k]
        self.value = np.take_along_axis(all_v, best, 1)
        self.token = np.take_along_axis(all_t, best, 1)

    def entries(self) -> pd.DataFrame:
        """feature, rank, token, value of every kept context, by feature then rank."""
        f, rank = np.nonzero(self.token >= 0)
        return pd.DataFrame({"feature": f.astype(np.int32), "rank": rank.astype(np.int16),
                             "token": self.token[f, rank], "value": self.value[f, rank]})


class CellLookup:
    """A codes file's values on given (token, feature) cells (0 where the feature is silent)."""

    def __init__(self, tokens: np.ndarray, features: np.ndarray, d_sae: int):
        self.d = d_sae
        keys = tokens.astype(np.int64) * d_sae + features
        self.order = np.argsort(keys, kind="stable")
        self.keys = keys[self.order]
        self.values = np.zeros(len(keys), np.float32)

    def add(self, t: np.ndarray, f: np.ndarray, v: np.ndarray) -> None:
        ix, iy = matching(t.astype(np.int64) * self.d + f, self.keys)
        self.values[self.order[iy]] = v[ix]


def context_windows(top: pd.DataFrame, blocks: SequenceBlocks, settings: EvidenceConfig) -> pd.DataFrame:
    """Each context's window of token positions: [start, stop) within its sequence, captured
    positions only (a BOS the audit excludes has no code to show)."""
    T = blocks.context_length
    first = T - blocks.tokens_per_sequence
    seq, pos = top.token.to_numpy() // T, top.token.to_numpy() % T
    out = top.copy()
    out["sequence"] = seq
    out["center"] = pos
    out["start"] = np.maximum(first, pos - settings.before)
    out["stop"] = np.minimum(T, pos + settings.after + 1)
    return out


def window_cells(contexts: pd.DataFrame, context_length: int) -> tuple[np.ndarray, np.ndarray]:
    """The (token, feature) cells of every window, flattened in row order."""
    lengths = (contexts.stop - contexts.start).to_numpy()
    row = np.repeat(np.arange(len(contexts)), lengths)
    offset = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    pos = contexts.start.to_numpy()[row] + offset
    tokens = contexts.sequence.to_numpy()[row] * context_length + pos
    return tokens, contexts.feature.to_numpy()[row]


def split_windows(values: np.ndarray, contexts: pd.DataFrame) -> list[np.ndarray]:
    lengths = (contexts.stop - contexts.start).to_numpy()
    return np.split(values, np.cumsum(lengths)[:-1]) if len(lengths) else []


def audit_ids(tokens_path) -> np.ndarray:
    """(n_seq, context_length) token ids of the audit split of tokens.parquet."""
    table = read_table(tokens_path).to_pandas()
    return np.stack(table[table.split == "audit"].input_ids.to_numpy())


def write_contexts(contexts: pd.DataFrame, audit_ids: np.ndarray, fp_values: np.ndarray, path) -> None:
    """contexts.parquet: one row per (feature, rank): its window's token ids and FP codes."""
    ids = [audit_ids[s, a:b] for s, a, b in zip(contexts.sequence, contexts.start, contexts.stop)]
    table = pa.table({
        "feature": pa.array(contexts.feature.to_numpy(), pa.int32()),
        "rank": pa.array(contexts["rank"].to_numpy(), pa.int16()),
        "sequence": pa.array(contexts.sequence.to_numpy(), pa.int64()),
        "center": pa.array(contexts.center.to_numpy(), pa.int32()),
        "start": pa.array(contexts.start.to_numpy(), pa.int32()),
        "stop": pa.array(contexts.stop.to_numpy(), pa.int32()),
        "token_ids": pa.array([x.astype(np.int64) for x in ids], pa.list_(pa.int64())),
        "fp": pa.array(split_windows(fp_values, contexts), pa.list_(pa.float32())),
    })
    write_table(table, path)


def read_contexts(path) -> pd.DataFrame:
    return read_table(path).to_pandas()


def write_variant_evidence(contexts: pd.DataFrame, values: np.ndarray, path) -> None:
    """evidence/<variant>.parquet: the variant's codes on each context's window, rows as in
    contexts.parquet."""
    table = pa.table({
        "feature": pa.array(contexts.feature.to_numpy(), pa.int32()),
        "rank": pa.array(contexts["rank"].to_numpy(), pa.int16()),
        "values": pa.array(split_windows(values, contexts), pa.list_(pa.float32())),
    })
    write_table(table, path)
