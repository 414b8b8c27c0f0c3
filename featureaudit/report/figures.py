"""Figures a person reads: one function per figure, all from the summary and survival tables.
`write_figures` is the body of the `figures` rule (the figures of one hook), `write_depth_figure`
of the `depth_figure` rule (survival against depth, across the model's hooks).

Conventions: a family of variants (RTN, GGUF, bitsandbytes, torchao, checkpoints, pruning) has
one colour and marker in every figure; no colour repeats within a plot; many series become
small multiples; a number computed from too few features is drawn faded and labelled as such.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
# Figures are outputs like any other: the same inputs give the same bytes (SVG ids are
# otherwise salted with a random UUID, and SVG and PDF carry the date).
matplotlib.rcParams["svg.hashsalt"] = "featureaudit"
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..figure_names import DEPTH_FIGURE, FIGURES  # noqa: E402
from ..integrity import verify_file  # noqa: E402
from ..io import atomic_path, read_json, read_table  # noqa: E402
from .corpus_rows import main_corpus  # noqa: E402
from .method_groups import GROUP_LABELS, GROUPS, method_table, short_label  # noqa: E402

STATUS_COLORS = {"survived": "#2a9d8f", "blurred": "#e9c46a", "damaged": "#e76f51"}
#: family -> (colour, marker, legend label); the colours are distinct from each other.
FAMILIES = {
    "rtn": ("#264653", "o", "RTN per channel"),
    "rtn-group": ("#1d7874", "o", "RTN per group"),
    "rtn-tensor": ("#8d99ae", "v", "RTN per tensor"),
    "gguf": ("#d4a017", "s", "GGUF types (gguf-py)"),
    "bnb": ("#7b2cbf", "D", "bitsandbytes 4-bit"),
    "torchao": ("#d6336c", "^", "torchao (weights + activations)"),
    "checkpoint": ("#0096c7", "P", "checkpoint files"),
    "magnitude": ("#e76f51", "X", "magnitude pruned"),
}
#: Fewer not-surviving (or surviving) features than this and an AUC is a few points, not a result.
MIN_CLASS = 10


def _save(fig, paths: list[str]) -> None:
    for p in paths:
        with atomic_path(p) as tmp:
            fig.savefig(tmp, format=Path(p).suffix[1:], dpi=130, bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)


def _style(family: str):
    return FAMILIES.get(family, ("#555555", "o", family))


def _label_points(ax, xs, ys, texts, fontsize=6):
    """Labels right of their points, nudged apart vertically where they would overlap."""
    fig = ax.figure
    fig.canvas.draw()
    pts = ax.transData.transform(np.column_stack([xs, ys]))
    height = fontsize * fig.dpi / 72 * 1.15
    placed: list[tuple[float, float]] = []  # (x, y) in pixels of labels already placed
    for i in np.argsort(pts[:, 1]):
        x, y = pts[i]
        while any(abs(y - py) < height and abs(x - px) < 60 * fig.dpi / 100 for px, py in placed):
            y += height
        placed.append((x, y))
        shift = (y - pts[i][1]) * 72 / fig.dpi  # pixels -> points, which survive a change of dpi
        ax.annotate(texts[i], (xs[i], ys[i]), xytext=(4, shift), textcoords="offset points", fontsize=fontsize,
                    va="center", arrowprops=dict(arrowstyle="-", lw=0.3, color="#999999") if shift else None)


def _err(df: pd.DataFrame, col: str, scale: float = 1.0, flip: bool = False):
    """Asymmetric error bars (2, n) from the summary's {col}_lo / {col}_hi, or None without them;
    `flip` for a quantity drawn as 1 - col."""
    if f"{col}_lo" not in df or df[f"{col}_lo"].isna().all():
        return None
    v, lo, hi = df[col].to_numpy(float), df[f"{col}_lo"].to_numpy(float), df[f"{col}_hi"].to_numpy(float)
    below, above = (hi - v, v - lo) if flip else (v - lo, hi - v)
    return np.nan_to_num(np.vstack([below, above]).clip(min=0)) * scale


def survival_by_bits(summary: pd.DataFrame):
    q = summary[(summary.kind == "rtn") & (summary.family != "rtn-tensor")].sort_values("bits", ascending=False)
    fig, ax = plt.subplots(figsize=(6, 4))
    bottom = np.zeros(len(q))
    labels = [f"INT{b}" for b in q.bits.astype(int)]
    for s in ("survived", "blurred", "damaged"):
        vals = q[f"frac_{s}"].to_numpy()
        ax.bar(labels, vals, bottom=bottom, color=STATUS_COLORS[s], label=s)
        bottom += vals
    # intervals of the two boundaries: survived, and survived + blurred (= 1 - damaged)
    for col, top, flip in (("frac_survived", q.frac_survived, False), ("frac_damaged", 1 - q.frac_damaged, True)):
        err = _err(q, col, flip=flip)
        if err is not None:
            ax.errorbar(labels, top, yerr=err, fmt="none", ecolor="black", elinewidth=0.9, capsize=3)
    ax.set_ylabel("fraction of FP-active features (bars: 95 % intervals)")
    ax.set_ylim(0, 1)
    ax.set_title("Feature survival under RTN weight quantization")
    ax.legend(loc="lower left", fontsize=8)
    return fig


def perplexity_vs_damage(summary: pd.DataFrame, tolerance: float | None = None):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    s = summary[summary.kind != "fp"].copy()
    s["degraded"] = (s.frac_blurred + s.frac_damaged) * 100
    s["dppl"] = s.perplexity_change * 100
    for family, part in s.groupby("family", sort=False):
        color, marker, label = _style(family)
        ax.scatter(part.dppl, part.degraded, marker=marker, color=color, label=label, s=28, zorder=3)
        xerr, yerr = _err(part, "perplexity_change", 100), _err(part, "frac_survived", 100, flip=True)
        if xerr is not None or yerr is not None:
            ax.errorbar(part.dppl, part.degraded, xerr=xerr, yerr=yerr, fmt="none", ecolor=color, elinewidth=0.7,
                        alpha=0.8, zorder=2)
    if tolerance is not None:
        ax.axvspan(-100 * tolerance, 100 * tolerance, color="#dddddd", alpha=0.6, lw=0, zorder=0,
                   label=f"perplexity within {100 * tolerance:g} % of FP (the verdict's tolerance)")
    ax.axvline(0, color="grey", lw=0.5)
    ax.margins(x=0.15, y=0.08)
    if s.dppl.abs().max() > 50:  # pruning to 40 % can cost +300 %: log beyond 10 %
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlabel("perplexity change vs FP (%, log beyond 10 %)")
    else:
        ax.set_xlabel("perplexity change vs FP (%)")
    ax.set_ylabel("features blurred or damaged (%)")
    ax.set_title("Perplexity misses feature damage")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _label_points(ax, s.dppl.to_numpy(), s.degraded.to_numpy(), list(s.variant))
    return fig


def bits_per_weight(summary: pd.DataFrame, reference_bits: float | None):
    """Which format keeps most features per bit: survived and damaged fractions, and the
    perplexity change, against storage bits per weight. Checkpoint files are drawn hollow, so a
    checkpoint on top of the built-in format it equals stays visible."""
    s = summary[summary.bits_per_weight.notna() & (summary.kind != "fp")].copy()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    panels = (("frac_survived", "features survived (%)"), ("frac_damaged", "features damaged (%)"),
              ("perplexity_change", "perplexity change vs FP (%)"))
    lo, hi = s.bits_per_weight.min(), s.bits_per_weight.max()
    pad = max(0.5, 0.08 * (hi - lo))
    show_reference = reference_bits is not None and lo - 2 * pad <= reference_bits <= hi + 2 * pad
    for ax, (col, ylabel) in zip(axes, panels):
        for family, part in s.groupby("family", sort=False):
            part = part.sort_values("bits_per_weight")
            color, marker, label = _style(family)
            hollow = family == "checkpoint"
            ax.plot(part.bits_per_weight, part[col] * 100, marker=marker, color=color, label=label,
                    ms=9 if hollow else 6, mfc="none" if hollow else color, mew=1.5,
                    lw=1 if family.startswith("rtn") else 0)
            err = _err(part, col, 100)
            if err is not None:
                ax.errorbar(part.bits_per_weight, part[col] * 100, yerr=err, fmt="none", ecolor=color, elinewidth=0.8,
                            capsize=2)
            near = part[part.vs_reference.astype(bool)]
            ax.scatter(near.bits_per_weight, near[col] * 100, s=170, facecolors="none", edgecolors="black",
                       lw=0.8, zorder=4, label="weights (nearly) the reference's own" if len(near) else None)
        if show_reference:
            ax.axvline(reference_bits, color="grey", ls=":", lw=1, label=f"reference, {reference_bits:.2f} bits stored")
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_xlabel("storage bits per weight (block linears)")
        ax.set_ylabel(ylabel)
        if col != "perplexity_change":
            ax.set_ylim(-1, max(5.0, 1.1 * float(s[col].max()) * 100))
        elif (s[col].abs() * 100).max() > 150:  # pruned variants can cost +300 %
            ax.set_yscale("symlog", linthresh=10)
            ax.set_ylabel(ylabel + ", log beyond 10 %")
        else:
            ax.margins(y=0.08)
    _label_points(axes[0], s.bits_per_weight.to_numpy(), (s.frac_survived * 100).to_numpy(), list(s.variant))
    handles, labels = axes[0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    fig.legend(unique.values(), unique.keys(), fontsize=7, loc="lower center", ncol=4, bbox_to_anchor=(0.5, -0.1))
    title = "Features kept per bit, by format"
    if reference_bits is not None and not show_reference:
        title += f" (reference stored at {reference_bits:.1f} bits per weight)"
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def r_histogram(tables: dict[str, pd.DataFrame], families: dict[str, str]):
    """Small multiples: one panel per family, its variants' r distributions in distinct colours."""
    groups: dict[str, list[str]] = {}
    for name in tables:
        groups.setdefault(families.get(name, "other"), []).append(name)
    n = len(groups)
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), sharex=True, squeeze=False)
    bins = np.linspace(-0.2, 1, 49)
    palette = plt.get_cmap("tab10").colors
    for ax, (family, names) in zip(axes.flat, groups.items()):
        for i, name in enumerate(names):
            t = tables[name]
            r = t.loc[t.status != "inactive", "r"].fillna(0).clip(-0.2, 1)
            ax.hist(r, bins=bins, histtype="step", label=name, lw=1.2, color=palette[i % len(palette)])
        ax.set_yscale("log")
        ax.set_title(_style(family)[2], fontsize=9)
        ax.legend(fontsize=6, loc="upper left")
        ax.set_xlabel("Pearson r between FP and variant codes", fontsize=8)
        ax.set_ylabel("FP-active features", fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle("Per-feature correlation with FP")
    fig.tight_layout()
    return fig


def predictor_auc(predictions: dict[str, dict]):
    """Heatmap: variants x predictors, the AUC in each cell. Cells whose variant has fewer than
    MIN_CLASS features in a class are hatched and greyed: too few to trust."""
    names = [v for v, p in predictions.items() if p.get("marginal_auc")]
    if not names:
        return _empty("predictability")
    predictors = list(predictions[names[0]]["predictors"])
    columns = predictors + ["logistic regression (CV)"]
    values = np.array([[predictions[n]["marginal_auc"].get(p) or np.nan for p in predictors]
                       + [predictions[n].get("auc") or np.nan] for n in names], dtype=float)
    cv_ci = {n: (predictions[n].get("auc_lo"), predictions[n].get("auc_hi")) for n in names}
    few = np.array([min(predictions[n]["n_survived"], predictions[n]["n_not_survived"]) < MIN_CLASS for n in names])
    fig, ax = plt.subplots(figsize=(1.1 * len(columns) + 4, 0.32 * len(names) + 1.8))
    shown = np.where(few[:, None], np.nan, values)
    im = ax.imshow(shown, cmap="viridis", vmin=0.5, vmax=1.0, aspect="auto")
    for i, n in enumerate(names):
        for j in range(len(columns)):
            v = values[i, j]
            text = "n/a" if np.isnan(v) else f"{v:.2f}"
            lo, hi = cv_ci[n] if j == len(columns) - 1 else (None, None)
            if lo is not None and hi is not None and not np.isnan(v):
                text += f" [{lo:.2f}, {hi:.2f}]"
            if few[i]:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="#eeeeee", hatch="///",
                                           edgecolor="#bbbbbb", lw=0))
                ax.text(j, i, text, ha="center", va="center", fontsize=6, color="#888888", style="italic")
            else:
                ax.text(j, i, text, ha="center", va="center", fontsize=6,
                        color="white" if not np.isnan(v) and v < 0.8 else "black")
    ylabels = [f"{n}  ({predictions[n]['n_not_survived']} not survived)" for n in names]
    ax.set_yticks(range(len(names)), ylabels, fontsize=7)
    ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right", fontsize=7)
    fig.colorbar(im, ax=ax, label="ROC AUC for predicting survival (0.5 = chance)", shrink=0.8)
    ax.set_title(f"Which FP statistics predict survival (hatched: < {MIN_CLASS} features in a class)", fontsize=9)
    return fig


def overlap_plot(overlaps: dict[str, dict]):
    fig, ax = plt.subplots(figsize=(6, 4))
    names = list(overlaps)
    x = np.arange(len(names))
    jac = pd.DataFrame([{k: overlaps[n].get(k, np.nan) for k in ("jaccard", "jaccard_lo", "jaccard_hi")} for n in names])
    ax.bar(x - 0.2, jac.jaccard, 0.4, label="Jaccard (not-survived sets; 95 % interval)", color="#264653",
           yerr=_err(jac, "jaccard"), ecolor="black", capsize=3, error_kw={"elinewidth": 0.9})
    ax.bar(x + 0.2, [overlaps[n]["spearman"] for n in names], 0.4, label="Spearman (damage 1-r)", color="#e9c46a")
    for i, n in enumerate(names):
        ax.annotate(f"s={overlaps[n]['matched_sparsity']:.2f}", (i, 0.02), ha="center", fontsize=7)
        union = overlaps[n]["n_not_survived_quantized"] + overlaps[n]["n_not_survived_pruned"]
        if union < MIN_CLASS:
            ax.annotate(f"only {union}\nnot survived", (i - 0.2, 0.1), ha="center", fontsize=6, color="grey")
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.05)
    ax.set_title("Quantization vs matched-perplexity pruning")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def causal_plot(tables: dict[str, pd.DataFrame], survived_r: float):
    """Small multiples, one per variant: geometric r (x) against causal r (y) of the sampled
    features. Lower right: survives geometrically, not causally."""
    n = len(tables)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n + 0.6, 3.6), squeeze=False, sharey=True)
    for ax, (name, t) in zip(axes[0], tables.items()):
        x = t.geometric_r.fillna(-0.2).clip(-0.2, 1).to_numpy()
        y = t.causal_r.fillna(-0.2).clip(-0.2, 1).to_numpy()
        odd = (t.geometric_status == "survived").to_numpy() & (y < survived_r)
        ax.scatter(x[~odd], y[~odd], s=16, color="#264653", label="agree or not survived")
        ax.scatter(x[odd], y[odd], s=22, color="#e76f51", marker="D", label="geometric yes, causal no")
        ax.axvline(survived_r, color="grey", lw=0.6, ls=":")
        ax.axhline(survived_r, color="grey", lw=0.6, ls=":")
        ax.set_xlim(-0.25, 1.05)
        ax.set_ylim(-0.25, 1.05)
        ax.set_title(f"{name}: {int(odd.sum())} of {int((t.geometric_status == 'survived').sum())} geometric survivors lose it",
                     fontsize=9)
        ax.set_xlabel("geometric r (codes, FP vs variant)", fontsize=8)
    axes[0][0].set_ylabel("causal r (ablation effects, FP vs variant)", fontsize=8)
    axes[0][-1].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"Does a feature still do the same thing? ({len(next(iter(tables.values())))} sampled features)")
    fig.tight_layout()
    return fig


def _empty(title: str):
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.text(0.5, 0.5, f"{title}: nothing to show with this config", ha="center", va="center")
    ax.axis("off")
    return fig


def methods_plot(summary: pd.DataFrame):
    """The method comparison: not-survived share and perplexity change against bits per weight
    for every quantizer, and the pruning methods at the sparsity most of them share."""
    t = method_table(summary)
    if "method" not in summary or t.empty:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.text(0.5, 0.5, "no variants to compare", ha="center", va="center")
        ax.axis("off")
        return fig
    q, p = t[t.section == "quantization"], t[t.section == "sparsity"]
    if not p.empty:  # equal sparsity: the level most pruning methods share
        shared = p.at_sparsity.round(2).value_counts().idxmax()
        p = p[p.at_sparsity.round(2) == shared]
    fig, axes = plt.subplots(1, 3, figsize=(18, 6), gridspec_kw={"width_ratios": [1.25, 1.25, 0.8]})
    for ax, col, scale, ylabel in ((axes[0], "frac_survived", 100, "features not surviving (%)"),
                                   (axes[1], "perplexity_change", 100, "perplexity change vs FP (%)")):
        for g, part in q.groupby("group", sort=False):
            y = (1 - part.frac_survived if col == "frac_survived" else part[col]) * scale
            err = _err(part, col, scale, flip=col == "frac_survived")
            ax.errorbar(part.bits_per_weight, y, yerr=err, fmt="o", color=GROUPS.get(g, "#555555"), ms=5,
                        elinewidth=0.8, capsize=2, label=GROUP_LABELS.get(g, g), zorder=3)
        ys = (1 - q.frac_survived if col == "frac_survived" else q[col]) * scale
        ax.set_xlabel("bits per weight (block linears)")
        ax.set_ylabel(ylabel + " (bars: 95 % intervals)")
        ax.margins(x=0.12, y=0.1)
        if col == "perplexity_change":
            ax.axhline(0, color="grey", lw=0.5)
            if ys.abs().max() > 50:
                ax.set_yscale("symlog", linthresh=10)
                ax.set_ylim(-1, float(ys.max()) * 2.5)
        _label_points(ax, q.bits_per_weight.to_numpy(float), ys.to_numpy(float), [short_label(m) for m in q.method],
                      fontsize=6)
    axes[0].set_title("Quantizers at equal bits per weight: feature damage")
    axes[1].set_title("... and what perplexity says")
    axes[0].legend(fontsize=7, loc="upper right")

    ax = axes[2]
    if p.empty:
        ax.text(0.5, 0.5, "no pruning variants", ha="center", va="center", transform=ax.transAxes)
        ax.axis("off")
    else:
        p = p.sort_values(["at_sparsity", "method"])
        x = np.arange(len(p))
        y = 100 * (1 - p.frac_survived)
        bars = ax.bar(x, y, color=[GROUPS.get(g, "#555555") for g in p.group],
                      yerr=_err(p, "frac_survived", 100, flip=True), capsize=3, ecolor="black", error_kw={"elinewidth": 0.8})
        for bar, method in zip(bars, p.method):  # one tool, two structures: hatch the structured one
            if "2of4" in method:
                bar.set_hatch("//")
                bar.set_edgecolor("white")
        for xi, yi, dppl in zip(x, y, p.perplexity_change):
            ax.annotate(f"ppl {100 * dppl:+.0f} %", (xi, yi), xytext=(0, 8), textcoords="offset points",
                        ha="center", fontsize=7)
        ax.set_xticks(x, [short_label(m).replace(" 0.50", "") for m in p.method], fontsize=8, rotation=30, ha="right")
        ax.set_ylabel("features not surviving (%, bars: 95 % intervals)")
        ax.set_ylim(0, min(100, max(10.0, float(y.max()) * 1.25)))
        ax.set_title(f"Pruning methods at {100 * shared:.0f} % sparsity")
    fig.tight_layout()
    return fig


def write_figures(summary_csv, hook: str, variants, survival_paths, predict_paths, quantized, overlap_paths, outputs,
                  tolerance: float | None = None, causal_paths: dict | None = None, survived_r: float = 0.9) -> None:
    """The `figures` rule: every figure in FIGURES for one hook, as each of the requested output
    files (the summary's rows of that hook; the tables are that hook's)."""
    summary = main_corpus(pd.read_csv(verify_file(summary_csv)))
    summary = summary[summary.hook == hook].reset_index(drop=True)
    summary["vs_reference"] = summary.vs_reference.fillna("")
    fp = summary[summary.variant == "fp"].bits_per_weight
    reference_bits = float(fp.iloc[0]) if len(fp) and pd.notna(fp.iloc[0]) else None
    families = dict(zip(summary.variant, summary.family))
    tables = {v: read_table(p, columns=["r", "status"]).to_pandas() for v, p in zip(variants, survival_paths) if v != "fp"}
    preds = {v: read_json(p) for v, p in zip(variants, predict_paths) if v != "fp"}
    overlaps = {q: read_json(p) for q, p in zip(quantized, overlap_paths)}
    builders = {
        "survival_by_bits": lambda: survival_by_bits(summary) if (summary.kind == "rtn").any() else _empty("survival"),
        "perplexity_vs_damage": lambda: perplexity_vs_damage(summary, tolerance),
        "bits_per_weight": lambda: (bits_per_weight(summary, reference_bits)
                                    if summary.bits_per_weight.notna().sum() > 1 else _empty("bits per weight")),
        "r_histogram": lambda: r_histogram(tables, families) if tables else _empty("r histogram"),
        "predictor_auc": lambda: predictor_auc(preds) if preds else _empty("predictability"),
        "overlap": lambda: overlap_plot(overlaps) if overlaps else _empty("overlap"),
        "causal": lambda: (causal_plot({v: read_table(p).to_pandas() for v, p in causal_paths.items()}, survived_r)
                           if causal_paths else _empty("causal fidelity")),
        "methods": lambda: methods_plot(summary),
    }
    for name in FIGURES:
        paths = [str(p) for p in outputs if Path(p).stem == name]
        fig = builders[name]()
        fig.text(0.995, 0.005, f"SAE at {hook}", ha="right", va="bottom", fontsize=7, color="#666666")
        _save(fig, paths)


def survival_by_depth(summary: pd.DataFrame):
    """Survived and damaged fractions against the hook's layer, one line per variant with its
    95 % interval as a band; one column of panels per family of variants (small multiples), so
    no panel holds more lines than a family has variants."""
    s = summary[summary.variant != "fp"]
    families = list(dict.fromkeys(s.family))
    if s.empty:
        return _empty("survival by depth")
    fig, axes = plt.subplots(2, len(families), figsize=(3.3 * len(families) + 0.6, 6.6), sharex=True, sharey="row",
                             squeeze=False)
    layers = sorted(s.layer.unique())
    for j, family in enumerate(families):
        part = s[s.family == family]
        names = list(dict.fromkeys(part.variant))
        palette = plt.get_cmap("tab10" if len(names) <= 10 else "tab20").colors
        for i, (col, label) in enumerate((("frac_survived", "features survived (%)"),
                                          ("frac_damaged", "features damaged (%)"))):
            ax = axes[i][j]
            for k, v in enumerate(names):
                r = part[part.variant == v].sort_values("layer")
                color = palette[k % len(palette)]
                ax.plot(r.layer, 100 * r[col], marker="o", ms=4, lw=1.2, color=color, label=v)
                if f"{col}_lo" in r and r[f"{col}_lo"].notna().all() and len(r) > 1:
                    ax.fill_between(r.layer, 100 * r[f"{col}_lo"], 100 * r[f"{col}_hi"], color=color, alpha=0.15, lw=0)
                elif f"{col}_lo" in r and r[f"{col}_lo"].notna().all():
                    ax.errorbar(r.layer, 100 * r[col], yerr=_err(r, col, 100), fmt="none", ecolor=color, capsize=2)
            if j == 0:
                ax.set_ylabel(label + "\n(bands: 95 % intervals)")
            if i == 1:
                ax.set_xlabel("layer of the hook")
            ax.set_xticks(layers)
            ax.grid(alpha=0.3, lw=0.5)
        axes[0][j].set_title(_style(family)[2], fontsize=9)
        axes[0][j].legend(fontsize=6, loc="lower left")
    axes[0][0].set_ylim(-2, 102)
    fig.suptitle("Where each format starts to lose features: survival against depth")
    fig.tight_layout()
    return fig


def write_depth_figure(summary_csv, outputs) -> None:
    """The `depth_figure` rule: survival against depth, across the model's hooks."""
    summary = main_corpus(pd.read_csv(verify_file(summary_csv)))
    _save(survival_by_depth(summary), [str(p) for p in outputs if Path(p).stem == DEPTH_FIGURE])
