"""Repair: the sensitivity scan, the allocators, recipe files made by llama-quantize, and the
mixes in the workflow.

References: gguf-py's own quantize/dequantize (a group's weights), a plain forward of a copy of
the model with the group quantized (the scan's shortcut: FP prefix reused, hooks before the
group skipped), the normal capture/encode/survival path (what an audit of that single-group
variant measures), gguf-py's reader of the file llama-quantize wrote (the recipe's types and the
bits per weight), and scan tables built so that each allocator has one right answer.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from conftest import FRAME, TinyProject, base_config, save_saelens_sae  # noqa: E402
from test_producers import need_llama_cpp  # noqa: E402
from test_workflow import job_counts  # noqa: E402
from tiny_models import build_tiny_model, write_tiny_gguf  # noqa: E402

from featureaudit.config import Thresholds  # noqa: E402
from featureaudit.repair.allocate import allocate  # noqa: E402
from featureaudit.repair.groups import Group, group_linears, model_groups  # noqa: E402

HOOKS = ("blocks.1.hook_resid_post", "blocks.3.hook_resid_post")


def gguf_qdq(w: torch.Tensor, name: str) -> torch.Tensor:
    """gguf-py's quantize then dequantize, rows of the matrix blocked along the input dimension."""
    from gguf import GGMLQuantizationType, quants

    qt = GGMLQuantizationType[name.upper()]
    x = w.detach().float().numpy()
    return torch.from_numpy(quants.dequantize(quants.quantize(x, qt), qt).reshape(x.shape))


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("repair_llama")
    hf = build_tiny_model("llama", root / "hf")
    model = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32).eval()
    saes = {h: save_saelens_sae(root / h, 64, h, d_sae=128, k=8, seed=i) for i, h in enumerate(HOOKS)}
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 500, (12, 24), generator=gen)
    ids[:, 0] = 1
    return hf, model, saes, ids


def test_a_group_at_the_target_differs_from_the_reference_only_in_that_group(llama):
    from featureaudit.model.architecture import block_linears
    from featureaudit.repair.scan import quantized

    _, model, _, _ = llama
    before = {n: lin.weight.detach().clone() for n, lin in block_linears(model)}
    chosen = group_linears(model, 2, "mlp")
    with quantized(chosen, "q4_0"):
        for name, lin in block_linears(model):
            if any(lin is c for c in chosen):
                assert torch.equal(lin.weight, gguf_qdq(before[name], "q4_0")), name
                assert not torch.equal(lin.weight, before[name])
            else:
                assert torch.equal(lin.weight, before[name]), name
    assert all(torch.equal(lin.weight, before[n]) for n, lin in block_linears(model))  # put back


def plain_audit(model, saes, ids, groups, target):
    """The normal path on a copy with the groups quantized: capture shards, encode, survival
    tables; and KL from two plain forwards."""
    import tempfile

    from featureaudit.measure.survival import fractions, survival_table
    from featureaudit.model.capture import write_hook_shards
    from featureaudit.sae.codes import encode_activations
    from featureaudit.sae.encoder import load_encoder

    variant = copy.deepcopy(model)
    with torch.no_grad():
        for layer, part in groups:
            for lin in group_linears(variant, layer, part):
                lin.weight.copy_(gguf_qdq(lin.weight, target))
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for tag, m in (("fp", model), ("v", variant)):
            write_hook_shards(m, ids, {h: tmp / tag / h for h in HOOKS}, batch_size=4, exclude_bos=True)
            for h in HOOKS:
                encode_activations(load_encoder(saes[h], output=False), tmp / tag / h, tmp / f"{tag}.{h}.parquet", progress=False)
        for h in HOOKS:
            out[h] = fractions(survival_table(tmp / f"fp.{h}.parquet", tmp / f"v.{h}.parquet", Thresholds(active_min_tokens=5)))
    with torch.no_grad():
        lp_fp = F.log_softmax(model(input_ids=ids).logits[:, :-1], -1)
        lp_v = F.log_softmax(variant(input_ids=ids).logits[:, :-1], -1)
    out["kl"] = float((lp_fp.exp() * (lp_fp - lp_v)).sum() / lp_fp[..., 0].numel())
    return out


@pytest.mark.parametrize("groups", [[(0, "attn")], [(2, "mlp")], [(1, "mlp"), (3, "attn")]])
def test_the_scan_measures_what_a_full_audit_of_that_variant_measures(llama, groups):
    from featureaudit.repair.scan import Scanner
    from featureaudit.sae.encoder import load_encoder

    _, model, saes, ids = llama
    scanner = Scanner(model, {h: load_encoder(saes[h], output=False) for h in HOOKS}, {}, ids, True, Thresholds(active_min_tokens=5),
                      batch_size=4)
    got = scanner.measure(groups, "q4_0")
    want = plain_audit(model, saes, ids, groups, "q4_0")
    # KL: sums over 12 x 23 positions of a 512-way softmax in float32, by two summation orders
    assert got["kl"] == pytest.approx(want["kl"], rel=1e-4, abs=1e-7)
    assert want["kl"] > 0
    for h in HOOKS:
        if got[h] is None:  # skipped: the group is after the hook; the audit must find no change
            assert want[h]["frac_survived"] == 1.0 and want[h]["frac_damaged"] == 0.0
        else:
            assert got[h]["n_active"] == want[h]["n_active"]
            for k in ("frac_survived", "frac_blurred", "frac_damaged"):
                assert got[h][k] == pytest.approx(want[h][k], abs=1e-12), (h, k)


def test_a_group_after_a_hook_leaves_its_activations_unchanged(llama):
    """What the scan relies on to skip work, checked once on a full forward."""
    from featureaudit.model.capture import HookCapture

    _, model, _, ids = llama
    variant = copy.deepcopy(model)
    with torch.no_grad():
        for part in ("attn", "mlp"):
            for lin in group_linears(variant, 2, part):
                lin.weight.copy_(gguf_qdq(lin.weight, "q4_0"))
    with HookCapture(model, list(HOOKS)) as a, HookCapture(variant, list(HOOKS)) as b:
        fp, var = a.run(ids), b.run(ids)
    assert torch.equal(fp[HOOKS[0]], var[HOOKS[0]])  # block 1: before the change
    assert not torch.equal(fp[HOOKS[1]], var[HOOKS[1]])  # block 3: after it


def groups_of(sizes):
    return [Group(i // 2, ("attn", "mlp")[i % 2], (), n) for i, n in enumerate(sizes)]


def scan_table(groups, lost, kl):
    return pd.DataFrame([{"group": g.name, "layer": g.layer, "part": g.part, "n_params": g.n_params, "hook": h,
                          "delta_survived": -lost[i], "kl": kl[i], "target": "q4_0"}
                         for i, g in enumerate(groups) for h in HOOKS])


def test_each_allocator_picks_the_known_answer():
    # six groups; bits: low 4.5, high 8.5 (4 bits more per upgraded weight)
    groups = groups_of([100, 100, 300, 100, 100, 100])
    lost = [0.30, 0.00, 0.50, 0.20, 0.01, 0.00]  # per group, survived fraction lost at the low type
    kl = [0.00, 0.40, 0.05, 0.01, 0.30, 0.20]
    scan = scan_table(groups, lost, kl)
    total = 800
    budget = 4.5 + 4 * 200 / total  # room for 200 weights at the high type
    # features per bit: g0 .003, g3 .002, g2 .00167 (too big anyway), g4 .0001
    a = allocate(groups, "features", budget, 4.5, 8.5, scan)
    assert a.high == ("blk.0.attn", "blk.1.mlp") and a.bits_per_weight == pytest.approx(budget)
    # KL per bit: g1 .004, g4 .003, g5 .002
    b = allocate(groups, "kl", budget, 4.5, 8.5, scan)
    assert b.high == ("blk.0.mlp", "blk.2.attn")
    # a group that does not fit is passed over, a smaller one after it still bought
    c = allocate(groups, "features", 4.5 + 4 * 400 / total, 4.5, 8.5, scan)
    assert c.high == ("blk.0.attn", "blk.1.mlp", "blk.2.attn")  # blk.1.attn (300) would not fit after 200
    # ends: blocks 0 and 2 (first, last) before block 1
    d = allocate(groups, "ends", 4.5 + 4 * 400 / total, 4.5, 8.5)
    assert d.high == ("blk.0.attn", "blk.0.mlp", "blk.2.attn", "blk.2.mlp")
    # nothing worth buying: the feature allocator spends nothing
    e = allocate(groups, "features", budget, 4.5, 8.5, scan_table(groups, [0.0] * 6, kl))
    assert e.high == () and e.bits_per_weight == 4.5
    with pytest.raises(Exception, match="below the low type"):
        allocate(groups, "kl", 4.0, 4.5, 8.5, scan)
