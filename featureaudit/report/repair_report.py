"""What the repair shows: the comparison table (every llama.cpp checkpoint, mixes and presets,
per hook on the main corpus: survived and damaged with intervals, perplexity change, KL, bits
per weight), the scan heatmaps (layer x part, one panel per hook and one for KL, a row per
target type) and the Pareto view (survived fraction and KL against bits per weight, one marker
per method). `write_repair_report` is the body of the `repair_report` rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..integrity import verify_file
from ..io import atomic_path, read_json, write_csv
from ..progress import log
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


def dodge(table: pd.DataFrame, width: float = 0.22) -> dict:
    """x position per method: its bits per weight, spread within a group of methods at about the
    same bits so that their markers and intervals do not cover each other."""
    first = table.drop_duplicates("method").sort_values(["bits_per_weight", "method"])
    x, cluster = {}, []
    for _, r in first.iterrows():
        if cluster and r.bits_per_weight - cluster[0][1] > 0.1:
            x.update(_spread(cluster, width))
            cluster = []
        cluster.append((r.method, r.bits_per_weight))
    x.update(_spread(cluster, width))
    return x


def _spread(cluster: list, width: float) -> dict:
    if len(cluster) == 1:
        return {cluster[0][0]: cluster[0][1]}
    centre = float(np.mean([b for _, b in cluster]))
    steps = np.linspace(-width / 2, width / 2, len(cluster))
    return {m: centre + d for (m, _), d in zip(cluster, steps)}


def pareto_figure(table: pd.DataFrame, out_png, out_svg) -> None:
    """Survived fraction (a panel per hook, 95 % intervals) and KL against bits per weight; methods
    at about the same bits are spread sideways (the axis label says so)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hooks = list(dict.fromkeys(table.sort_values("layer").hook))
    methods = list(dict.fromkeys(table.sort_values(["bits_per_weight", "method"]).method))
    palette = [plt.get_cmap("tab20")(i) for i in (0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19)]
    markers = "osD^v<>phH*XdP8"
    style = {m: (palette[i % len(palette)], markers[i % len(markers)]) for i, m in enumerate(methods)}
    x = dodge(table)
    fig, axes = plt.subplots(1, len(hooks) + 1, figsize=(4.2 * (len(hooks) + 1), 4.2), squeeze=False)
    for k, (ax, hook) in enumerate(zip(axes[0], hooks)):
        for _, r in table[table.hook == hook].iterrows():
            c, mk = style[r.method]
            err = np.array([[r.frac_survived - r.frac_survived_lo], [r.frac_survived_hi - r.frac_survived]])
            ax.errorbar(x[r.method], r.frac_survived, yerr=np.clip(err, 0, None), fmt=mk, color=c, capsize=2,
                        markersize=6, label=r.method)
        ax.set_title(f"survived fraction at layer {hook.split('.')[1]}", fontsize=9)
        if k == 0:
            ax.set_ylabel("survived fraction (audit tokens, 95 % CI)")
    ax = axes[0][-1]
    for _, r in table.drop_duplicates("variant").iterrows():
        c, mk = style[r.method]
        ax.plot(x[r.method], r.kl_to_fp, mk, color=c, markersize=6)
    ax.set_title("KL to FP (held-out tokens)", fontsize=9)
    for ax in axes[0]:
        ax.set_xlabel("bits per weight (block matrices;\nmethods at equal bits spread sideways)", fontsize=8)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    rows = (len(seen) + 3) // 4
    fig.legend(list(seen.values()), list(seen), loc="upper center", ncol=4, fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    fig.suptitle("Per-tensor mixes against llama.cpp presets: features kept and KL at their bits", fontsize=10)
    fig.tight_layout(w_pad=2.0)
    fig.subplots_adjust(bottom=0.16 + 0.0 * rows)
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
            fig.colorbar(im, ax=ax, fraction=0.08).set_label(
                "KL to FP" if what == "KL" else "survived fraction lost", fontsize=8)
    fig.suptitle("Sensitivity scan: one group at a time at the target type, the rest at the reference "
                 "(each panel its own scale)", fontsize=10)
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
    summary = pd.read_csv(verify_file(summary_path))
    table = comparison(summary, methods)
    records = {Path(p).stem: read_json(p) for p in record_paths}
    table["budget"] = [records.get(v[len("ckpt-"):], {}).get("budget_bits", np.nan) for v in table.variant]
    table["groups_high"] = [len(records[v[len("ckpt-"):]]["high_groups"]) if v[len("ckpt-"):] in records else np.nan
                            for v in table.variant]
    write_csv(table, comparison_path)
    by_name = {Path(p).name: p for p in figure_paths}
    pareto_figure(table, by_name["repair_pareto.png"], by_name["repair_pareto.svg"])
    scans = {Path(p).parent.name: pd.read_csv(verify_file(p)) for p in scan_paths if Path(p).name == "scan.csv"}
    additivity = [pd.read_csv(verify_file(p)) for p in scan_paths if Path(p).name == "additivity.csv"]
    frame = additivity_summary(pd.concat(additivity, ignore_index=True)) if additivity else pd.DataFrame()
    write_csv(frame, additivity_path)
    heatmap_figure(scans, by_name["repair_scan.png"], by_name["repair_scan.svg"])
    log(f"repair comparison: {table.variant.nunique()} variants at {table.hook.nunique()} hooks")
