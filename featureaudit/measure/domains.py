"""Why survival moves between audit corpora: per hook and corpus, what tells "the SAE does not
fit this text" from "other features are active here" from "the model is worse here".

Per hook and corpus: the FP model's perplexity on the corpus's metric tokens, the SAE's fraction
of variance unexplained (FVU) on the FP activations it encodes there, and the FP-active
features. Per variant and pair (the main corpus and each other one): survival on each corpus
among all its FP-active features, and among the features active on both (the same features,
read on two texts). If survival differs as much among shared features as overall, the text
changes how the same features fare; if the gap closes among shared features, the corpora
differ in which features are active. `write_domains` is the body of the `domains` rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from ..hooks import parse_hook
from ..io import read_json, read_table, write_csv
from ..model.shards import iter_activation_shards
from ..progress import log
from ..sae.encoder import load_encoder
from ..sae.source import fraction_variance_unexplained

COLUMNS = ("hook", "layer", "corpus", "versus", "variant", "n_active", "frac_survived", "frac_damaged", "n_shared",
           "frac_survived_shared", "frac_damaged_shared", "active_jaccard", "fvu", "fp_perplexity")


def activation_fvu(sae, act_dir) -> float:
    """The SAE's FVU on the stored activations of a folder (the SAE's own input: centred where
    it wants that), over every token of it: sae.source's measure, on the shards read whole."""
    return fraction_variance_unexplained(sae, np.concatenate([acts for _, acts in iter_activation_shards(act_dir)]))


def statuses(path) -> pd.Series:
    """Feature -> status of a survival table."""
    t = read_table(path, columns=["feature", "status"]).to_pandas()
    return pd.Series(t.status.to_numpy(), index=t.feature.to_numpy())


def shares(status: pd.Series, among: np.ndarray) -> tuple[int, float, float]:
    """(features, survived fraction, damaged fraction) among the features `among`."""
    s = status[among]
    n = len(s)
    if not n:
        return 0, float("nan"), float("nan")
    return n, float((s == "survived").mean()), float((s == "damaged").mean())


@dataclass(frozen=True)
class DomainInputs:
    """Per (corpus, hook, variant): a survival table; per corpus: fp's metrics; per (corpus,
    hook): fp's activation folder; per hook: the SAE."""

    survival: dict
    fp_metrics: dict
    fp_activations: dict
    saes: dict

    @classmethod
    def from_lists(cls, corpora: list, hooks: list, variants: dict, survival: list, fp_metrics: list,
                   fp_activations: list, saes: list) -> "DomainInputs":
        """From the rule's flat input lists: survival corpus-major, then hook, then variant."""
        keys = [(c, h, v) for c in corpora for h in hooks for v in variants[c]]
        return cls(dict(zip(keys, survival)), dict(zip(corpora, fp_metrics)),
                   {(c, h): f"{folder}/{h}" for c, folder in zip(corpora, fp_activations) for h in hooks},
                   dict(zip(hooks, saes)))


def domain_table(corpora: list[str], hooks: list[str], variants: dict, inputs: DomainInputs) -> pd.DataFrame:
    """Rows per hook, corpus and variant (fp's rows carry the per-corpus diagnostics alone);
    `variants`: corpus -> the variants audited on it."""
    main = corpora[0]
    rows = []
    for hook in hooks:
        sae = load_encoder(inputs.saes[hook])
        fvu = {c: activation_fvu(sae, inputs.fp_activations[(c, hook)]) for c in corpora}
        fp_status = {c: statuses(inputs.survival[(c, hook, "fp")]) for c in corpora}
        active = {c: set(s.index[s != "inactive"]) for c, s in fp_status.items()}
        active_ids = {c: np.array(sorted(a), dtype=np.int64) for c, a in active.items()}
        for corpus in corpora:
            others = [main] if corpus != main else corpora[1:] or [main]
            for versus in others:
                shared = np.array(sorted(active[corpus] & active[versus]), dtype=np.int64)
                union = active[corpus] | active[versus]
                base = {"hook": hook, "layer": parse_hook(hook).layer, "corpus": corpus,
                        "versus": versus if versus != corpus else "",
                        "active_jaccard": len(shared) / len(union) if union and versus != corpus else float("nan"),
                        "fvu": fvu[corpus], "fp_perplexity": read_json(inputs.fp_metrics[corpus])["fp_perplexity"]}
                for v in variants[corpus]:
                    if v != "fp" and v not in variants[versus]:
                        continue
                    status = statuses(inputs.survival[(corpus, hook, v)])
                    n, surv, dmg = shares(status, active_ids[corpus])
                    n_shared, surv_shared, dmg_shared = shares(status, shared)
                    rows.append(base | {"variant": v, "n_active": n, "frac_survived": surv, "frac_damaged": dmg,
                                        "n_shared": n_shared, "frac_survived_shared": surv_shared,
                                        "frac_damaged_shared": dmg_shared})
    return pd.DataFrame(rows).reindex(columns=list(COLUMNS))


def write_domains(corpora: list[str], hooks: list[str], variants: dict, inputs: DomainInputs, out_path) -> None:
    """The `domains` rule: domains.csv, and the per-corpus diagnostics in the log."""
    df = domain_table(corpora, hooks, variants, inputs)
    write_csv(df, out_path)
    fp = df[df.variant == "fp"]
    for r in fp.itertuples():
        log(f"{r.hook} on {r.corpus}: FP perplexity {r.fp_perplexity:.2f}, SAE FVU {r.fvu:.3f}, {r.n_active} "
            f"FP-active features, {r.n_shared} shared with {r.versus or '-'} (Jaccard {r.active_jaccard:.2f})")
