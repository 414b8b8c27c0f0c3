"""Which tool made a variant, as the method comparison groups and draws them (pure pandas:
the `figures` rule imports it).

  method_table   one row per variant and method from summary.csv, in two sections
                 (quantization by bits per weight, sparsity by the sparsity reached)
  methods_plot   the figure: not-survived share and perplexity change against bits per
                 weight, and the pruning methods at the sparsity they share
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: method group -> colour; the groups a method string starts with, in matching order. No two
#: groups share a colour (12 groups: beyond matplotlib's 10-colour cycle, so chosen by hand).
GROUPS = {
    "RTN": "#264653", "gguf-py": "#d4a017", "llama.cpp": "#2a9d8f", "bitsandbytes": "#7b2cbf",
    "torchao": "#d6336c", "llm-compressor gptq": "#0077b6", "llm-compressor awq": "#f77f00",
    "llm-compressor smoothquant": "#6a994e", "llm-compressor fp8": "#9d0208", "llm-compressor sparsegpt": "#5e548e",
    "llm-compressor wanda": "#80ed99", "magnitude": "#e76f51",
}
GROUP_LABELS = {"llm-compressor gptq": "GPTQ", "llm-compressor awq": "AWQ",
                "llm-compressor smoothquant": "SmoothQuant+GPTQ W8A8", "llm-compressor fp8": "FP8 dynamic",
                "llm-compressor sparsegpt": "SparseGPT", "llm-compressor wanda": "Wanda"}
PRUNING = ("magnitude", "llm-compressor sparsegpt", "llm-compressor wanda")


SHORT = {"llm-compressor gptq-w4a16": "GPTQ W4A16", "llm-compressor awq-w4a16": "AWQ W4A16",
         "llm-compressor smoothquant-gptq-w8a8": "SQ+GPTQ W8A8", "llm-compressor fp8-dynamic": "FP8 dyn",
         "llm-compressor sparsegpt-50": "SparseGPT 50 %", "llm-compressor sparsegpt-2of4": "SparseGPT 2:4",
         "llm-compressor wanda-50": "Wanda 50 %", "bitsandbytes NF4": "NF4", "bitsandbytes FP4": "bnb FP4"}


def short_label(method: str) -> str:
    """A point's label in the figure (the colour already says the tool)."""
    if method in SHORT:
        return SHORT[method]
    for prefix, short in (("llama.cpp ", ""), ("gguf-py ", "gguf "), ("torchao ", "ao ")):
        if method.startswith(prefix):
            return short + method[len(prefix):]
    return method


def method_group(method: str) -> str:
    for g in GROUPS:
        if method.startswith(g):
            return g
    return "other"


def _sparsity(row) -> float | None:
    """The sparsity a pruning method reaches (magnitude's from the summary, the recipes' 50 %)."""
    g = method_group(row["method"])
    if g == "magnitude":
        return row["sparsity"]
    if g in ("llm-compressor sparsegpt", "llm-compressor wanda"):
        return 0.5
    return None


def method_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The comparison rows (no fp, no matched pruning): quantizers by bits per weight, then
    pruning methods by sparsity."""
    s = summary[(summary.variant != "fp") & ~summary.variant.str.startswith("match-")].copy()
    s["group"] = s.method.map(method_group)
    s["section"] = np.where(s.group.isin(PRUNING), "sparsity", "quantization")
    s["at_sparsity"] = [_sparsity(r) for r in s.to_dict("records")]
    s["not_survived"] = 1 - s.frac_survived
    s = s.sort_values(["section", "bits_per_weight", "at_sparsity", "method"], ascending=[True, False, True, True])
    return s


def methods_plot(summary: pd.DataFrame):
    import matplotlib.pyplot as plt

    from .plots import _err, _label_points  # noqa: PLC0415 (plots imports this module)

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
