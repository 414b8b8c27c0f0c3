"""What the repair shows: the comparison table (every llama.cpp checkpoint, mixes and presets,
per hook on the main corpus: survived and damaged with intervals, perplexity change, KL, bits
per weight), the scan heatmaps (layer x part, one panel per hook and one for KL, a row per
target type) and the Pareto view (survived fraction and KL against bits per weight, one marker
per method). `write_repair_report` is the body of the `repair_report` rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_path
from ..progress import log
from ..repair.scan import write_csv
from .corpus_rows import main_corpus


COLUMNS = ["variant", "method", "hook", "layer", "bits_per_weight", "n_active", "frac_survived", "frac_survived_lo",
           "frac_survived_hi", "frac_damaged", "frac_damaged_lo", "frac_damaged_hi", "perplexity_change",
           "perplexity_change_lo", "perplexity_change_hi", "kl_to_fp", "top1_agreement", "verdict"]


def comparison(summary: pd.DataFrame, methods: dict) -> pd.DataFrame:
    """The summary's rows of the compared variants (main corpus), lowest bits first."""
    rows = main_corpus(summary)
    rows = rows[rows.variant.isin(list(methods))].copy()
    rows["method"] = rows.variant.map(methods)
    keep = [c for c in COLUMNS if c in rows.columns]
    return rows[keep].sort_values(["layer", "bits_per_weight", "method"], kind="stable").reset_index(drop=True)


def _save(fig, out_png, out_svg) -> None:
    for path in (out_png, out_svg):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=Path(path).suffix[1:], dpi=110, bbox_inches="tight")


def pareto_figure(table: pd.DataFrame, out_png, out_svg) -> None:
    """Survived fraction (a panel per hook, 95 % intervals) and KL against bits per weight."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hooks = list(dict.fromkeys(table.sort_values("layer").hook))
    methods = list(dict.fromkeys(table.sort_values("bits_per_weight").method))
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, max(len(methods), 2)))
    markers = "osD^v<>phH*Xd8P"
    style = {m: (colours[i], markers[i % len(markers)]) for i, m in enumerate(methods)}
    fig, axes = plt.subplots(1, len(hooks) + 1, figsize=(3.6 * (len(hooks) + 1), 3.8), squeeze=False)
    for ax, hook in zip(axes[0], hooks):
        rows = table[table.hook == hook]
        for _, r in rows.iterrows():
            c, mk = style[r.method]
            err = np.array([[r.frac_survived - r.frac_survived_lo], [r.frac_survived_hi - r.frac_survived]])
            ax.errorbar(r.bits_per_weight, r.frac_survived, yerr=np.clip(err, 0, None), fmt=mk, color=c, capsize=2,
                        markersize=6, label=r.method)
        ax.set_title(hook, fontsize=9)
        ax.set_xlabel("bits per weight (block matrices)")
        ax.set_ylabel("survived fraction (audit tokens)")
        ax.grid(alpha=0.3)
    ax = axes[0][-1]
    first = table.drop_duplicates("variant")
    for _, r in first.iterrows():
        c, mk = style[r.method]
        ax.plot(r.bits_per_weight, r.kl_to_fp, mk, color=c, markersize=6)
    ax.set_yscale("log")
    ax.set_title("KL to FP (held-out tokens)", fontsize=9)
    ax.set_xlabel("bits per weight (block matrices)")
    ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    fig.legend(list(seen.values()), list(seen), loc="lower center", ncol=min(4, len(seen)), fontsize=8,
               bbox_to_anchor=(0.5, -0.02 - 0.045 * ((len(seen) + 3) // 4)), frameon=False)
    fig.suptitle("Per-tensor mixes against llama.cpp presets: features kept and KL at their bits", fontsize=10)
    _save(fig, out_png, out_svg)
    plt.close(fig)


def heatmap_figure(scans: dict, out_png, out_svg) -> None:
    """Per target type (a row): survived fraction lost at each hook and the KL, layer x part."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = list(scans)
    hooks = list(dict.fromkeys(next(iter(scans.values())).sort_values("hook_layer").hook)) if scans else []
    ncol = len(hooks) + 1
    fig, axes = plt.subplots(max(len(targets), 1), ncol, figsize=(2.6 * ncol, 4.6 * max(len(targets), 1)),
                             squeeze=False)
    for row, target in enumerate(targets):
        scan = scans[target]
        layers = sorted(scan.layer.unique())
        parts = ["attn", "mlp"]
        panels = [(h, scan[scan.hook == h].assign(value=lambda d: -d.delta_survived), "survived lost") for h in hooks]
        panels.append(("KL to FP", scan.drop_duplicates("group").assign(value=lambda d: d.kl), "KL"))
        for col, (title, rows, what) in enumerate(panels):
            grid = np.full((len(layers), len(parts)), np.nan)
            for _, r in rows.iterrows():
                grid[layers.index(r.layer), parts.index(r.part)] = r.value
            if "computed" in rows and what != "KL":  # before the hook: cannot reach it (not drawn)
                for _, r in rows[~rows.computed.astype(bool)].iterrows():
                    grid[layers.index(r.layer), parts.index(r.part)] = np.nan
            ax = axes[row][col]
            im = ax.imshow(grid, aspect="auto", cmap="magma_r", interpolation="nearest")
            ax.set_xticks(range(len(parts)), parts)
            step = max(1, len(layers) // 10)
            ax.set_yticks(range(0, len(layers), step), [str(layers[i]) for i in range(0, len(layers), step)])
            ax.set_ylabel("block" if col == 0 else "")
            ax.set_title(f"{target}: {title}\n({what}; blank: after the hook)" if what != "KL" else f"{target}: {title}",
                         fontsize=8)
            fig.colorbar(im, ax=ax, fraction=0.08)
    fig.suptitle("Sensitivity scan: one group at a time at the target type, the rest at the reference", fontsize=10)
    fig.tight_layout()
    _save(fig, out_png, out_svg)
    plt.close(fig)


def additivity_summary(additivity: pd.DataFrame) -> pd.DataFrame:
    """Per target and hook: how well single-group effects predict several groups together
    (Spearman rank correlation across the subsets, largest error), for the survived fraction
    (summed losses; and, where recorded, losses striking features independently) and the KL."""
    from scipy.stats import spearmanr

    rows = []
    for (target, hook), d in additivity.groupby(["target", "hook"], sort=False):
        row = {"target": target, "hook": hook, "n_subsets": len(d)}
        pairs = [("survived", "predicted_survived", "measured_survived"), ("kl", "predicted_kl", "measured_kl")]
        if "predicted_survived_independent" in d:
            pairs.insert(1, ("survived_independent", "predicted_survived_independent", "measured_survived"))
        for name, pred, meas in pairs:
            row[f"{name}_spearman"] = float(spearmanr(d[pred], d[meas]).statistic) if d[meas].nunique() > 1 else np.nan
            row[f"{name}_max_error"] = float((d[pred] - d[meas]).abs().max())
        rows.append(row)
    return pd.DataFrame(rows)


def write_repair_report(summary_path, scan_paths: list, record_paths: list, methods: dict, comparison_path,
                        additivity_path, figure_paths: list) -> None:
    summary = pd.read_csv(summary_path)
    table = comparison(summary, methods)
    records = {Path(p).stem: json.loads(Path(p).read_text()) for p in record_paths}
    table["budget"] = [records.get(v[len("ckpt-"):], {}).get("budget_bits", np.nan) for v in table.variant]
    table["groups_high"] = [len(records[v[len("ckpt-"):]]["high_groups"]) if v[len("ckpt-"):] in records else np.nan
                            for v in table.variant]
    write_csv(table, comparison_path)
    by_name = {Path(p).name: p for p in figure_paths}
    pareto_figure(table, by_name["repair_pareto.png"], by_name["repair_pareto.svg"])
    scans = {Path(p).parent.name: pd.read_csv(p) for p in scan_paths if Path(p).name == "scan.csv"}
    additivity = [pd.read_csv(p) for p in scan_paths if Path(p).name == "additivity.csv"]
    frame = additivity_summary(pd.concat(additivity, ignore_index=True)) if additivity else pd.DataFrame()
    write_csv(frame, additivity_path)
    heatmap_figure(scans, by_name["repair_scan.png"], by_name["repair_scan.svg"])
    log(f"repair comparison: {table.variant.nunique()} variants at {table.hook.nunique()} hooks")
