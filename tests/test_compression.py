"""featureaudit.compress.builtin against written-out RTN formulas and torch.nn.utils.prune.

Every reference here is independent of the code under test: the RTN formulas are re-derived in
numpy (float32, the precision the weights are quantized in), pruning masks come from
torch.nn.utils.prune, and "which parameters are block linears" is decided from module names
and types, not from featureaudit.model.architecture.
"""

from __future__ import annotations

import copy
import math
import re

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from featureaudit.compress.builtin import apply_variant, magnitude_prune_, rtn_quantize, smallest_k_mask
from featureaudit.errors import AuditError
from featureaudit.variants import Variant, check_bits, check_sparsity, parse_variant

BITS = range(2, 9)


def random_weight(out_f=24, in_f=64, seed=0):
    """Rows on very different scales, so a per-tensor (instead of per-row) scale shows up."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out_f, in_f, generator=g)
    return w * torch.logspace(-2, 1, out_f).unsqueeze(1)


# --------------------------------------------------------------------------- RTN references


def ref_symmetric(w: np.ndarray, bits: int) -> np.ndarray:
    """Per row: scale = max|w_row| / (2^(b-1) - 1); q = clamp(round(w/scale), -2^(b-1), 2^(b-1)-1)."""
    w = w.astype(np.float32)
    out = np.empty_like(w)
    qmax = np.float32(2 ** (bits - 1) - 1)
    for i, row in enumerate(w):
        scale = np.float32(np.abs(row).max() / qmax)
        q = np.clip(np.round(row / scale), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1).astype(np.float32)
        out[i] = q * scale
    return out


def ref_asymmetric(w: np.ndarray, bits: int) -> np.ndarray:
    """Per row: scale = (max-min)/(2^b-1), zero = round(-min/scale), q = clamp(round(w/scale)+zero, 0, 2^b-1)."""
    w = w.astype(np.float32)
    out = np.empty_like(w)
    qmax = np.float32(2**bits - 1)
    for i, row in enumerate(w):
        scale = np.float32((row.max() - row.min()) / qmax)
        zero = np.round(-row.min() / scale)
        q = np.clip(np.round(row / scale) + zero, 0, 2**bits - 1).astype(np.float32)
        out[i] = (q - zero) * scale
    return out


def grouped(ref, w: np.ndarray, bits: int, group: int) -> np.ndarray:
    """Apply a per-row reference to each block of `group` consecutive input columns."""
    out = np.empty_like(w, dtype=np.float32)
    for c in range(0, w.shape[1], group):
        out[:, c : c + group] = ref(w[:, c : c + group], bits)
    return out


@pytest.mark.parametrize("bits", BITS)
def test_rtn_symmetric_per_channel_matches_formula(bits):
    w = random_weight(seed=bits)
    got = rtn_quantize(w, bits).numpy()
    np.testing.assert_allclose(got, ref_symmetric(w.numpy(), bits), rtol=0, atol=1e-7)
    # at most 2^b levels per row; the symmetric grid has at most 2^b - 1 (-2^(b-1) is never reached)
    for row in got:
        assert len(np.unique(row)) <= 2**bits - 1
    # the row maximum is representable exactly: it maps to +-qmax * scale = max|w|
    np.testing.assert_allclose(np.abs(got).max(1), np.abs(w.numpy()).max(1), rtol=1e-6)


@pytest.mark.parametrize("bits", BITS)
def test_rtn_symmetric_per_group_matches_formula(bits):
    w = random_weight(seed=10 + bits)
    got = rtn_quantize(w, bits, group_size=16).numpy()
    np.testing.assert_allclose(got, grouped(ref_symmetric, w.numpy(), bits, 16), rtol=0, atol=1e-7)
    for row in got:
        for c in range(0, w.shape[1], 16):
            assert len(np.unique(row[c : c + 16])) <= 2**bits
    # grouping must change something relative to per-channel scales
    assert not np.array_equal(got, rtn_quantize(w, bits).numpy())


@pytest.mark.parametrize("bits", BITS)
def test_rtn_asymmetric_matches_formula(bits):
    w = random_weight(seed=20 + bits) + 0.3  # off-centre rows: asymmetric and symmetric differ
    got = rtn_quantize(w, bits, symmetric=False).numpy()
    np.testing.assert_allclose(got, ref_asymmetric(w.numpy(), bits), rtol=0, atol=1e-6)
    for row in got:
        assert len(np.unique(row)) <= 2**bits
    got_g = rtn_quantize(w, bits, group_size=16, symmetric=False).numpy()
    np.testing.assert_allclose(got_g, grouped(ref_asymmetric, w.numpy(), bits, 16), rtol=0, atol=1e-6)
    for row in got_g:
        for c in range(0, w.shape[1], 16):
            assert len(np.unique(row[c : c + 16])) <= 2**bits


def test_rtn_error_shrinks_with_bits_and_keeps_dtype():
    w = random_weight(seed=3)
    errs = [float((rtn_quantize(w, b) - w).abs().max() / w.abs().max()) for b in BITS]
    assert all(a > b for a, b in zip(errs, errs[1:]))
    # symmetric RTN error is at most half a step per row
    for b in BITS:
        step = w.abs().amax(1, keepdim=True) / (2 ** (b - 1) - 1)
        assert bool(((rtn_quantize(w, b) - w).abs() <= step / 2 * (1 + 1e-5)).all())
    wb = w.to(torch.bfloat16)
    assert rtn_quantize(wb, 4).dtype == torch.bfloat16
    assert rtn_quantize(w, 4).shape == w.shape


def test_rtn_zero_row_stays_zero():
    w = random_weight(seed=4)
    w[3] = 0
    for sym in (True, False):
        out = rtn_quantize(w, 4, symmetric=sym)
        assert torch.isfinite(out).all()
        assert bool((out[3] == 0).all())


@pytest.mark.parametrize("bits", [1, 9, 0, -4, "4", 4.0, True, None])
def test_bad_bits_raise(bits):
    w = random_weight()
    with pytest.raises(AuditError):
        rtn_quantize(w, bits)
    with pytest.raises(AuditError):
        check_bits(bits)
    with pytest.raises(AuditError):
        Variant("rtn", bits=bits)


@pytest.mark.parametrize("group", [24, 7, 128])
def test_group_size_not_dividing_width_raises(group):
    with pytest.raises(AuditError, match=str(group)):
        rtn_quantize(random_weight(in_f=64), 4, group_size=group)


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.5, float("nan"), "0.3", None])
def test_bad_sparsity_raises(sparsity):
    lin = nn.Linear(8, 8)
    before = lin.weight.detach().clone()
    with pytest.raises(AuditError):
        magnitude_prune_([lin], sparsity)
    with pytest.raises(AuditError):
        check_sparsity(sparsity)
    with pytest.raises(AuditError):
        Variant("magnitude", sparsity=sparsity)
    assert torch.equal(lin.weight, before)


def test_bad_scope_raises():
    with pytest.raises(AuditError):
        magnitude_prune_([nn.Linear(8, 8)], 0.5, scope="row")
    with pytest.raises(AuditError):
        Variant("magnitude", sparsity=0.5, scope="row")


# --------------------------------------------------------------------------- pruning


def make_linears(seed=0, shapes=((16, 32), (48, 16), (8, 8))):
    torch.manual_seed(seed)
    lins = [nn.Linear(i, o) for o, i in shapes]
    with torch.no_grad():
        for k, lin in enumerate(lins):  # different scales per layer: global and per-layer differ
            lin.weight.mul_(10.0**k)
    return lins


SPARSITIES = [0.0, 0.1, 0.3, 0.5, 0.77, 0.9, 0.99]


@pytest.mark.parametrize("sparsity", SPARSITIES)
def test_per_layer_pruning_matches_torch_prune(sparsity):
    ours = make_linears(seed=1)
    ref = copy.deepcopy(ours)
    biases = [lin.bias.detach().clone() for lin in ours]
    magnitude_prune_(ours, sparsity, scope="layer")
    for lin in ref:
        prune.l1_unstructured(lin, "weight", amount=sparsity)
        prune.remove(lin, "weight")
    for a, b, bias in zip(ours, ref, biases):
        assert torch.equal(a.weight == 0, b.weight == 0)
        assert torch.equal(a.weight, b.weight)
        assert torch.equal(a.bias, bias)  # biases are never pruned
        assert int((a.weight == 0).sum()) == round(sparsity * a.weight.numel())
        assert isinstance(a.weight, nn.Parameter)
        assert set(dict(a.named_parameters())) == {"weight", "bias"}
        assert not a._forward_pre_hooks


@pytest.mark.parametrize("sparsity", SPARSITIES)
def test_global_pruning_matches_torch_prune(sparsity):
    ours = make_linears(seed=2)
    ref = copy.deepcopy(ours)
    magnitude_prune_(ours, sparsity, scope="global")
    prune.global_unstructured([(lin, "weight") for lin in ref], pruning_method=prune.L1Unstructured, amount=sparsity)
    for lin in ref:
        prune.remove(lin, "weight")
    total = sum(lin.weight.numel() for lin in ours)
    assert sum(int((lin.weight == 0).sum()) for lin in ours) == round(sparsity * total)
    for a, b in zip(ours, ref):
        assert torch.equal(a.weight == 0, b.weight == 0)
        assert torch.equal(a.weight, b.weight)
    if 0.3 <= sparsity <= 0.9:  # the small-scale layer is pruned far harder than the large-scale one
        frac = [float((lin.weight == 0).float().mean()) for lin in ours]
        assert frac[0] > sparsity > frac[2]


@pytest.mark.parametrize("scope", ["layer", "global"])
@pytest.mark.parametrize("sparsity", [0.1, 0.3, 0.5, 0.9])
def test_exact_sparsity_with_ties(scope, sparsity):
    """Only 4 distinct values (2 magnitudes): a plain `abs <= threshold` would overshoot."""
    g = torch.Generator().manual_seed(5)
    lins = [nn.Linear(30, 10), nn.Linear(10, 7)]
    levels = torch.tensor([-0.2, -0.1, 0.1, 0.2])
    with torch.no_grad():
        for lin in lins:
            lin.weight.copy_(levels[torch.randint(0, 4, lin.weight.shape, generator=g)])
    orig = [lin.weight.detach().clone() for lin in lins]
    magnitude_prune_(lins, sparsity, scope=scope)
    if scope == "layer":
        for lin in lins:
            assert int((lin.weight == 0).sum()) == round(sparsity * lin.weight.numel())
    else:
        total = sum(lin.weight.numel() for lin in lins)
        assert sum(int((lin.weight == 0).sum()) for lin in lins) == round(sparsity * total)
    # magnitude order: no kept weight is smaller than a pruned one; kept weights unchanged
    pruned = torch.cat([o[l.weight == 0].abs() for o, l in zip(orig, lins)])
    kept = torch.cat([o[l.weight != 0].abs() for o, l in zip(orig, lins)])
    assert float(pruned.max()) <= float(kept.min())
    for o, lin in zip(orig, lins):
        assert torch.equal(lin.weight[lin.weight != 0], o[lin.weight != 0])


def test_smallest_k_mask_exact_count_and_order():
    g = torch.Generator().manual_seed(6)
    x = torch.randint(0, 3, (1000,), generator=g).float()  # heavy ties
    for k in (0, 1, 333, 334, 999, 1000):
        m = smallest_k_mask(x, k)
        assert m.dtype == torch.bool and int(m.sum()) == k
        if 0 < k < 1000:
            assert float(x[m].max()) <= float(x[~m].min())
    y = torch.randn(500, generator=g).abs()
    m = smallest_k_mask(y, 123)
    assert torch.equal(torch.sort(y[m]).values, torch.sort(y).values[:123])


# --------------------------------------------------------------------------- variants on a tiny model


@pytest.fixture(scope="module", params=["llama", "neox"])
def tiny_model(request, tmp_path_factory):
    from transformers import AutoModelForCausalLM

    from tiny_models import build_tiny_model

    d = build_tiny_model(request.param, tmp_path_factory.mktemp(f"cmp-{request.param}") / "model")
    return AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()


def block_linear_weight_names(model) -> set[str]:
    """Weights of nn.Linear modules inside the decoder layers, found by name (model.layers.N / gpt_neox.layers.N)."""
    names = set()
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear) and re.search(r"(^|\.)layers\.\d+\.", name):
            names.add(f"{name}.weight")
    return names


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", ["rtn-w4", "rtn-w3-g16-asym", "mag-0.30", "mag-0.50-global"])
def test_apply_variant_touches_only_block_linears(tiny_model, name):
    before = snapshot(tiny_model)
    targets = block_linear_weight_names(tiny_model)
    assert len(targets) >= 4 * 4  # 4 layers, >= 4 linears each
    out = apply_variant(tiny_model, parse_variant(name))
    assert out is not tiny_model
    after = out.state_dict()
    assert set(after) == set(before)  # no weight_orig / weight_mask
    for k, v in before.items():
        if k in targets:
            assert not torch.equal(after[k], v), f"{k} should be compressed"
        else:
            assert torch.equal(after[k], v), f"{k} should be unchanged"
    assert any("embed" in k for k in before) and any(k not in targets and "norm" in k for k in before)
    # the original model is untouched
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(v, before[k]), f"original {k} was modified"


def test_apply_variant_rtn_equals_formula_per_layer(tiny_model):
    out = apply_variant(tiny_model, parse_variant("rtn-w4"))
    before, after = tiny_model.state_dict(), out.state_dict()
    for k in block_linear_weight_names(tiny_model):
        np.testing.assert_allclose(after[k].numpy(), ref_symmetric(before[k].numpy(), 4), rtol=0, atol=1e-7)


def test_apply_variant_fp_is_identical_copy(tiny_model):
    out = apply_variant(tiny_model, parse_variant("fp"))
    assert out is not tiny_model
    for (k, a), b in zip(tiny_model.state_dict().items(), out.state_dict().values()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()


def test_apply_variant_match_needs_sparsity(tiny_model):
    v = parse_variant("match-rtn-w4")
    with pytest.raises(AuditError):
        apply_variant(tiny_model, v)
    out = apply_variant(tiny_model, v, matched_sparsity=0.25)
    for k in block_linear_weight_names(tiny_model):
        w = out.state_dict()[k]
        assert int((w == 0).sum()) == round(0.25 * w.numel())


def test_apply_variant_bad_group_size_raises(tiny_model):
    with pytest.raises(AuditError):
        apply_variant(tiny_model, parse_variant("rtn-w4-g24"))  # 24 divides neither 64 nor 128


@pytest.mark.parametrize("name", ["mag-0.30", "mag-0.60-global"])
def test_pruned_model_survives_save_and_reload(tiny_model, name, tmp_path):
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    pruned = apply_variant(tiny_model, parse_variant(name))
    targets = block_linear_weight_names(tiny_model)
    sparsity = float(name.split("-")[1])
    total = sum(pruned.state_dict()[k].numel() for k in targets)
    zeros = sum(int((pruned.state_dict()[k] == 0).sum()) for k in targets)
    if name.endswith("global"):
        assert zeros == round(sparsity * total)
    else:
        assert abs(zeros - sparsity * total) <= len(targets)
    pruned.save_pretrained(tmp_path)
    keys = set()
    for f in tmp_path.glob("*.safetensors"):
        with safe_open(str(f), "pt") as fh:
            keys |= set(fh.keys())
    assert keys and not any(k.endswith(("weight_orig", "weight_mask")) for k in keys)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    re_sd, pr_sd = reloaded.state_dict(), pruned.state_dict()
    assert set(re_sd) == set(pr_sd)
    for k, v in pr_sd.items():
        assert torch.equal(re_sd[k], v), f"{k} changed on reload"
    assert sum(int((re_sd[k] == 0).sum()) for k in targets) == zeros
    ids = torch.tensor([[1, 5, 9, 200, 31]])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, pruned(ids).logits, rtol=0, atol=1e-5)
        assert not torch.allclose(pruned(ids).logits, tiny_model(ids).logits, atol=1e-3)


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "name", ["fp", "rtn-w4", "rtn-w4-g128", "rtn-w4-asym", "rtn-w2-g32-asym", "rtn-w8", "mag-0.30", "mag-0.30-global",
             "mag-0.05", "match-rtn-w6", "match-rtn-w3-g64-asym"]
)
def test_variant_names_round_trip(name):
    v = parse_variant(name)
    assert v.name == name
    assert parse_variant(v.name) == v


def test_parsed_variants_carry_their_parameters():
    assert parse_variant("rtn-w4-g128-asym") == Variant("rtn", bits=4, group_size=128, symmetric=False)
    v = parse_variant("mag-0.30-global")
    assert v.kind == "magnitude" and math.isclose(v.sparsity, 0.30) and v.scope == "global"
    assert parse_variant("match-rtn-w6").matched_to == "rtn-w6"
    assert parse_variant("fp").kind == "fp"


@pytest.mark.parametrize(
    "name",
    ["", "FP", "q4", "rtn", "rtn-w", "rtn-4", "rtn-w4-g", "rtn-w4-sym", "rtn-w1", "rtn-w9", "rtn-w16", "rtn-w4-g0",
     "mag", "mag-", "mag-1.00", "mag-1.5", "mag-0.30-local", "mag--0.1", "match-", "match-fp", "match-mag-0.30",
     "match-match-rtn-w4", "gptq-w4"],
)
def test_unknown_variant_names_raise(name):
    with pytest.raises(AuditError):
        parse_variant(name)
