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

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from conftest import FRAME, TinyProject, base_config, save_saelens_sae  # noqa: E402
from test_producers import need_llama_cpp  # noqa: E402
from tiny_models import build_tiny_model, write_tiny_gguf  # noqa: E402

from featureaudit.config import Thresholds  # noqa: E402
from featureaudit.repair.allocate import allocate  # noqa: E402
from featureaudit.repair.groups import Group, group_linears  # noqa: E402

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


@pytest.fixture(scope="module")
def tiny_gguf(llama, tmp_path_factory):
    hf = llama[0]
    return write_tiny_gguf(hf, tmp_path_factory.mktemp("repair_gguf") / "tiny.f32.gguf")


def test_a_recipe_gguf_stores_exactly_the_recipe_types_at_the_budget_bits(tiny_gguf, tmp_path):
    need_llama_cpp()
    from gguf import GGML_QUANT_SIZES, GGUFReader

    from featureaudit.repair.groups import gguf_groups
    from featureaudit.compress.llama_cpp_presets import write_preset
    from featureaudit.compress.recipe_file import recipe_lines
    from featureaudit.repair.recipe import mix_types

    groups = gguf_groups(tiny_gguf)
    assert [g.name for g in groups] == [f"blk.{i}.{p}" for i in range(4) for p in ("attn", "mlp")]
    budget = 6.0
    plan = allocate(groups, "ends", budget, 4.5, 8.5)
    types = mix_types(groups, plan.high, "q4_0", "q8_0")
    recipe = tmp_path / "mix.txt"
    recipe.write_text("\n".join(recipe_lines(types)) + "\n")
    out = tmp_path / "mix.gguf"
    write_preset(tiny_gguf, "Q4_0", None, out, 2, recipe, pure=True)

    stored = {t.name: t for t in GGUFReader(str(out)).tensors}
    for name, t in types.items():
        assert stored[name].tensor_type.name.lower() == t, name
    assert {stored[n].tensor_type.name for g in groups if g.name in plan.high for n in g.tensors} == {"Q8_0"}
    # bits per weight over the block matrices, from the sizes gguf-py gives each stored type
    blocks = [stored[n] for g in groups for n in g.tensors]
    bits = sum(8 * GGML_QUANT_SIZES[t.tensor_type][1] / GGML_QUANT_SIZES[t.tensor_type][0] * int(t.n_elements)
               for t in blocks) / sum(int(t.n_elements) for t in blocks)
    assert bits == pytest.approx(plan.bits_per_weight, rel=1e-12)
    assert 4.5 < bits <= budget


def test_a_recipe_that_llama_quantize_cannot_honour_is_refused(tiny_gguf, tmp_path):
    """A K-type on 64-wide rows falls back to another type: the mix is not shipped as asked."""
    need_llama_cpp()
    from featureaudit.errors import AuditError
    from featureaudit.compress.llama_cpp_presets import write_preset

    recipe = tmp_path / "k.txt"
    recipe.write_text("^blk\\.0\\.attn_q\\.weight$=q6_k\n")
    with pytest.raises(AuditError, match="other types than the recipe names"):
        write_preset(tiny_gguf, "Q4_0", None, tmp_path / "k.gguf", 2, recipe, pure=True)
    assert not (tmp_path / "k.gguf").exists()


@pytest.fixture(scope="module")
def repair_project(tmp_path_factory, llama, tiny_gguf):
    """A tiny GGUF reference at two hooks with a scan at Q4_0 and a features mix at 6 bits per
    weight, through the whole Snakefile."""
    need_llama_cpp()
    workdir = tmp_path_factory.mktemp("repair_project")
    cfg = base_config(workdir / "results")
    cfg["quantization"]["bits"] = []
    cfg["repair"] = {"targets": ["q4_0"], "scan_tokens": 256}
    hooks = {h: {"source": "disk", "path": str(llama[2][h])} for h in HOOKS}
    cfg["models"]["tiny"] = {"source": "gguf", "path": str(tiny_gguf), "hooks": hooks,
                             "checkpoints": {"mix_f": {"llama_cpp": "mix", "objective": "features", "budget": 6.0}}}
    return TinyProject.ran(workdir, cfg)


@pytest.mark.slow
def test_a_mix_flows_through_the_audit_as_its_recipe_says(repair_project):
    import json

    from gguf import GGUFReader

    from featureaudit.compress.recipe_file import recipe_types

    results = repair_project.workdir / "results" / "tiny"
    record = json.loads((results / "repair" / "recipes" / "mix_f.json").read_text())
    scan = pd.read_csv(results / "repair" / "q4_0" / "scan.csv")
    assert len(scan) == 8 * len(HOOKS) and set(scan.hook) == set(HOOKS)
    # the features allocator bought the groups the scan ranks first per bit, within 6 bits per weight
    lost = (-scan.groupby("group").delta_survived.mean()).clip(lower=0) / scan.groupby("group").n_params.first()
    assert record["high_groups"] == list(lost[lost > 0].sort_values(ascending=False, kind="stable").index)[
        : len(record["high_groups"])]
    assert 4.5 < record["bits_per_weight"] <= 6.0
    gguf = results / "checkpoints" / "mix_f.gguf"
    names = [t.name for t in GGUFReader(str(gguf)).tensors]
    wanted = recipe_types((results / "repair" / "recipes" / "mix_f.txt").read_text(), names)
    stored = {t.name: t.tensor_type.name.lower() for t in GGUFReader(str(gguf)).tensors}
    assert all(stored[n] == t for n, t in wanted.items()) and len(wanted) == 4 * 7 + 1
    summary = pd.read_csv(results / "summary.csv")
    rows = summary[summary.variant == "ckpt-mix_f"]
    assert sorted(rows.hook) == sorted(HOOKS)
    assert rows.bits_per_weight.iloc[0] == pytest.approx(record["bits_per_weight"], rel=1e-5)  # the CSV keeps 6 digits
    assert rows.method.iloc[0] == "features mix @6 bpw"
    comparison = pd.read_csv(results / "repair" / "comparison.csv")
    assert set(comparison.variant) == {"ckpt-mix_f"} and len(comparison) == len(HOOKS)


@pytest.mark.slow
def test_adding_a_target_or_a_budget_plans_only_its_jobs(repair_project):
    assert repair_project.planned_after(lambda c: c["repair"]["targets"].append("q5_0")) == {
        "scan": 1, "repair_report": 1, "all": 1}
    added = repair_project.planned_after(lambda c: c["models"]["tiny"]["checkpoints"].update(
        mix_k={"llama_cpp": "mix", "objective": "kl", "budget": 5.0}))
    assert added == {"recipe": 1, "llama_quantize": 1, "variant": 1, "survival": 2, "predictability": 2,
                     "method_overlap": 2, "summary": 1, "figures": 2, "depth_figure": 1, "browser": 2,
                     "repair_report": 1, "all": 1}


@pytest.mark.slow
def test_the_gate_names_a_way_forward_and_writes_its_recipe(repair_project, tmp_path, capsys):
    from featureaudit.report.gate import main
    from featureaudit.compress.recipe_file import check_recipe, parse_recipe

    results = repair_project.workdir / "results" / "tiny"
    out = tmp_path / "fix.txt"
    code = main([str(results / "summary.csv"), "--variant", "ckpt-mix_f", "--min-survived", "0.9999",
                 "--config", str(repair_project.config_path), "--way-forward", "--write-recipe", str(out)])
    text = capsys.readouterr().out
    assert code == 1
    line = next(x for x in text.splitlines() if x.startswith("way forward for ckpt-mix_f"))
    assert "at q8_0" in line and "bits per weight" in line
    from featureaudit.model.storage import block_part

    pairs = parse_recipe(out.read_text())
    names = [p.strip("^$").replace("\\", "") for p, _ in pairs]
    assert check_recipe(out.read_text(), names, "fix") == []
    upgraded = {f"blk.{n.split('.')[1]}.{block_part(n)}" for n, (_, t) in zip(names, pairs) if t == "q8_0" and block_part(n)}
    # the groups bought first are those the scan says save the most survived features per bit
    scan = pd.read_csv(results / "repair" / "q4_0" / "scan.csv")
    per_bit = (-scan.groupby("group").delta_survived.mean()).clip(lower=0) / scan.groupby("group").n_params.first()
    ranked = list(per_bit[per_bit > 0].sort_values(ascending=False, kind="stable").index)
    assert upgraded == set(ranked[: len(upgraded)])
    assert f"({len(upgraded)} groups" in line


def test_bad_repair_settings_stop_the_start_in_one_line_each(tmp_path, tiny_gguf, llama):
    need_llama_cpp()
    bad = tmp_path / "bad.txt"
    bad.write_text("^blk\\.0\\.attn_q\\.weight$=q9_9\nnot_a_tensor=q8_0\n")
    cfg = base_config(tmp_path / "results")
    cfg["models"]["tiny"] = {
        "source": "gguf", "path": str(tiny_gguf), "hook": HOOKS[0], "sae": {"source": "disk", "path": str(llama[2][HOOKS[0]])},
        "checkpoints": {"fix": {"llama_cpp": "Q4_0", "recipe": str(bad)},
                        "low": {"llama_cpp": "mix", "objective": "kl", "budget": 3.0},
                        "gone": {"llama_cpp": "Q4_0", "recipe": str(tmp_path / "missing.txt")}}}
    project = TinyProject(tmp_path, cfg)
    project.write()
    proc = project.snakemake("-n", check=False)
    err = proc.stderr
    assert proc.returncode != 0 and not FRAME.search(err)
    lines = [x for x in err.splitlines() if x.startswith("featureaudit:")]
    assert any("checkpoints.low" in x and "3.0 bits per weight is outside" in x for x in lines), err
    # the budget is a config error: reported with the others at the config stage
    cfg["models"]["tiny"]["checkpoints"].pop("low")
    project.write()
    err = project.snakemake("-n", check=False).stderr
    lines = [x for x in err.splitlines() if x.startswith("featureaudit:")]
    assert any("type 'q9_9'" in x and "not a GGUF type" in x for x in lines), err
    assert any("'not_a_tensor' matches no tensor of the model" in x for x in lines), err
    assert any("missing.txt does not exist" in x for x in lines), err
    assert not FRAME.search(err)
