"""Several hooks per model. One forward captures every hook: each hook's activations equal a
single-hook capture of the same model (and TransformerLens's cache), and the layers after the
deepest hook never run. Through the workflow, a three-hook audit's codes equal SAELens's encode
at each hook, and its per-hook codes and survival tables equal those of three single-hook audits
run separately, byte for byte; the summary, depth figure, browser and gate read every hook."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from conftest import TinyProject, base_config, save_saelens_sae
from test_workflow import job_counts
from tiny_models import assert_codes_equal_saelens, tl_reference

HOOKS = ("blocks.0.hook_resid_post", "blocks.1.hook_mlp_out", "blocks.3.hook_resid_post")
HIDDEN = 64


@pytest.fixture(scope="module")
def llama(tiny_models):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_models["llama"], dtype=torch.float32).eval()


def shard_arrays(folder: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for p in sorted(folder.glob("shard-*.parquet")):
        t = pq.read_table(p)
        col = t.column("act").combine_chunks()
        out.append((t.column("token").to_numpy(), col.values.to_numpy().reshape(-1, col.type.list_size)))
    return out


def test_one_forward_captures_every_hook_as_single_hook_captures_do(llama, tiny_models, tmp_path):
    from featureaudit.model.capture import write_activation_shards, write_hook_shards

    ids = torch.randint(4, 200, (6, 16), generator=torch.Generator().manual_seed(0))
    ids[:, 0] = 1
    n = write_hook_shards(llama, ids, {h: tmp_path / "multi" / h for h in HOOKS}, batch_size=4, shard_tokens=40)
    assert n == 6 * 15
    for h in HOOKS:
        write_activation_shards(llama, ids, h, tmp_path / "single" / h, batch_size=4, shard_tokens=40)
        multi, single = shard_arrays(tmp_path / "multi" / h), shard_arrays(tmp_path / "single" / h)
        assert len(multi) == len(single) == 2  # 60 and 30 tokens: several shards per hook
        for (tm, am), (ts, as_) in zip(multi, single):
            np.testing.assert_array_equal(tm, ts)
            np.testing.assert_array_equal(am, as_)  # the same kernels on the same batches: bit for bit
        ref = tl_reference(tiny_models["llama"], llama, ids, h)[:, 1:].reshape(-1, HIDDEN).numpy()
        np.testing.assert_allclose(np.concatenate([a for _, a in multi]), ref, atol=2e-5, rtol=1e-4)


def test_the_forward_stops_after_the_deepest_hook(llama):
    from featureaudit.model.capture import HookCapture

    ran = []
    layers = llama.model.layers
    handles = [layer.register_forward_hook(lambda m, a, o, i=i: ran.append(i)) for i, layer in enumerate(layers)]
    handles.append(llama.model.norm.register_forward_hook(lambda m, a, o: ran.append("norm")))
    try:
        with HookCapture(llama, ["blocks.0.hook_resid_post", "blocks.1.hook_mlp_out"]) as cap:
            out = cap.run(torch.ones(2, 8, dtype=torch.long))
    finally:
        for h in handles:
            h.remove()
    assert set(out) == {"blocks.0.hook_resid_post", "blocks.1.hook_mlp_out"}
    assert ran == [0], ran  # layer 1 stopped inside (after its MLP), layers 2, 3 and the norm never ran


# --------------------------------------------------------------------------- through the workflow


def depth_project(root: Path, tiny_models, saes: dict[str, Path], hooks) -> TinyProject:
    cfg = base_config(Path("results"))
    cfg["results"] = "results"
    cfg["quantization"]["bits"] = [4]
    cfg["models"]["tiny"] = {"source": "hf", "path": str(tiny_models["llama"]),
                             "hooks": {h: {"source": "disk", "path": str(saes[h])} for h in hooks}}
    root.mkdir(parents=True, exist_ok=True)
    p = TinyProject(root, cfg)
    p.write()
    return p


@pytest.fixture(scope="module")
def depth_runs(tmp_path_factory, tiny_models):
    """A three-hook audit run whole, and each hook audited alone up to its survival tables."""
    root = tmp_path_factory.mktemp("depth")
    saes = {h: save_saelens_sae(root / "saes" / h, HIDDEN, h, d_sae=128, k=8, seed=i) for i, h in enumerate(HOOKS)}
    three = depth_project(root / "three", tiny_models, saes, HOOKS)
    three.snakemake()
    singles = {}
    for h in HOOKS:
        single = depth_project(root / h, tiny_models, saes, [h])
        single.snakemake(*(f"results/tiny/{h}/survival/{v}.parquet" for v in ("fp", "rtn-w4")))
        singles[h] = single
    return three, singles, saes


@pytest.mark.slow
def test_each_hooks_tables_equal_its_single_hook_audit(depth_runs):
    three, singles, _ = depth_runs
    for h, single in singles.items():
        for v in ("fp", "rtn-w4"):
            for part in (f"codes/{v}/{h}.parquet", f"{h}/survival/{v}.parquet", f"{h}/bootstrap/{v}.npz"):
                a = three.workdir / "results" / "tiny" / part
                b = single.workdir / "results" / "tiny" / part
                assert a.read_bytes() == b.read_bytes(), part


@pytest.mark.slow
def test_each_hooks_codes_equal_saelens_encode(depth_runs, tiny_models, llama):
    three, _, saes = depth_runs
    results = three.workdir / "results" / "tiny"
    t = pq.read_table(results / "tokens.parquet").to_pandas()
    ids = torch.tensor(np.stack(t[t.split == "audit"].input_ids.to_numpy()))
    for h in HOOKS:
        assert_codes_equal_saelens(tiny_models["llama"], llama, ids, results / "codes" / "fp" / f"{h}.parquet", saes[h], h)


@pytest.mark.slow
def test_summary_depth_figure_browser_and_gate_read_every_hook(depth_runs, capsys):
    from featureaudit.report.gate import main as gate

    three, _, _ = depth_runs
    results = three.workdir / "results" / "tiny"
    summary = pd.read_csv(results / "summary.csv")
    assert list(summary.hook) == [h for h in HOOKS for _ in ("fp", "rtn-w4")]
    assert list(summary.layer) == [0, 0, 1, 1, 3, 3]
    for h in HOOKS:
        survival = pd.read_parquet(results / h / "survival" / "rtn-w4.parquet")
        row = summary[(summary.hook == h) & (summary.variant == "rtn-w4")].iloc[0]
        active = survival.status != "inactive"
        assert row.n_active == active.sum()
        assert row.frac_survived == pytest.approx((survival.status == "survived").sum() / active.sum(), abs=1e-6)
        html = (results / h / "browser.html").read_text()
        assert f'"hook":"{h}"' in html and all(f'"{other}"' in html for other in HOOKS)
    assert (results / "figures" / "survival_by_depth.png").stat().st_size > 10_000
    rc = gate([str(results / "summary.csv"), "--variant", "rtn-w4", "--min-survived", "0"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0 and [line.split(":")[0] for line in out] == [f"PASS rtn-w4 at {h}" for h in HOOKS]
    watch = three.workdir / "watch.txt"
    watch.write_text(f"{HOOKS[0]} 3\n")
    rc = gate([str(results / "summary.csv"), "--variant", "rtn-w4", "--min-survived", "0", "--hook", HOOKS[0],
               "--watchlist", str(watch)])
    out = capsys.readouterr()
    surv = pd.read_parquet(results / HOOKS[0] / "survival" / "rtn-w4.parquet").set_index("feature")
    assert rc == (0 if surv.loc[3, "status"] == "survived" else 1), out
    watch.write_text("3\n")  # no hook named, three hooks audited: ambiguous
    assert gate([str(results / "summary.csv"), "--variant", "rtn-w4", "--watchlist", str(watch)]) == 2


@pytest.mark.slow
def test_what_adding_a_hook_or_a_variant_plans(depth_runs):
    """The closing note's dry-run counts: a fourth hook, and a bit-width more."""
    three, _, saes = depth_runs
    original = json.loads(json.dumps(three.config))
    try:
        extra = "blocks.2.hook_resid_post"
        sae = save_saelens_sae(three.workdir.parent / "saes" / extra, HIDDEN, extra, d_sae=128, k=8, seed=9)
        three.config["models"]["tiny"]["hooks"][extra] = {"source": "disk", "path": str(sae)}
        three.write()
        hook_plan = job_counts(three.snakemake("-n").stdout)
        three.config = json.loads(json.dumps(original))
        three.add_bits(6)
        bits_plan = job_counts(three.snakemake("-n").stdout)
    finally:
        three.config = original
        three.write()
    print("adding a hook plans", hook_plan)
    print("adding a bit-width plans", bits_plan)
    # a new hook: its SAE, every variant's one forward again (all hooks from it), and per hook the tables
    assert hook_plan["sae"] == 1 and hook_plan["variant"] == 2
    assert hook_plan["survival"] == 2 * 4 and hook_plan["figures"] == 4 and hook_plan["browser"] == 4
    # a new variant: its job and its tables at each of the three hooks, no SAE, no other variant
    assert bits_plan["variant"] == 1 and "sae" not in bits_plan and bits_plan["survival"] == 3
    assert bits_plan["figures"] == 3 and bits_plan["depth_figure"] == 1
