"""Figures a person reads: one function per figure, all from the summary and survival tables.
`make_figures` is the body of the `figures` rule."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .io import atomic_path, read_json, read_table  # noqa: E402
from .outputs import FIGURES  # noqa: E402

COLORS = {"survived": "#2a9d8f", "blurred": "#e9c46a", "damaged": "#e76f51"}


def _save(fig, paths: list[str]) -> None:
    for p in paths:
        with atomic_path(p) as tmp:
            fig.savefig(tmp, format=Path(p).suffix[1:], dpi=130, bbox_inches="tight")
    plt.close(fig)


def survival_by_bits(summary: pd.DataFrame):
    q = summary[summary.kind == "rtn"].sort_values("bits", ascending=False)
    fig, ax = plt.subplots(figsize=(6, 4))
    bottom = np.zeros(len(q))
    labels = [f"INT{b}" for b in q.bits.astype(int)]
    for s in ("survived", "blurred", "damaged"):
        vals = q[f"frac_{s}"].to_numpy()
        ax.bar(labels, vals, bottom=bottom, color=COLORS[s], label=s)
        bottom += vals
    ax.set_ylabel("fraction of FP-active features")
    ax.set_ylim(0, 1)
    ax.set_title("Feature survival under RTN weight quantization")
    ax.legend(loc="lower left", fontsize=8)
    return fig


def perplexity_vs_damage(summary: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(6, 4))
    s = summary[summary.kind != "fp"].copy()
    s["degraded"] = s.frac_blurred + s.frac_damaged
    for kind, marker, color in (("rtn", "o", "#264653"), ("magnitude", "s", "#e76f51")):
        part = s[s.kind == kind]
        ax.scatter(part.perplexity_change * 100, part.degraded * 100, marker=marker, color=color,
                   label={"rtn": "RTN quantized", "magnitude": "magnitude pruned"}[kind])
        for _, row in part.iterrows():
            ax.annotate(row.variant, (row.perplexity_change * 100, row.degraded * 100), fontsize=6,
                        xytext=(3, 3), textcoords="offset points")
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel("perplexity change vs FP (%)")
    ax.set_ylabel("features blurred or damaged (%)")
    ax.set_title("Perplexity misses feature damage")
    ax.legend(fontsize=8)
    return fig


def r_histogram(tables: dict[str, pd.DataFrame]):
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(-0.2, 1, 49)
    for name, t in tables.items():
        r = t.loc[t.status != "inactive", "r"].fillna(0).clip(-0.2, 1)
        ax.hist(r, bins=bins, histtype="step", label=name, lw=1.2)
    ax.set_xlabel("Pearson r between FP and variant codes")
    ax.set_ylabel("FP-active features")
    ax.set_yscale("log")
    ax.set_title("Per-feature correlation with FP")
    ax.legend(fontsize=7, ncol=2)
    return fig


def predictor_auc(predictions: dict[str, dict]):
    fig, ax = plt.subplots(figsize=(7, 4))
    names = [v for v, p in predictions.items() if p.get("marginal_auc")]
    predictors = list(next(iter(predictions.values()))["predictors"]) if predictions else []
    width = 0.8 / (len(predictors) + 1)
    x = np.arange(len(names))
    for i, pred in enumerate(predictors):
        vals = [predictions[n]["marginal_auc"].get(pred) or np.nan for n in names]
        ax.bar(x + i * width, vals, width, label=pred)
    ax.bar(x + len(predictors) * width, [predictions[n].get("auc") or np.nan for n in names], width,
           color="black", label="logistic regression (CV)")
    ax.axhline(0.5, color="grey", lw=0.5, ls="--")
    ax.set_xticks(x + 0.4 - width / 2, names, rotation=45, ha="right", fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("ROC AUC for predicting survival")
    ax.set_title("Which FP statistics predict survival")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def overlap_plot(overlaps: dict[str, dict]):
    fig, ax = plt.subplots(figsize=(6, 4))
    names = list(overlaps)
    x = np.arange(len(names))
    ax.bar(x - 0.2, [overlaps[n]["jaccard"] for n in names], 0.4, label="Jaccard (not-survived sets)")
    ax.bar(x + 0.2, [overlaps[n]["spearman"] for n in names], 0.4, label="Spearman (damage 1-r)")
    for i, n in enumerate(names):
        ax.annotate(f"s={overlaps[n]['matched_sparsity']:.2f}", (i, 0.02), ha="center", fontsize=7)
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.05)
    ax.set_title("Quantization vs matched-perplexity pruning")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def _empty(title: str):
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.text(0.5, 0.5, f"{title}: nothing to show with this config", ha="center", va="center")
    ax.axis("off")
    return fig


def make_figures(summary_csv, variants, survival_paths, predict_paths, quantized, overlap_paths, outputs) -> None:
    """The `figures` rule: every figure in FIGURES, as each of the requested output files."""
    summary = pd.read_csv(summary_csv)
    tables = {v: read_table(p, columns=["r", "status"]).to_pandas() for v, p in zip(variants, survival_paths) if v != "fp"}
    preds = {v: read_json(p) for v, p in zip(variants, predict_paths) if v != "fp"}
    overlaps = {q: read_json(p) for q, p in zip(quantized, overlap_paths)}
    builders = {
        "survival_by_bits": lambda: survival_by_bits(summary) if (summary.kind == "rtn").any() else _empty("survival"),
        "perplexity_vs_damage": lambda: perplexity_vs_damage(summary),
        "r_histogram": lambda: r_histogram(tables) if tables else _empty("r histogram"),
        "predictor_auc": lambda: predictor_auc(preds) if preds else _empty("predictability"),
        "overlap": lambda: overlap_plot(overlaps) if overlaps else _empty("overlap"),
    }
    for name in FIGURES:
        paths = [str(p) for p in outputs if Path(p).stem == name]
        _save(builders[name](), paths)
