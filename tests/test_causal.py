"""Causal fidelity against independent computations on tiny models: ablation and steering
effects against full forwards with a plain PyTorch hook, splice scores against SAELens's own
`get_downstream_reconstruction_metrics` on a TransformerLens model, Wilson intervals against
statsmodels-free scipy, and the fan-out of edits after the hook against one edit per forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from conftest import save_saelens_sae
from featureaudit.measure.causal import FeaturePlan, SaeAt, feature_effects, pearson_rows, splice_metrics, top_overlap, wilson
from featureaudit.model.architecture import decoder_layers
from featureaudit.model.intervene import logits_with
from featureaudit.sae.frozen import load_sae
from tiny_models import tl_model

HOOK = "blocks.1.hook_resid_post"
T = 24


@pytest.fixture(scope="module")
def setups(tiny_models, tmp_path_factory):
    out = {}
    for arch in ("neox", "llama", "gemma2"):
        model = AutoModelForCausalLM.from_pretrained(tiny_models[arch], dtype=torch.float32).eval()
        sae_dir = save_saelens_sae(tmp_path_factory.mktemp(f"sae_{arch}"), model.config.hidden_size, HOOK, d_sae=64, k=6)
        out[arch] = (model, SaeAt(load_sae(sae_dir, "cpu", output=False), center=False))
    return out


def ids_for(model, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, model.config.vocab_size, (n, T), generator=g)
    ids[:, 0] = 1  # BOS
    return ids


def plain_forward(model, ids, edit):
    """A full forward, batch 1, with the layer's output edited by a plain forward hook."""
    layer = decoder_layers(model)[1]

    def hook(module, args, output):
        if isinstance(output, tuple):
            return (edit(output[0]),) + tuple(output[1:])
        return edit(output)

    handle = layer.register_forward_hook(hook)
    try:
        with torch.no_grad():
            return F.log_softmax(model(input_ids=ids, use_cache=False).logits.float(), -1)[0]
    finally:
        handle.remove()


@pytest.mark.parametrize("arch", ["neox", "llama", "gemma2"])
def test_ablation_and_steering_equal_full_forwards_with_a_hook(setups, arch):
    model, sae = setups[arch]
    pool = ids_for(model)
    with torch.no_grad():
        clean = torch.stack([plain_forward(model, s[None], lambda h: h) for s in pool])
    top = clean.argmax(-1)
    # features that fire somewhere in the pool
    codes = torch.stack([sae.codes(_resid(model, s)) for s in pool])
    fires = codes.sum(1)
    feats = np.flatnonzero(fires.sum(0).numpy() > 0)[:5]
    seqs = np.argsort(-fires[:, feats].numpy(), axis=0, kind="stable")[:2].T
    plan = FeaturePlan(feats, seqs, np.full(len(feats), 3.0))
    got = feature_effects(model, sae, pool, plan, HOOK, top, prepend_bos=True, chunk=2)
    for i, f in enumerate(feats):
        d = sae.direction(int(f))
        steer = []
        for j, s in enumerate(seqs[i]):
            ids = pool[s][None]
            abl = plain_forward(model, ids, lambda h: h - sae.codes(h[0])[:, f][None, :, None] * d)
            lp0 = clean[s]
            want_dlp = abl.gather(-1, top[s][:, None])[:, 0] - lp0.gather(-1, top[s][:, None])[:, 0]
            want_kl = F.kl_div(abl, lp0, log_target=True, reduction="none").sum(-1)
            keep = ids[0] != 1
            np.testing.assert_allclose(got["dlp"][i, j], (want_dlp * keep).numpy(), atol=2e-5, rtol=1e-4)
            np.testing.assert_allclose(got["kl"][i, j], (want_kl * keep).numpy(), atol=2e-5, rtol=1e-4)
            st = plain_forward(model, ids, lambda h: h + 3.0 * d)
            steer.append(((st - lp0) * keep[:, None]).sum(0) / keep.sum())
        np.testing.assert_allclose(got["steer"][i], torch.stack(steer).mean(0).numpy(), atol=2e-5, rtol=1e-4)


def _resid(model, ids):
    box = {}
    layer = decoder_layers(model)[1]
    def grab(module, args, output):  # returns None: the output is left as it is
        box["h"] = (output[0] if isinstance(output, tuple) else output)[0]

    h = layer.register_forward_hook(grab)
    with torch.no_grad():
        model(input_ids=ids[None], use_cache=False)
    h.remove()
    return box["h"]


def test_edits_fan_out_after_the_hook(setups):
    """n edits in one forward (one prefix) equal n forwards with one edit each."""
    model, sae = setups["llama"]
    ids = ids_for(model)[:1]
    d = sae.direction(3)
    fan = logits_with(model, ids, HOOK, lambda h: torch.cat([h, h + d, h - 2 * d]))
    for k, c in enumerate((0.0, 1.0, -2.0)):
        one = logits_with(model, ids, HOOK, lambda h: h + c * d)
        torch.testing.assert_close(fan[k], one[0], atol=2e-5, rtol=1e-4)


class _Store:
    """What get_downstream_reconstruction_metrics asks of an ActivationsStore: batches of tokens."""

    def __init__(self, ids):
        self.ids, self.at = ids, 0

    def get_batch_tokens(self, n):
        out = self.ids[self.at:self.at + n]
        self.at += n
        return out


@pytest.mark.parametrize("arch", ["neox", "llama"])
def test_splice_scores_equal_saelens_on_a_transformerlens_model(setups, tiny_models, arch):
    from sae_lens.evals import get_downstream_reconstruction_metrics
    from sae_lens.training.activation_scaler import ActivationScaler

    model, sae = setups[arch]
    pool = ids_for(model, n=4, seed=1)
    got = splice_metrics(model, sae, pool, HOOK, prepend_bos=True)
    tl = tl_model(tiny_models[arch], model)
    sae.sae.cfg.metadata.hook_name = HOOK
    want = get_downstream_reconstruction_metrics(sae.sae, tl, _Store(pool), ActivationScaler(), compute_kl=True,
                                                 compute_ce_loss=True, n_batches=2, eval_batch_size_prompts=2,
                                                 ignore_tokens=[1])
    for key, ours in (("ce_loss_score", "ce_score"), ("kl_div_score", "kl_score"), ("ce_loss_with_sae", "ce_sae"),
                      ("ce_loss_without_sae", "ce_clean"), ("ce_loss_with_ablation", "ce_zero"),
                      ("kl_div_with_sae", "kl_sae"), ("kl_div_with_ablation", "kl_zero")):
        assert got[ours] == pytest.approx(want[key], rel=1e-4, abs=1e-5), key
    # explained variance and L0, against their definitions on the captured activations
    x = torch.cat([_resid(model, s)[1:] for s in pool]).double()
    xh = sae.reconstruct(x.float()).double()
    ev = 1 - ((x - xh) ** 2).sum(-1).mean() / (x - x.mean(0)).pow(2).sum(-1).mean()
    assert got["explained_variance"] == pytest.approx(ev.item(), rel=1e-4)
    assert got["l0"] == pytest.approx((sae.codes(x.float()) != 0).sum(-1).float().mean().item())


def test_helpers_against_numpy_and_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((4, 50)), rng.standard_normal((4, 50))
    b[1] = 2 * a[1] + 1
    want = [np.corrcoef(x, y)[0, 1] for x, y in zip(a, b)]
    np.testing.assert_allclose(pearson_rows(a, b), want, atol=1e-12)
    assert np.isnan(pearson_rows(np.ones((1, 5)), a[:1, :5]))[0]
    x = np.array([[5.0, 4, 3, 2, 1, 0]])
    assert top_overlap(x, np.array([[5.0, 4, 0, 1, 2, 3]]), 2)[0] == 1.0
    assert top_overlap(x, np.array([[0.0, 1, 2, 3, 4, 5]]), 2)[0] == 0.0
    lo, hi = wilson(3, 20)
    p, z, n = 3 / 20, 1.959963984540054, 20
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert (lo, hi) == pytest.approx((centre - half, centre + half), rel=1e-9)


def test_compare_counts_geometric_survivors_that_lose_their_effect():
    from featureaudit.config import CausalConfig, Thresholds
    from featureaudit.measure.causal import compare

    rng = np.random.default_rng(2)
    eff = rng.standard_normal((3, 2, 10)).astype(np.float32)
    fp = {"features": np.array([5, 6, 7]), "dlp": eff.copy(), "kl": np.abs(eff), "steer": rng.standard_normal((3, 40))}
    fp["dlp"][2] = 0.0  # no effect in FP: undefined
    fp["kl"][2] = 0.0
    var = {"dlp": eff.copy(), "kl": np.abs(eff), "steer": fp["steer"].copy()}
    var["dlp"][1] = 0.0  # silent in the variant: no shared effect
    var["kl"][1] = 0.0
    var["steer"][2] = -fp["steer"][2]
    geometric = {"r": {5: 0.99, 6: 0.95, 7: 0.97}, "status": {5: "survived", 6: "survived", 7: "survived"}}
    table, out = compare(fp, var, geometric, CausalConfig(top_k=5), Thresholds(), 0.95)
    assert table.causal_r.tolist()[:2] == pytest.approx([1.0, 0.0]) and np.isnan(table.causal_r[2])
    assert (out["n_geometric_survived"], out["n_geometric_not_causal"]) == (2, 1)
    assert table.steering_transfers.tolist() == [True, True, False]
    assert (out["frac_geometric_not_causal_lo"], out["frac_geometric_not_causal_hi"]) == pytest.approx(wilson(1, 2))
