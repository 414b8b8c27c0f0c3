"""The summary table: one row per variant, hook and corpus (long form: a model audited at three
depths on two corpora has six rows per variant, `hook`, `layer` and `corpus` saying which), what a
person (or the gate) reads first, with 95 % bootstrap intervals (`_lo`/`_hi` columns) and a
one-line verdict per row. The task metrics are the variant's on that corpus (the main corpus's
held-out tokens; a further corpus's audit tokens), the same on each hook's row. The main corpus's
rows come first. `write_summary` is the body of the `summary` rule."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..config import GateConfig, UncertaintyConfig
from ..hooks import parse_hook
from ..integrity import verify_file
from ..io import read_json, read_table, write_csv
from ..measure.survival import fractions, replicate_fractions
from ..measure.uncertainty import bootstrap_perplexity, interval, load_replicates
from ..progress import log
from ..variants import parse_variant

COLUMNS = ("variant", "hook", "layer", "corpus", "kind", "family", "method", "tensor_types", "bits", "bits_per_weight", "sparsity", "weight_error", "vs_reference",
           "reused_from", "n_active", "frac_survived", "frac_survived_lo", "frac_survived_hi",
           "frac_blurred", "frac_blurred_lo", "frac_blurred_hi", "frac_damaged", "frac_damaged_lo", "frac_damaged_hi",
           "n_born", "perplexity", "perplexity_se", "perplexity_lo", "perplexity_hi", "perplexity_sliding",
           "perplexity_change", "perplexity_change_lo", "perplexity_change_hi", "kl_to_fp", "top1_agreement",
           "auc", "auc_lo", "auc_hi", "jaccard", "jaccard_lo", "jaccard_hi",
           "splice_ce_score", "splice_kl_score", "splice_explained_variance", "splice_l0", "causal_features",
           "frac_causal_survived", "frac_geometric_not_causal", "frac_geometric_not_causal_lo",
           "frac_geometric_not_causal_hi", "frac_steering_transfers", "frac_steering_transfers_lo",
           "frac_steering_transfers_hi", "runtime_rel_error", "runtime_frac_survived_transformers",
           "runtime_frac_survived", "runtime_frac_damaged_transformers", "runtime_frac_damaged",
           "runtime_status_agreement", "masked_damage", "verdict")
CAUSAL = ("frac_causal_survived", "frac_geometric_not_causal", "frac_geometric_not_causal_lo",
          "frac_geometric_not_causal_hi", "frac_steering_transfers", "frac_steering_transfers_lo",
          "frac_steering_transfers_hi")

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


def interval_columns(replicates_path, measured: dict, metrics: dict, level_settings: UncertaintyConfig) -> dict:
    """Bootstrap intervals of the fractions (the survival rule's draws, around the measured
    fractions) and of perplexity (held-out sequences resampled, paired with FP's for the change)."""
    out = {}
    for name, values in replicate_fractions(load_replicates(replicates_path)["status"]).items():
        out[f"frac_{name}_lo"], out[f"frac_{name}_hi"] = interval(values, level_settings.level,
                                                                  measured[f"frac_{name}"], (0, 1))
    if "per_sequence" in metrics:
        out.update(bootstrap_perplexity(metrics["per_sequence"], metrics["tokens_per_sequence"], level_settings))
    return out


def verdict(row: dict, gate: GateConfig) -> tuple[bool, str]:
    """(masked_damage, one line): does perplexity call the variant fine while its features fail
    the gate's thresholds? Intervals that straddle a threshold are said so."""
    if row["variant"] == "fp":
        return False, "reference"
    pct = lambda x: f"{100 * x:.1f} %"
    change = row["perplexity_change"]
    ppl_ok = abs(change) <= gate.perplexity_tolerance
    surv, dmg = row["frac_survived"], row["frac_damaged"]
    feats_ok = surv >= gate.min_survived and dmg <= gate.max_damaged
    masked = bool(ppl_ok and not feats_ok)
    lo, hi = row.get("frac_survived_lo", math.nan), row.get("frac_survived_hi", math.nan)
    ci = f" [{pct(lo)}, {pct(hi)}]" if math.isfinite(lo) else ""
    feats = f"{pct(surv)}{ci} of features survive, {pct(dmg)} damaged"
    ppl = f"perplexity {'+' if change >= 0 else ''}{pct(change)}"
    if masked:
        line = (f"MASKED DAMAGE: {ppl} (within {pct(gate.perplexity_tolerance)}) but {feats} "
                f"(gate: >= {pct(gate.min_survived)} survive, <= {pct(gate.max_damaged)} damaged)")
    elif feats_ok:
        line = f"PASS: {feats}; {ppl}"
    else:
        line = f"FAIL: {feats} (gate: >= {pct(gate.min_survived)}, <= {pct(gate.max_damaged)}); {ppl}"
    if math.isfinite(lo) and lo < gate.min_survived <= hi:
        line += f"; the interval crosses the {pct(gate.min_survived)} gate"
    return masked, line


def causal_columns(result: dict, splice_key: str = "splice") -> dict:
    sp = result[splice_key]
    out = {"splice_ce_score": sp["ce_score"], "splice_kl_score": sp["kl_score"],
           "splice_explained_variance": sp["explained_variance"], "splice_l0": sp["l0"]}
    if splice_key == "splice":
        out["causal_features"] = result["n_features"]
        out.update({k: result[k] for k in CAUSAL})
    return out


def tensor_types(metrics: dict) -> str:
    """A GGUF checkpoint's block-linear types, most common first ("Q5_0 166, Q4_K 16")."""
    return ", ".join(f"{t} {n}" for t, n in (metrics.get("block_tensor_types") or {}).items())


def runtime_columns(result: dict) -> dict:
    """llama.cpp's path beside the transformers path, both on the runtime stage's tokens."""
    return {"runtime_rel_error": result["rel_error"],
            "runtime_frac_survived_transformers": result["frac_survived_transformers"],
            "runtime_frac_survived": result["frac_survived_runtime"],
            "runtime_frac_damaged_transformers": result["frac_damaged_transformers"],
            "runtime_frac_damaged": result["frac_damaged_runtime"],
            "runtime_status_agreement": result["status_agreement"]}


def _hook_of(path) -> str:
    """results/<model>/<hook>/<table>/<variant>.<ext> -> <hook>."""
    return Path(path).parent.parent.name


def build_summary(variants, hooks, survival_paths, metrics_paths, predict_paths, replicate_paths=None,
                  overlap_paths=None, uncertainty: UncertaintyConfig = UncertaintyConfig(), gate: GateConfig = GateConfig(),
                  causal_paths=(), runtime_paths=(), methods: dict | None = None) -> pd.DataFrame:
    """Rows hook by hook, variants in the given order. Per-hook inputs (survival, predictability,
    replicates) are hook-major lists: hook 0's variants, then hook 1's, ...; metrics are per variant."""
    n = len(variants)
    replicate_paths = replicate_paths or [None] * (n * len(hooks))
    metrics = {v: read_json(p) for v, p in zip(variants, metrics_paths)}
    overlaps = {(_hook_of(p), Path(p).stem): read_json(p) for p in (overlap_paths or [])}
    causal = {(_hook_of(p), Path(p).stem): read_json(p) for p in causal_paths}
    runtime = {Path(p).stem: read_json(p)["hooks"] for p in runtime_paths}
    methods = methods or {}
    rows = []
    for k, hook in enumerate(hooks):
        here = slice(k * n, (k + 1) * n)
        causal_here = {v: c for (h, v), c in causal.items() if h == hook}
        for v, sp, pp, bp in zip(variants, survival_paths[here], predict_paths[here], replicate_paths[here]):
            rows.append(_row(v, hook, metrics[v], sp, read_json(pp), bp, overlaps.get((hook, v), {}), causal_here,
                             runtime.get(v, {}).get(hook), methods, uncertainty))
    df = pd.DataFrame(rows).reindex(columns=list(COLUMNS))
    fp = df.loc[df.variant == "fp", "perplexity"]
    df["perplexity_change"] = df.perplexity / float(fp.iloc[0]) - 1 if len(fp) else float("nan")
    judged = [verdict(row, gate) for row in df.to_dict("records")]
    df["masked_damage"] = [m for m, _ in judged]
    df["verdict"] = [line for _, line in judged]
    return df[list(COLUMNS)]


def _row(v: str, hook: str, met: dict, survival_path, pred: dict, replicates_path, overlap: dict, causal: dict,
         runtime: dict | None, methods: dict, uncertainty: UncertaintyConfig) -> dict:
    spec = parse_variant(v)
    kind = "magnitude" if spec.kind == "match" else spec.kind
    row = {"variant": v, "hook": hook, "layer": parse_hook(hook).layer, "kind": kind,
           "family": "magnitude" if spec.kind == "match" else spec.family,
           "method": methods.get(v, ""), "tensor_types": tensor_types(met),
           "bits": spec.bits, "bits_per_weight": met.get("bits_per_weight"),
           "sparsity": met.get("matched_sparsity") if spec.kind == "match" else spec.sparsity,
           "weight_error": met.get("weight_error"),
           "vs_reference": "" if v == "fp" else relation_to_reference(met.get("weight_error")),
           # computed once: a variant with the reference's weights has fp's outputs
           "reused_from": met.get("same_as", "")}
    row.update(fractions(read_table(survival_path, columns=["status", "born"]).to_pandas()))
    row.update({k: met[k] for k in ("perplexity", "kl_to_fp", "top1_agreement")})
    row["perplexity_sliding"] = met.get("perplexity_sliding")  # only with evaluation.sliding
    row.update(auc=pred.get("auc"), auc_lo=pred.get("auc_lo"), auc_hi=pred.get("auc_hi"))
    if replicates_path is not None:
        row.update(interval_columns(replicates_path, row, met, uncertainty))
    row.update(jaccard=overlap.get("jaccard"), jaccard_lo=overlap.get("jaccard_lo"), jaccard_hi=overlap.get("jaccard_hi"))
    if v in causal:
        row.update(causal_columns(causal[v]))
    elif v == "fp" and causal:  # FP's own splice scores, the baseline of every variant's
        row.update(causal_columns(next(iter(causal.values())), "fp_splice"))
    if runtime is not None:
        row.update(runtime_columns(runtime))
    return row


@dataclass(frozen=True)
class CorpusInputs:
    """The further corpora's per-(corpus, hook, variant) files, corpus-major then hook-major
    (metrics: corpus-major), and [label, variants] of each corpus in that order."""

    corpora: list
    survival: list
    metrics: list
    predictability: list
    replicates: list


def corpus_blocks(hooks, inputs: CorpusInputs):
    """(label, variants, survival, metrics, predictability, replicates) of each further corpus."""
    s = m = 0
    for label, variants in inputs.corpora:
        n, k = len(variants) * len(hooks), len(variants)
        yield (label, variants, inputs.survival[s : s + n], inputs.metrics[m : m + k],
               inputs.predictability[s : s + n], inputs.replicates[s : s + n])
        s, m = s + n, m + k


def write_summary(variants, hooks, survival_paths, metrics_paths, predict_paths, replicate_paths, overlap_paths,
                  out_path, uncertainty: UncertaintyConfig, gate: GateConfig, causal_paths=(), runtime_paths=(),
                  methods: dict | None = None, corpus: str = "main", corpora: CorpusInputs | None = None,
                  scan_path=None, high: str = "q8_0") -> None:
    """The `summary` rule: summary.csv, and the table in the log; with a sensitivity scan, the
    way forward of every variant the gate fails on the main corpus."""
    df = build_summary(variants, hooks, survival_paths, metrics_paths, predict_paths, replicate_paths, overlap_paths,
                       uncertainty, gate, causal_paths, runtime_paths, methods)
    df["corpus"] = corpus
    blocks = [df]
    for label, names, surv, met, pred, reps in corpus_blocks(hooks, corpora) if corpora else ():
        block = build_summary(names, hooks, surv, met, pred, reps, None, uncertainty, gate, methods=methods)
        block["corpus"] = label
        blocks.append(block)
    # infer_objects: a column empty in one corpus's block (None) must stay float for float_format
    df = pd.concat(blocks, ignore_index=True).infer_objects() if len(blocks) > 1 else df
    df["way_forward"] = way_forward_column(df, corpus, scan_path, gate, high)
    write_csv(df, out_path)
    log("summary:\n" + df.drop(columns=["verdict"]).to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    for v, hook, where, line in zip(df.variant, df.hook, df.corpus, df.verdict):
        log(f"verdict {v} at {hook} on {where}: {line}")
    for v, line in df.drop_duplicates("variant")[["variant", "way_forward"]].itertuples(index=False):
        if line:
            log(line)


def way_forward_column(df: pd.DataFrame, corpus: str, scan_path, gate: GateConfig, high: str) -> list:
    """Per row: for a variant failing the gate at some hook of the main corpus, the cheapest mix
    of the scan's types predicted to clear it (repair/way_forward.py); else empty."""
    if not scan_path:
        return [""] * len(df)
    from ..repair.way_forward import target_survival, way_forward

    scan = pd.read_csv(verify_file(scan_path))
    main = df[df.corpus == corpus]
    plan = way_forward(scan, target_survival(scan_path, main), gate.min_survived, high)
    lines = {}
    for v, rows in main.groupby("variant", sort=False):
        fails = (rows.frac_survived < gate.min_survived) | (rows.frac_damaged > gate.max_damaged)
        if v != "fp" and fails.any():
            lines[v] = plan.line(v, gate.min_survived)
    return [lines.get(v, "") for v in df.variant]
