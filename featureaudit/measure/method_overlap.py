"""The comparison people quote: round-to-nearest against the calibrated tools, at equal bits per
weight (RTN, gguf-py, llama.cpp presets, GPTQ, AWQ, SmoothQuant, FP8) and at equal sparsity
(magnitude, Wanda, SparseGPT), and whether two methods damage the same features.

  pair_overlaps     every pair of methods: Jaccard of their not-survived sets (bootstrap
                    interval from the same draws) and Spearman of damage 1 - r

The table and the figure are method_groups.py's (the `figures` rule draws the figure without
importing this module's statistics). `write_method_overlap` is the body of the
`method_overlap` rule.
"""

from __future__ import annotations

import itertools

import pandas as pd

from ..config import UncertaintyConfig
from ..io import read_table, write_csv
from .overlap import overlap, replicate_jaccard
from .uncertainty import interval, load_replicates


def pair_overlaps(variants, methods: dict, survival_paths, replicate_paths, uncertainty: UncertaintyConfig
                  ) -> pd.DataFrame:
    tables = {v: read_table(p).to_pandas() for v, p in zip(variants, survival_paths)}
    status = {v: load_replicates(p)["status"] for v, p in zip(variants, replicate_paths)}
    rows = []
    for a, b in itertools.combinations(variants, 2):
        o = overlap(tables[a], tables[b])
        lo, hi = interval(replicate_jaccard(status[a], status[b]), uncertainty.level, o["jaccard"], (0, 1))
        rows.append({"variant_a": a, "variant_b": b, "method_a": methods.get(a, a), "method_b": methods.get(b, b),
                     "jaccard": o["jaccard"], "jaccard_lo": lo, "jaccard_hi": hi, "spearman": o["spearman"],
                     "n_active": o["n_active"], "n_not_survived_a": o["n_not_survived_quantized"],
                     "n_not_survived_b": o["n_not_survived_pruned"], "n_not_survived_both": o["n_not_survived_both"]})
    return pd.DataFrame(rows)


def compared_variants(variants) -> list[str]:
    """Every variant but fp and the matched-pruning ones (the overlap rule pairs those)."""
    return [v for v in variants if v != "fp" and not v.startswith("match-")]


def write_method_overlap(variants, methods: dict, survival_paths, replicate_paths, out_path,
                         uncertainty: UncertaintyConfig) -> None:
    keep = [i for i, v in enumerate(variants) if v in set(compared_variants(variants))]
    df = pair_overlaps([variants[i] for i in keep], methods, [survival_paths[i] for i in keep],
                       [replicate_paths[i] for i in keep], uncertainty)
    write_csv(df, out_path)
