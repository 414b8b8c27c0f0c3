"""Does a feature still *do* the same thing after compression? Causal fidelity at the SAE's hook.

Geometric survival (survival.py) asks whether a feature's code still correlates with FP's. The
uses that make features matter are causal, so on a sample of held-out sequences and of
FP-active features (the gate's watch-list always among them), with the same frozen SAE:

* splice scores, SAELens's definitions (`sae_lens.evals.get_recons_loss`): replace the hook's
  residual by the SAE's reconstruction, and by zeros, and score
  CE (CE_zero - CE_sae) / (CE_zero - CE_clean) and KL (KL_zero - KL_sae) / KL_zero, with the
  explained variance and L0 of the model's activations under the SAE; BOS positions are neither
  spliced nor scored (SAELens's `ignore_tokens`; its zero ablation, copied here, zeroes them
  too). Does the FP SAE still explain the variant?
* ablation equivalence: remove the feature (its code times its decoder row) at every position
  of the sequences where it fires most, in FP and in the variant (each with its own code), and
  record per position the change in log-probability of FP's top next token and the KL shift;
  the Pearson r of FP's and the variant's effect vectors is the feature's causal survival.
* steering transfer: add alpha times the decoder row (alpha = steer_scale x the feature's mean
  FP activation when active) at every position; the mean change in log-probability over the
  vocabulary says which tokens it promotes. Transfer = the top-k promoted tokens of FP and the
  variant overlap by at least min_overlap.

Everything runs from the hook onwards (intervene.py: one prefix per sequence, the edits as a
batch after the hook). FP's side is computed once per model (`write_fp_causal`, the
`fp_causal` rule) and each variant compares with it (`write_variant_causal`, the `causal` rule).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..config import CausalConfig, Thresholds
from ..model.intervene import ResidualAt, check_intervenable, logits_with
from ..progress import log, progress_bar


# --------------------------------------------------------------------------- SAE helpers


@dataclass
class SaeAt:
    """The frozen SAE as the hook sees it (per-token centring when the SAE wants it)."""

    sae: object
    center: bool

    def codes(self, h: torch.Tensor) -> torch.Tensor:
        x = h - h.mean(-1, keepdim=True) if self.center else h
        return self.sae.encode(x.to(self.sae.W_dec.dtype)).to(h.dtype)

    def reconstruct(self, h: torch.Tensor) -> torch.Tensor:
        mean = h.mean(-1, keepdim=True) if self.center else 0.0
        x = h - mean if self.center else h
        return (self.sae.decode(self.sae.encode(x.to(self.sae.W_dec.dtype))).to(h.dtype) + mean)

    def direction(self, f: int) -> torch.Tensor:
        return self.sae.W_dec[f].detach().float()


# --------------------------------------------------------------------------- splice scores


def bos_mask(ids: torch.Tensor, prepend_bos: bool) -> torch.Tensor:
    """True where a position is spliced and scored: not a BOS token (SAELens's ignore_tokens)."""
    if not prepend_bos:
        return torch.ones_like(ids, dtype=torch.bool)
    return ids != ids[0, 0]


@torch.no_grad()
def splice_metrics(model, sae: SaeAt, sequences: torch.Tensor, hook: str, prepend_bos: bool) -> dict:
    """SAELens's reconstruction metrics over `sequences` (n, T), one prefix per sequence."""
    ce = {"clean": [], "sae": [], "zero": []}
    kl = {"sae": [], "zero": []}
    resid, recon, l0 = [], [], []
    for ids in progress_bar(sequences, total=len(sequences), desc="splice", unit="seq"):
        ids = ids[None]
        keep = bos_mask(ids, prepend_bos)[0]

        def edit(h):
            r = sae.reconstruct(h)
            m = keep[None, :, None]
            resid.append(h[0][keep]); recon.append(r[0][keep])
            l0.append((sae.codes(h[0][keep]) != 0).sum(-1).float())
            return torch.cat([h, torch.where(m, r, h), torch.zeros_like(h)])  # SAELens zero-ablates BOS too

        logits = logits_with(model, ids, hook, edit)  # clean, SAE, zero
        lp = F.log_softmax(logits, -1)
        nll = -lp[:, :-1].gather(-1, ids[0, 1:].expand(3, -1)[..., None])[..., 0]  # (3, T-1)
        for k, row in zip(("clean", "sae", "zero"), nll):
            ce[k].append(row[keep[:-1]])
        for k, j in (("sae", 1), ("zero", 2)):
            kl[k].append((lp[0].exp() * (lp[0] - lp[j])).sum(-1)[keep])
    mean = {f"ce_{k}": torch.cat(v).mean().item() for k, v in ce.items()}
    mean.update({f"kl_{k}": torch.cat(v).mean().item() for k, v in kl.items()})
    x, xh = torch.cat(resid).double(), torch.cat(recon).double()
    total_var = (x.pow(2).sum(-1).mean() - x.mean(0).pow(2).sum()).item()
    ev = 1 - (x - xh).pow(2).sum(-1).mean().item() / total_var
    return {**mean,
            "ce_score": (mean["ce_zero"] - mean["ce_sae"]) / (mean["ce_zero"] - mean["ce_clean"]),
            "kl_score": (mean["kl_zero"] - mean["kl_sae"]) / mean["kl_zero"],
            "explained_variance": ev, "l0": torch.cat(l0).mean().item(),
            "n_sequences": int(len(sequences)), "n_tokens": int(sum(len(v) for v in ce["clean"]))}


# --------------------------------------------------------------------------- feature effects


@dataclass
class FeaturePlan:
    """Which features, on which held-out sequences, with which steering strength."""

    features: np.ndarray  # (F,)
    sequences: np.ndarray  # (F, S) indices into the pool of held-out sequences
    alpha: np.ndarray  # (F,)


def plan_features(pool_codes: np.ndarray, active: np.ndarray, mean_active: np.ndarray, watch: list[int],
                  settings: CausalConfig) -> FeaturePlan:
    """Sample features among the FP-active ones that fire in the pool (watch-list first), and
    give each the pool sequences where it fires hardest. pool_codes: (n_seq, T, d) FP codes."""
    fires = pool_codes.sum(1)  # (n_seq, d) total activation per sequence
    candidates = np.flatnonzero(active & (fires > 0).any(0))
    pool = set(candidates.tolist())
    watched = [f for f in watch if f in pool]
    rest = np.setdiff1d(candidates, watched)
    rng = np.random.default_rng(settings.seed)
    n = max(0, min(len(rest), settings.features - len(watched)))
    chosen = np.sort(np.r_[np.asarray(watched, int), rng.choice(rest, n, replace=False)]).astype(int)
    s = min(settings.sequences_per_feature, pool_codes.shape[0])
    seqs = np.argsort(-fires[:, chosen], axis=0, kind="stable")[:s].T  # (F, S)
    return FeaturePlan(chosen, seqs, settings.steer_scale * mean_active[chosen])


@torch.no_grad()
def feature_effects(model, sae: SaeAt, pool: torch.Tensor, plan: FeaturePlan, hook: str, top_tokens: torch.Tensor,
                    prepend_bos: bool, chunk: int = 8) -> dict:
    """Per feature and sequence: the ablation's change in log-probability of `top_tokens` (FP's
    argmax per position) and its KL shift, each (F, S, T); the steering's mean change in
    log-probability over the vocabulary (F, V)."""
    n_f, n_s = plan.sequences.shape
    T = pool.shape[1]
    dlp = np.zeros((n_f, n_s, T), np.float32)
    kl = np.zeros((n_f, n_s, T), np.float32)
    steer_sum, steer_n = None, np.zeros(n_f)
    jobs = {}
    for i in range(n_f):
        for j in range(n_s):
            jobs.setdefault(int(plan.sequences[i, j]), []).append((i, j))
    for s, pairs in progress_bar(sorted(jobs.items()), total=len(jobs), desc="effects", unit="seq"):
        ids = pool[s][None]
        keep = bos_mask(ids, prepend_bos)[0]
        for a in range(0, len(pairs), chunk):
            part = pairs[a:a + chunk]
            feats = [int(plan.features[i]) for i, _ in part]
            dirs = torch.stack([sae.direction(f) for f in feats]).to(pool.device)  # (c, d)
            alpha = torch.tensor([plan.alpha[i] for i, _ in part], dtype=dirs.dtype, device=dirs.device)

            def edit(h):
                z = sae.codes(h[0])[:, feats].T  # (c, T): each feature's own code in this model
                ablated = h - (z[:, :, None] * dirs[:, None, :]).to(h.dtype)
                steered = h + (alpha[:, None, None] * dirs[:, None, :]).to(h.dtype)
                return torch.cat([h, ablated, steered])

            lp = F.log_softmax(logits_with(model, ids, hook, edit), -1)
            c = len(part)
            clean, abl, st = lp[0], lp[1:1 + c], lp[1 + c:]
            top = top_tokens[s]
            d_top = (abl.gather(-1, top.expand(c, -1)[..., None])[..., 0] - clean.gather(-1, top[:, None])[:, 0])
            shift = (clean.exp() * (clean - abl)).sum(-1)  # KL(clean || ablated) per position
            delta = ((st - clean) * keep[None, :, None]).sum(1) / keep.sum()  # (c, V)
            if steer_sum is None:
                steer_sum = np.zeros((n_f, lp.shape[-1]), np.float64)
            for k, (i, j) in enumerate(part):
                dlp[i, j] = (d_top[k] * keep).cpu().numpy()
                kl[i, j] = (shift[k] * keep).cpu().numpy()
                steer_sum[i] += delta[k].double().cpu().numpy()
                steer_n[i] += 1
    return {"dlp": dlp, "kl": kl, "steer": (steer_sum / np.maximum(steer_n, 1)[:, None]).astype(np.float32)}


def pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of each row of a with the same row of b (NaN where either is constant)."""
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(1) / den, np.nan)


def top_overlap(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """|top-k(a) ∩ top-k(b)| / k per row."""
    ta = np.argpartition(-a, k, axis=1)[:, :k]
    tb = np.argpartition(-b, k, axis=1)[:, :k]
    return np.array([len(set(x) & set(y)) / k for x, y in zip(ta, tb)])


def wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    if n == 0:
        return math.nan, math.nan
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def compare(fp: dict, var: dict, geometric: dict, settings: CausalConfig, thresholds: Thresholds, level: float):
    """Per-feature causal survival and steering transfer against FP's, and their summary."""
    import pandas as pd

    n_f = len(fp["features"])

    def effect_r(key):
        a, b = fp[key].reshape(n_f, -1), var[key].reshape(n_f, -1)
        r = pearson_rows(a, b)
        # removing it changes nothing in the variant (it no longer fires there) while it did in
        # FP: no shared effect, r = 0; a feature without effect in FP stays undefined
        return np.where(np.isnan(r) & (a.std(1) > 0) & (b.std(1) == 0), 0.0, r)

    r_dlp, r_kl = effect_r("dlp"), effect_r("kl")
    overlap = top_overlap(fp["steer"], var["steer"], settings.top_k)
    r_steer = pearson_rows(fp["steer"], var["steer"])
    feats = fp["features"]
    geo_status = np.array([geometric["status"].get(int(f), "inactive") for f in feats], dtype=object)
    geo_r = np.array([geometric["r"].get(int(f), np.nan) for f in feats])
    causal_ok = r_dlp >= thresholds.survived_r
    transfers = overlap >= settings.min_overlap
    table = pd.DataFrame({"feature": feats, "geometric_r": geo_r, "geometric_status": geo_status,
                          "causal_r": r_dlp, "causal_r_kl": r_kl, "causal_survived": causal_ok,
                          "steering_overlap": overlap, "steering_r": r_steer, "steering_transfers": transfers})
    valid = np.isfinite(r_dlp)
    geo_ok = geo_status == "survived"
    k = int((geo_ok & valid & ~causal_ok).sum())
    n = int((geo_ok & valid).sum())
    out = {"n_features": int(n_f), "n_with_effect": int(valid.sum()),
           "frac_causal_survived": float(causal_ok[valid].mean()) if valid.any() else math.nan,
           "n_geometric_not_causal": k, "n_geometric_survived": n,
           "frac_geometric_not_causal": k / n if n else math.nan,
           "n_causal_not_geometric": int((~geo_ok & valid & causal_ok).sum()),
           "frac_steering_transfers": float(transfers.mean()) if n_f else math.nan}
    out["frac_geometric_not_causal_lo"], out["frac_geometric_not_causal_hi"] = wilson(k, n, level)
    out["frac_steering_transfers_lo"], out["frac_steering_transfers_hi"] = wilson(int(transfers.sum()), n_f, level)
    return table, out


# --------------------------------------------------------------------------- the two jobs


def _pool(tokens_path, settings: CausalConfig) -> torch.Tensor:
    from ..inputs.tokens import read_tokens

    return read_tokens(tokens_path, "heldout")[: settings.pool]


def _sae_at(sae_dir, device, capture_center) -> SaeAt:
    from ..integrity import verify_dir
    from ..sae.encoder import load_encoder
    from ..sae.frozen import saved_sae_metadata, wants_centering

    meta = saved_sae_metadata(verify_dir(sae_dir), key="the SAE")
    center = capture_center if capture_center is not None else wants_centering(meta)
    return SaeAt(load_encoder(sae_dir, device), bool(center))


def write_fp_causal(run, hook: str, capture_center, prepend_bos: bool, settings: CausalConfig, inputs: dict,
                    out_npz, out_json, watch: list[int]) -> None:
    """The `fp_causal` rule: FP's side, once per model. inputs: tokens, reference, sae,
    fp_survival, statistics."""
    from ..device import resolve_device
    from ..io import read_table, write_json
    from ..model.reference import load_reference
    from .uncertainty import save_replicates

    check_intervenable(hook)
    model, _ = load_reference(inputs["reference"], run, tokenizer=False)
    device = next(model.parameters()).device
    sae = _sae_at(inputs["sae"], resolve_device(run.device), capture_center)
    pool = _pool(inputs["tokens"], settings).to(device)
    fires, top = [], []
    for ids in progress_bar(pool, total=len(pool), desc="fp pool", unit="seq"):
        grab = ResidualAt()
        logits = logits_with(model, ids[None], hook, grab)
        top.append(logits[0].argmax(-1))
        fires.append(sae.codes(grab.value[0]).sum(0).float().cpu().numpy())
    top_tokens = torch.stack(top)
    table = read_table(inputs["fp_survival"], columns=["feature", "status"]).to_pandas()
    stats = read_table(inputs["statistics"], columns=["feature", "mean_active_activation"]).to_pandas()
    active = (table.sort_values("feature").status != "inactive").to_numpy()
    mean_active = stats.sort_values("feature").mean_active_activation.to_numpy()
    plan = plan_features(np.stack(fires)[:, None, :], active, mean_active, watch, settings)
    runs = len(np.unique(plan.sequences))
    log(f"causal fp: {len(plan.features)} features x {plan.sequences.shape[1]} sequences of {pool.shape[1]} tokens "
        f"({len(plan.features) * plan.sequences.shape[1] * 2} edited suffixes on {runs} prefixes), splice on "
        f"{min(settings.splice_sequences, len(pool))} sequences x 3; the same again per variant")
    effects = feature_effects(model, sae, pool, plan, hook, top_tokens, prepend_bos)
    splice = splice_metrics(model, sae, pool[: settings.splice_sequences], hook, prepend_bos)
    save_replicates(out_npz, features=plan.features, sequences=plan.sequences, alpha=plan.alpha,
                    top_tokens=top_tokens.cpu().numpy(), **effects)
    write_json({"splice": splice, "n_features": int(len(plan.features)), "watched": [int(f) for f in watch],
                "pool_sequences": int(len(pool)), "context_length": int(pool.shape[1])}, out_json)
    log(f"causal fp: splice CE score {splice['ce_score']:.3f}, KL score {splice['kl_score']:.3f}, "
        f"explained variance {splice['explained_variance']:.3f}, L0 {splice['l0']:.1f}")


def write_variant_causal(variant: str, run, hook: str, capture_center, prepend_bos: bool, pruning_scope: str,
                         settings: CausalConfig, thresholds: Thresholds, level: float, inputs: dict,
                         out_table, out_json) -> None:
    """The `causal` rule: one variant against FP's stored effects. inputs: tokens, reference,
    sae, fp_npz, fp_json, survival, matched, checkpoint."""
    import pyarrow as pa

    from ..compress.builtin import build_variant
    from ..device import resolve_device
    from ..io import read_json, read_table, write_json, write_table
    from ..model.reference import load_reference
    from ..variants import parse_variant
    from .uncertainty import load_replicates

    fp = load_replicates(inputs["fp_npz"])
    fp_meta = read_json(inputs["fp_json"])
    kind = parse_variant(variant).kind
    reference, tokenizer = load_reference(inputs["reference"], run, tokenizer=kind == "checkpoint")
    lm = build_variant(reference, variant, pruning_scope, inputs.get("matched"), inputs.get("checkpoint"), tokenizer)
    if lm is not reference:
        del reference
    device = next(lm.parameters()).device
    sae = _sae_at(inputs["sae"], resolve_device(run.device), capture_center)
    pool = _pool(inputs["tokens"], settings).to(device)
    plan = FeaturePlan(fp["features"], fp["sequences"], fp["alpha"])
    log(f"causal {variant}: {len(plan.features)} features x {plan.sequences.shape[1]} sequences, splice on "
        f"{fp_meta['splice']['n_sequences']} sequences")
    effects = feature_effects(lm, sae, pool, plan, hook, torch.as_tensor(fp["top_tokens"], device=device), prepend_bos)
    splice = splice_metrics(lm, sae, pool[: fp_meta["splice"]["n_sequences"]], hook, prepend_bos)
    surv = read_table(inputs["survival"], columns=["feature", "r", "status"]).to_pandas()
    geometric = {"r": dict(zip(surv.feature, surv.r)), "status": dict(zip(surv.feature, surv.status))}
    table, summary = compare(fp, effects, geometric, settings, thresholds, level)
    write_table(pa.Table.from_pandas(table, preserve_index=False), out_table)
    result = {"variant": variant, "splice": splice, "fp_splice": fp_meta["splice"], **summary,
              "watched": fp_meta["watched"]}
    write_json(result, out_json)
    log(f"causal {variant}: splice CE score {splice['ce_score']:.3f} (FP {fp_meta['splice']['ce_score']:.3f}); "
        f"{summary['n_geometric_not_causal']} of {summary['n_geometric_survived']} geometric survivors not causal; "
        f"steering transfers for {summary['frac_steering_transfers']:.0%}")
