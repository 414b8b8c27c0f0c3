"""Per-feature statistics of the full-precision codes: the predictors of survival.

All from one streaming pass over the FP codes (zeros implied for tokens a feature skips),
plus the SAE's own weights; kept per block of sequences too, for the bootstrap (uncertainty.py).
`write_fp_statistics` is the body of the `fp_statistics` rule.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..config import EvidenceConfig, UncertaintyConfig
from ..errors import AuditError
from ..integrity import verify_dir
from ..io import write_table
from ..progress import log, progress_bar
from ..sae.codes import Codes
from .evidence import CellLookup, TopContexts, audit_ids, context_windows, window_cells, write_contexts
from .uncertainty import SequenceBlocks, audit_blocks, save_replicates

PREDICTORS = (
    "peak_activation",
    "mean_active_activation",
    "firing_frequency",
    "std_activation",
    "decoder_norm",
    "encoder_norm",
)


class BlockedStatistics:
    """Per-block count, Σv, Σv² and max of each feature's FP codes (one block when `blocks` is
    None): the full-data statistics are their totals, a bootstrap draw's their weighted sums."""

    def __init__(self, d_sae: int, blocks: SequenceBlocks | None = None):
        self.d, self.blocks = d_sae, blocks
        b = blocks.n_blocks if blocks else 1
        self.count = np.zeros((b, d_sae), np.int64)
        self.total = np.zeros((b, d_sae))
        self.total_sq = np.zeros((b, d_sae))
        self.peak = np.zeros((b, d_sae))

    def add(self, t, f, v) -> None:
        b = self.count.shape[0]
        cell = f.astype(np.int64) if self.blocks is None else self.blocks.of(t) * self.d + f
        v = v.astype(np.float64)
        size, shape = b * self.d, (b, self.d)
        self.count += np.bincount(cell, minlength=size).reshape(shape)
        self.total += np.bincount(cell, v, size).reshape(shape)
        self.total_sq += np.bincount(cell, v * v, size).reshape(shape)
        np.maximum.at(self.peak.reshape(-1), cell, v)

    def arrays(self) -> dict:
        return {"count": self.count, "total": self.total, "total_sq": self.total_sq, "peak": self.peak}


def statistics_from(count, total, total_sq, peak, n_tokens, decoder_norm, encoder_norm) -> pd.DataFrame:
    """The predictor table from (d,) sums over n_tokens tokens (zeros implied where silent)."""
    n = float(n_tokens)
    mean = total / n
    mean_active = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    return pd.DataFrame({
        "feature": np.arange(len(count), dtype=np.int64),
        "peak_activation": peak,
        "mean_active_activation": mean_active,
        "firing_frequency": count / n,
        "std_activation": np.sqrt(np.maximum(total_sq / n - mean**2, 0.0)),
        "decoder_norm": decoder_norm,
        "encoder_norm": encoder_norm,
    })


def weight_norms(sae) -> tuple[np.ndarray, np.ndarray]:
    """Each feature's decoder-row and encoder-column norm, of a loaded SAE."""
    return _norms(sae.W_dec, sae.W_enc)


def saved_weight_norms(sae_dir) -> tuple[np.ndarray, np.ndarray]:
    """`weight_norms` of the SAE in a folder SAELens saved, read from its weights file alone:
    loading it through SAELens imports TransformerLens and transformers (10-15 s a job on 2
    cores, for two vectors). The workflow's folder always comes from SAELens's own save (the
    `sae` rule), whose file holds W_dec and W_enc as loaded (torch reads any dtype it saved)."""
    from ..sae.frozen import SAE_WEIGHTS, saved_weights

    folder = verify_dir(sae_dir)
    weights = saved_weights(folder)
    missing = {"W_dec", "W_enc"} - set(weights)
    if missing:
        raise AuditError(f"{folder / SAE_WEIGHTS} has no {', '.join(sorted(missing))}; save the SAE with SAELens")
    return _norms(weights["W_dec"], weights["W_enc"])


def _norms(w_dec, w_enc) -> tuple[np.ndarray, np.ndarray]:
    # W_dec (d_sae, d_in), W_enc (d_in, d_sae); summed in float64, whatever the stored dtype
    w_dec = w_dec.detach().cpu().double()
    w_enc = w_enc.detach().cpu().double()
    return w_dec.norm(dim=1).numpy(), w_enc.norm(dim=0).numpy()


def feature_statistics(fp_codes, sae) -> pd.DataFrame:
    """The predictor table of a codes file, without blocks (tests, notebooks)."""
    codes = Codes(fp_codes)
    acc = BlockedStatistics(codes.d_sae)
    for t, f, v in codes.groups():
        acc.add(t, f, v)
    return statistics_from(acc.count[0], acc.total[0], acc.total_sq[0], acc.peak[0], codes.n_tokens, *weight_norms(sae))


def replicate_statistics(blocks: dict, weights_row: np.ndarray, stats: pd.DataFrame) -> pd.DataFrame:
    """The predictor table of one bootstrap draw (block counts `weights_row`), from the blocks
    fp_statistics stored; the SAE's weight norms do not change with the tokens."""
    w = weights_row
    present = w > 0
    peak = np.where(present[:, None], blocks["peak"], 0.0).max(0)
    return statistics_from(w @ blocks["count"], w @ blocks["total"], w @ blocks["total_sq"], peak,
                           float(w @ blocks["block_tokens"]), stats.decoder_norm.to_numpy(), stats.encoder_norm.to_numpy())


def write_fp_statistics(fp_codes, sae_dir, tokens_path, out_path, blocks_path, contexts_path,
                        uncertainty: UncertaintyConfig, evidence: EvidenceConfig) -> None:
    """The `fp_statistics` rule, one streaming pass over the FP codes (and a second over the
    few cells of the contexts): one row per feature, the predictors of survival; the per-block
    sums the bootstrap resamples; each feature's top contexts with their FP codes."""
    import pyarrow as pa

    codes = Codes(fp_codes)
    blocks = audit_blocks(tokens_path, codes.n_tokens, uncertainty.blocks)
    acc = BlockedStatistics(codes.d_sae, blocks)
    top = TopContexts(codes.d_sae, evidence.top_k, blocks.context_length)
    for t, f, v in progress_bar(codes.groups(), total=codes.file.num_row_groups, desc="fp statistics", unit="group"):
        acc.add(t, f, v)
        top.add(t, f, v)
    table = statistics_from(acc.count.sum(0), acc.total.sum(0), acc.total_sq.sum(0), acc.peak.max(0),
                            codes.n_tokens, *saved_weight_norms(sae_dir))
    write_table(pa.Table.from_pandas(table, preserve_index=False), out_path)
    save_replicates(blocks_path, block_tokens=blocks.block_tokens(), **acc.arrays())

    contexts = context_windows(top.entries(), blocks, evidence)
    cells = CellLookup(*window_cells(contexts, blocks.context_length), codes.d_sae)
    for t, f, v in codes.groups():
        cells.add(t, f, v)
    write_contexts(contexts, audit_ids(tokens_path), cells.values, contexts_path)
    log(f"fp statistics: {len(contexts)} contexts of {contexts.feature.nunique()} features; "
        f"{blocks.n_blocks} bootstrap blocks of {blocks.n_sequences} sequences")
