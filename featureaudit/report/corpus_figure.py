"""The figure of the audit corpora (results/<model>/figures/survival_by_corpus): per variant, its
survived and damaged fractions on each corpus side by side with their 95 % intervals (paired: a
line joins one variant's corpora), and the domain gap, the largest minus the smallest survived
fraction across corpora. One column of panels per hook, one y axis per row."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..figure_names import CORPUS_FIGURE
from ..integrity import verify_file
from .figures import _empty, _err, _save

#: One colour and marker per corpus, none repeated (the main corpus first).
CORPUS_STYLES = (("#264653", "o"), ("#e76f51", "s"), ("#2a9d8f", "^"), ("#7b2cbf", "D"), ("#d4a017", "v"),
                 ("#0096c7", "P"))


def domain_gap(summary: pd.DataFrame) -> pd.DataFrame:
    """Per hook and variant audited on two corpora or more: the largest minus the smallest
    survived fraction across them, and which corpora those are."""
    rows = []
    for (hook, v), g in summary[summary.variant != "fp"].groupby(["hook", "variant"], sort=False):
        if g.corpus.nunique() < 2:
            continue
        hi, lo = g.loc[g.frac_survived.idxmax()], g.loc[g.frac_survived.idxmin()]
        rows.append({"hook": hook, "variant": v, "gap": hi.frac_survived - lo.frac_survived,
                     "highest": hi.corpus, "lowest": lo.corpus})
    return pd.DataFrame(rows, columns=["hook", "variant", "gap", "highest", "lowest"])


def survival_by_corpus(summary: pd.DataFrame):
    s = summary[summary.variant != "fp"]
    corpora = list(dict.fromkeys(s.corpus))
    # the variants audited on two corpora or more, in the summary's order
    counts = s.groupby("variant").corpus.nunique()
    names = [v for v in dict.fromkeys(s.variant) if counts[v] > 1]
    if not names:
        return _empty("survival by corpus (no variant is audited on two corpora)")
    hooks = list(dict.fromkeys(s.hook))
    gaps = domain_gap(s[s.variant.isin(names)])
    width = max(4.0, 0.45 * len(names) + 1.5)
    fig, axes = plt.subplots(3, len(hooks), figsize=(width * len(hooks), 8.6), sharey="row", squeeze=False,
                             gridspec_kw={"height_ratios": [3, 3, 2]})
    x = np.arange(len(names))
    offsets = (np.arange(len(corpora)) - (len(corpora) - 1) / 2) * 0.22
    for j, hook in enumerate(hooks):
        here = s[(s.hook == hook) & s.variant.isin(names)]
        for i, (col, label) in enumerate((("frac_survived", "features survived (%)"),
                                          ("frac_damaged", "features damaged (%)"))):
            ax = axes[i][j]
            table = {c: here[here.corpus == c].set_index("variant").reindex(names) for c in corpora}
            for k in range(len(names)):  # the pairing: one variant's corpora joined (those it has)
                ys = np.array([100 * table[c][col].iloc[k] for c in corpora], dtype=float)
                ok = np.isfinite(ys)
                ax.plot(x[k] + offsets[ok], ys[ok], color="#bbbbbb", lw=0.8, zorder=1)
            for c, off, (color, marker) in zip(corpora, offsets, CORPUS_STYLES):
                t = table[c]
                ax.errorbar(x + off, 100 * t[col], yerr=_err(t, col, 100), fmt=marker, ms=4, color=color,
                            ecolor=color, elinewidth=0.8, capsize=1.5, label=c, zorder=2)
            ax.set_xticks(x, [])
            ax.set_xlim(-0.6, len(names) - 0.4)
            ax.grid(alpha=0.3, lw=0.5, axis="y")
            if j == 0:
                ax.set_ylabel(label + "\n(bars: 95 % intervals)")
        axes[0][j].set_title(hook, fontsize=9)
        g = gaps[gaps.hook == hook].set_index("variant").reindex(names)
        ax = axes[2][j]
        ax.bar(x, 100 * g.gap.to_numpy(float), color="#8d99ae", width=0.6)
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.set_xticks(x, names, rotation=60, ha="right", fontsize=7)
        ax.grid(alpha=0.3, lw=0.5, axis="y")
        if j == 0:
            ax.set_ylabel("domain gap\n(largest - smallest\nsurvived, points)")
    axes[0][0].set_ylim(-2, 102)
    axes[0][0].legend(title="corpus", fontsize=7, title_fontsize=7, loc="lower left")
    fig.suptitle("The same variants on other text: survival per audit corpus")
    fig.tight_layout()
    return fig


def write_corpus_figure(summary_csv, outputs) -> None:
    """The `corpus_figure` rule: survival per corpus, across the model's hooks."""
    summary = pd.read_csv(verify_file(summary_csv))
    _save(survival_by_corpus(summary), [str(p) for p in outputs if Path(p).stem == CORPUS_FIGURE])
