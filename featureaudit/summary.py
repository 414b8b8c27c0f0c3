"""The summary table: one row per variant, what a person (or the gate) reads first.
`write_summary` is the body of the `summary` rule."""

from __future__ import annotations

import pandas as pd

from .io import atomic_path, read_json, read_table
from .progress import log
from .survival import fractions
from .variants import parse_variant

COLUMNS = ("variant", "kind", "family", "bits", "bits_per_weight", "sparsity", "weight_error", "vs_reference",
           "reused_from", "n_active", "frac_survived", "frac_blurred", "frac_damaged", "n_born", "perplexity", "perplexity_sliding",
           "perplexity_change", "kl_to_fp", "top1_agreement", "auc")

#: Relative weight error below which a variant is the reference again (float rounding only), and
#: below which it is nearly so (well under what INT8 RTN does to real weights, ~0.01): a
#: quantized reference re-quantized to a grid that contains its own (the embedded Q4_1 model
#: re-quantized to Q4_1) changes nothing, and says nothing about the format on FP16 weights.
IDENTICAL, NEAR_IDENTICAL = 1e-6, 2e-3


def relation_to_reference(weight_error: float | None) -> str:
    if weight_error is None:
        return ""
    if weight_error <= IDENTICAL:
        return "identical"
    return "near-identical" if weight_error <= NEAR_IDENTICAL else ""


def build_summary(variants, survival_paths, metrics_paths, predict_paths) -> pd.DataFrame:
    rows = []
    for v, sp, mp, pp in zip(variants, survival_paths, metrics_paths, predict_paths):
        spec = parse_variant(v)
        met, pred = read_json(mp), read_json(pp)
        kind = "magnitude" if spec.kind == "match" else spec.kind
        row = {"variant": v, "kind": kind, "family": "magnitude" if spec.kind == "match" else spec.family,
               "bits": spec.bits, "bits_per_weight": met.get("bits_per_weight"),
               "sparsity": met.get("matched_sparsity") if spec.kind == "match" else spec.sparsity,
               "weight_error": met.get("weight_error"),
               "vs_reference": "" if v == "fp" else relation_to_reference(met.get("weight_error")),
               # computed once: a variant with the reference's weights has fp's outputs
               "reused_from": met.get("same_as", "")}
        row.update(fractions(read_table(sp, columns=["status", "born"]).to_pandas()))
        row.update({k: met[k] for k in ("perplexity", "kl_to_fp", "top1_agreement")})
        row["perplexity_sliding"] = met.get("perplexity_sliding")  # only with evaluation.sliding
        row["auc"] = pred.get("auc")
        rows.append(row)
    df = pd.DataFrame(rows)
    fp = df.loc[df.variant == "fp", "perplexity"]
    df["perplexity_change"] = df.perplexity / float(fp.iloc[0]) - 1 if len(fp) else float("nan")
    return df[list(COLUMNS)]


def write_summary(variants, survival_paths, metrics_paths, predict_paths, out_path) -> None:
    """The `summary` rule: summary.csv, and the table in the log."""
    df = build_summary(variants, survival_paths, metrics_paths, predict_paths)
    with atomic_path(out_path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    log("summary:\n" + df.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
