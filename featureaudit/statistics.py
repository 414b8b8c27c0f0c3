"""Per-feature statistics of the full-precision codes: the predictors of survival.

All from one streaming pass over the FP codes (zeros implied for tokens a feature skips),
plus the SAE's own weights. `write_fp_statistics` is the body of the `fp_statistics` rule.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .codes import Codes
from .io import write_table
from .sae import load_sae

PREDICTORS = (
    "peak_activation",
    "mean_active_activation",
    "firing_frequency",
    "std_activation",
    "decoder_norm",
    "encoder_norm",
)


def feature_statistics(fp_codes, sae) -> pd.DataFrame:
    codes = Codes(fp_codes)
    d, n = codes.d_sae, codes.n_tokens
    count = np.zeros(d, np.int64)
    total = np.zeros(d)
    total_sq = np.zeros(d)
    peak = np.zeros(d)
    for _, f, v in codes.groups():
        v = v.astype(np.float64)
        count += np.bincount(f, minlength=d)
        total += np.bincount(f, v, d)
        total_sq += np.bincount(f, v * v, d)
        np.maximum.at(peak, f, v)
    mean = total / n
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_active = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    w_dec = sae.W_dec.detach().float().cpu()  # (d_sae, d_in)
    w_enc = sae.W_enc.detach().float().cpu()  # (d_in, d_sae)
    return pd.DataFrame({
        "feature": np.arange(d, dtype=np.int64),
        "peak_activation": peak,
        "mean_active_activation": mean_active,
        "firing_frequency": count / n,
        "std_activation": np.sqrt(np.maximum(total_sq / n - mean**2, 0.0)),
        "decoder_norm": w_dec.norm(dim=1).numpy().astype(np.float64),
        "encoder_norm": w_enc.norm(dim=0).numpy().astype(np.float64),
    })


def write_fp_statistics(fp_codes, sae_dir, out_path) -> None:
    """The `fp_statistics` rule: one row per feature, the predictors of survival."""
    import pyarrow as pa

    table = feature_statistics(fp_codes, load_sae(sae_dir, "cpu"))
    write_table(pa.Table.from_pandas(table, preserve_index=False), out_path)
