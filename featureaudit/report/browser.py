"""The feature browser: one self-contained HTML file per model and hook (no network, no server;
a hook selector links the pages of one model's hooks, which sit side by side).

Every FP-active feature is a row of a table (sortable, filterable by status in a chosen
variant, paginated so 16 K features stay fast); a row opens the feature's card: its top FP
contexts with tokens shaded by activation, FP and every variant on the same tokens, r against
bits per weight, its FP statistics and its predicted risk. The data travel inside the page as
base64 typed arrays (activations as one byte each, relative to the feature's own FP peak; the
contexts' arrays gzipped, since a feature is silent on most tokens of its own contexts). `write_browser` is the body of the
`browser` rule.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_path, read_table
from ..measure.evidence import read_contexts
from ..measure.survival import STATUSES
from .corpus_rows import main_corpus
from .browser_page import PAGE


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def _gz64(a: np.ndarray) -> str:
    """gzip, then base64: the contexts' token ids and activations (mostly zeros: a feature is
    silent on ~85 % of its own context windows) shrink several-fold; the page inflates them with
    the browser's own DecompressionStream. mtime=0 keeps the bytes reproducible."""
    return base64.b64encode(gzip.compress(np.ascontiguousarray(a).tobytes(), compresslevel=6, mtime=0)).decode("ascii")


def _num(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def build_payload(model: str, hook: str, hooks: list[str], variants: list[str], survival: dict[str, pd.DataFrame], risk: dict[str, pd.DataFrame],
                  contexts: pd.DataFrame, evidence: dict[str, pd.DataFrame], summary: pd.DataFrame,
                  token_text: dict[int, str], thresholds: dict, causal: dict[str, pd.DataFrame] | None = None) -> dict:
    """Everything the page shows, as plain JSON with typed arrays in base64. `causal`: the
    causal audit's per-feature tables of the variants that have one (sampled features only)."""
    fp = survival["fp"] if "fp" in survival else next(iter(survival.values()))
    features = fp.loc[fp.status != "inactive", "feature"].to_numpy()
    n_f, n_v = len(features), len(variants)
    r = np.full((n_v, n_f), np.nan, np.float32)
    status = np.zeros((n_v, n_f), np.int8)
    rk = np.full((n_v, n_f), np.nan, np.float32)
    for j, v in enumerate(variants):
        t = survival[v].set_index("feature").loc[features]
        r[j] = t.r.to_numpy(np.float32)
        status[j] = [STATUSES.index(s) for s in t.status]
        if v in risk:
            rk[j] = risk[v].set_index("feature").risk.reindex(features).to_numpy(np.float32)
    stats = fp.set_index("feature").loc[features]
    causal_r = np.full((n_v, n_f), np.nan, np.float32)
    steering = np.full((n_v, n_f), np.nan, np.float32)
    for j, v in enumerate(variants):
        if causal and v in causal:
            c = causal[v].set_index("feature")
            causal_r[j] = c.causal_r.reindex(features).to_numpy(np.float32)
            steering[j] = c.steering_overlap.reindex(features).to_numpy(np.float32)

    # contexts of the shown features, in (feature, rank) order
    ctx = contexts[contexts.feature.isin(features)].sort_values(["feature", "rank"], kind="stable")
    order = ctx.index.to_numpy()
    ids = np.concatenate(ctx.token_ids.to_numpy()) if len(ctx) else np.zeros(0, np.int64)
    vocab, tok_index = np.unique(ids, return_inverse=True)
    lengths = ctx.token_ids.map(len).to_numpy(np.int32)
    per_feature = np.searchsorted(ctx.feature.to_numpy(), features, side="left")
    ctx_start = np.r_[per_feature, len(ctx)].astype(np.int32)  # contexts of feature i: [start_i, start_{i+1})
    fp_vals = np.concatenate(ctx.fp.to_numpy()) if len(ctx) else np.zeros(0, np.float32)
    # One byte per value, relative to the feature's FP peak (its top context's centre):
    # 0..255 covers 0..2x the peak, so a variant that overshoots still shows by how much.
    feature_scale = (np.maximum(stats.peak_activation.to_numpy(np.float64), 1e-12) * 2 / 255)
    ctx_scale = feature_scale[np.searchsorted(features, ctx.feature.to_numpy())] if len(ctx) else np.zeros(0)
    scale = np.repeat(ctx_scale, lengths)
    quant = np.zeros((n_v + 1, len(fp_vals)), np.uint8)
    quant[0] = np.clip(np.rint(fp_vals / scale), 0, 255)
    for j, v in enumerate(variants):
        vals = np.concatenate(evidence[v]["values"].to_numpy()[order]) if len(ctx) else np.zeros(0, np.float32)
        quant[j + 1] = np.clip(np.rint(vals / scale), 0, 255)

    rows = summary.set_index("variant")
    meta = [{"name": v, "family": str(rows.loc[v, "family"]) if v in rows.index else "",
             "bits_per_weight": _num(float(rows.loc[v, "bits_per_weight"])) if v in rows.index else None,
             "verdict": str(rows.loc[v, "verdict"]) if v in rows.index and "verdict" in rows else "",
             "frac_survived": _num(float(rows.loc[v, "frac_survived"])) if v in rows.index else None}
            for v in variants]
    return {
        "model": model, "hook": hook, "hooks": list(hooks), "variants": meta, "statuses": list(STATUSES), "thresholds": thresholds,
        "n_features": int(n_f), "n_contexts": int(len(ctx)),
        "feature": _b64(features.astype(np.int32)),
        "fp_tokens": _b64(stats.fp_active_tokens.to_numpy(np.int32)),
        "peak": _b64(stats.peak_activation.to_numpy(np.float32)),
        "freq": _b64(stats.firing_frequency.to_numpy(np.float32)),
        "mean_active": _b64(stats.mean_active_activation.to_numpy(np.float32)),
        "r": _b64(r), "status": _b64(status), "risk": _b64(rk),
        "causal_r": _b64(causal_r), "steering": _b64(steering), "has_causal": bool(causal),
        "ctx_start": _b64(ctx_start), "ctx_len": _b64(lengths),
        "ctx_center": _b64((ctx.center - ctx.start).to_numpy(np.int32)),
        "tokens": _gz64(tok_index.astype(np.int32)), "vocab": [token_text.get(int(i), f"<{int(i)}>") for i in vocab],
        "scale": _b64(feature_scale.astype(np.float32)), "values": _gz64(quant),
    }


def render(payload: dict) -> str:
    # "</" inside a <script> would end it early; JSON allows "<\/"
    data = json.dumps(payload, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    title = f"featureaudit: {payload['model']} features at {payload['hook']}"
    return PAGE.replace("__TITLE__", title).replace("__DATA__", data)


def token_strings(tokenizer, ids) -> dict[int, str]:
    """How each token reads in the text (a leading space kept, so words stay apart)."""
    return {int(i): tokenizer.decode([int(i)]) for i in ids}


def write_browser(model: str, hook: str, hooks: list[str], variants, survival_paths, risk_paths, contexts_path,
                  evidence_paths, summary_path, source: dict, thresholds: dict, out_path,
                  causal_paths: dict | None = None) -> None:
    """The `browser` rule: results/<model>/<hook>/browser.html."""
    from ..model.reference import load_tokenizer
    from ..progress import log

    survival = {v: read_table(p).to_pandas() for v, p in zip(variants, survival_paths)}
    risk = {v: read_table(p).to_pandas() for v, p in zip(variants, risk_paths)}
    evidence = {v: read_table(p).to_pandas() for v, p in zip(variants, evidence_paths)}
    contexts = read_contexts(contexts_path)
    ids = np.unique(np.concatenate(contexts.token_ids.to_numpy())) if len(contexts) else []
    text = token_strings(load_tokenizer(source["source"], source["path"], source["name"]), ids)
    causal = {v: read_table(p).to_pandas() for v, p in (causal_paths or {}).items()}
    summary = main_corpus(pd.read_csv(summary_path))
    payload = build_payload(model, hook, hooks, list(variants), survival, risk, contexts, evidence,
                            summary[summary.hook == hook], text, thresholds, causal)
    html = render(payload)
    with atomic_path(out_path) as tmp:
        Path(tmp).write_text(html, encoding="utf-8")
    log(f"browser: {payload['n_features']} features, {payload['n_contexts']} contexts, {len(html) / 1e6:.1f} MB")
