"""Confidence intervals by a seeded block bootstrap over audit sequences.

Sequences, not tokens, are the unit a bootstrap may resample: tokens of one sequence are
correlated. Sequence s goes to block s mod B (the audit sequences are already shuffled), and a
streaming pass keeps per-block sums of whatever a statistic is made of, so memory is
O(B x d_sae) at any number of tokens. One bootstrap draw is a vector of multinomial block
counts w (sum B): the draw's sums are w @ block_sums. Every variant and the FP statistics use
the same draws (same seed, same B), so replicate i of every table comes from the same resampled
tokens and intervals of differences between variants are paired.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import UncertaintyConfig
from ..errors import AuditError
from ..io import atomic_path, read_table


@dataclass(frozen=True)
class SequenceBlocks:
    """How audit token indices (sequence * context_length + position) map to blocks."""

    context_length: int
    n_sequences: int
    tokens_per_sequence: int  # captured per sequence (BOS excluded or not)
    n_blocks: int

    def of(self, tokens: np.ndarray) -> np.ndarray:
        return (tokens // self.context_length) % self.n_blocks

    def block_tokens(self) -> np.ndarray:
        seqs = np.bincount(np.arange(self.n_sequences) % self.n_blocks, minlength=self.n_blocks)
        return seqs * self.tokens_per_sequence


def audit_blocks(tokens_path, n_tokens: int, max_blocks: int) -> SequenceBlocks:
    """Blocks for the audit split of tokens.parquet, whose codes cover `n_tokens` tokens."""
    table = read_table(tokens_path).to_pandas()
    audit = table[table.split == "audit"].input_ids
    if audit.empty:
        raise AuditError(f"{tokens_path} has no audit sequences; delete it and rerun")
    n_seq, T = len(audit), len(audit.iloc[0])
    if n_tokens % n_seq:
        raise AuditError(f"the codes cover {n_tokens} tokens, not a whole number per sequence of {tokens_path}; "
                         "delete the codes and rerun")
    return SequenceBlocks(T, n_seq, n_tokens // n_seq, min(max_blocks, n_seq))


def draws(n_blocks: int, settings: UncertaintyConfig) -> np.ndarray:
    """(replicates, n_blocks) block counts; the same for every caller with the same settings."""
    rng = np.random.default_rng(settings.seed)
    return rng.multinomial(n_blocks, np.full(n_blocks, 1.0 / n_blocks), size=settings.replicates).astype(np.float64)


def interval(values, level: float, center: float | None = None, bounds=(-np.inf, np.inf)) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates, ignoring draws where the statistic is
    undefined. With `center` (the measured value) the draws give only the spread: the interval
    is the percentiles' distances from the draws' median, laid around `center`. Fractions of
    features past a threshold need this: resampling adds noise to every r, and where many
    features sit just above survived_r more of them cross down than up, so the draws' median
    drifts below the measured fraction although nothing about the variant changed."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    lo, mid, hi = np.quantile(v, [a, 0.5, 1 - a])
    if center is not None and np.isfinite(center):
        lo, hi = center - (mid - lo), center + (hi - mid)
    return float(np.clip(lo, *bounds)), float(np.clip(hi, *bounds))


def save_replicates(path, **arrays) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)


def load_replicates(path) -> dict:
    try:
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise AuditError(f"{path} is unreadable ({e}); delete it and rerun") from None


def bootstrap_perplexity(per_sequence: dict, n_tokens_per_seq: int, settings: UncertaintyConfig) -> dict:
    """Perplexity's standard error and interval, and the interval of its change against FP, by
    resampling held-out sequences (the same sequences for the variant and FP: paired)."""
    nll = np.asarray(per_sequence["nll"], np.float64)
    n = len(nll)
    rng = np.random.default_rng(settings.seed)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=settings.replicates).astype(np.float64)
    tokens = counts.sum(1) * n_tokens_per_seq
    ppl = np.exp(counts @ nll / tokens)
    out = {"perplexity_se": float(ppl.std(ddof=1))}
    out["perplexity_lo"], out["perplexity_hi"] = interval(ppl, settings.level)
    fp_nll = np.asarray(per_sequence["fp_nll"], np.float64)
    change = ppl / np.exp(counts @ fp_nll / tokens) - 1
    out["perplexity_change_lo"], out["perplexity_change_hi"] = interval(change, settings.level)
    return out
