"""The Snakefile end to end on tiny offline models (GPT-NeoX with the Pythia layout and a
SAELens-saved SAE; Gemma-2 with an SAE the workflow trains), checked against TransformerLens,
SAELens and scipy; incremental re-runs; start-up errors; lint."""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from scipy.stats import pearsonr

from conftest import REPO
from tiny_models import tl_reference

pytestmark = pytest.mark.slow
MODELS = {"neox": "blocks.1.hook_resid_post", "gemma2": "blocks.2.hook_resid_post"}


def job_counts(dry_run_stdout: str) -> dict[str, int]:
    """Rule -> number of jobs from the 'Job stats' table of `snakemake -n`."""
    counts, in_table = {}, False
    for line in dry_run_stdout.splitlines():
        if line.startswith("Job stats"):
            in_table = True
            continue
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if in_table and m:
            if m[1] == "total":
                break
            counts[m[1]] = int(m[2])
    return counts


def audit_ids(results, model) -> torch.Tensor:
    t = pq.read_table(results / model / "tokens.parquet").to_pandas()
    return torch.tensor(np.stack(t[t.split == "audit"].input_ids.to_numpy()))


def read_shards(folder) -> np.ndarray:
    tables = [pq.read_table(p) for p in sorted(folder.glob("shard-*.parquet"))]
    col = [t.column("act").combine_chunks() for t in tables]
    return np.concatenate([c.values.to_numpy().reshape(-1, c.type.list_size) for c in col])


def dense_codes(path, n_tokens_by_id: dict[int, int], d_sae: int) -> np.ndarray:
    t = pq.read_table(path).to_pandas()
    out = np.zeros((len(n_tokens_by_id), d_sae), np.float32)
    out[[n_tokens_by_id[x] for x in t.token], t.feature] = t.value
    return out


def direct_metrics(project, model, results) -> dict:
    """rtn-w4's task metrics from two plain forwards (FP and variant) on the held-out tokens."""
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    from featureaudit.compress.builtin import build_variant

    path = project.config["models"][model]["path"]
    fp = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    var = build_variant(fp, "rtn-w4")
    table = pq.read_table(results / model / "tokens.parquet").to_pandas()
    ids = torch.tensor(np.stack(table[table.split == "heldout"].input_ids.to_numpy()))
    with torch.no_grad():
        lp = F.log_softmax(fp(ids).logits[:, :-1].float(), -1)
        lq = F.log_softmax(var(ids).logits[:, :-1].float(), -1)
    n, t = ids[:, 1:].numel(), ids[:, 1:, None]
    return {"perplexity": float(torch.exp(-lq.gather(-1, t).sum() / n)),
            "fp_perplexity": float(torch.exp(-lp.gather(-1, t).sum() / n)),
            "kl_to_fp": float(F.kl_div(lq, lp, log_target=True, reduction="sum") / n),
            "top1_agreement": float((lp.argmax(-1) == lq.argmax(-1)).float().mean())}


def test_output_contract(arch_project):
    results = arch_project.workdir / "results"
    for model in MODELS:
        summary = pd.read_csv(results / model / "summary.csv")
        assert list(summary.variant) == ["fp", "rtn-w4", "match-rtn-w4"]
        for col in ("variant", "kind", "bits", "sparsity", "n_active", "frac_survived", "frac_blurred",
                    "frac_damaged", "n_born", "perplexity", "perplexity_sliding", "auc"):
            assert col in summary.columns, col
        fp = summary.set_index("variant").loc["fp"]
        assert fp.frac_survived == 1.0 and fp.frac_damaged == 0.0
        fracs = summary[["frac_survived", "frac_blurred", "frac_damaged"]].sum(axis=1)
        np.testing.assert_allclose(fracs, 1.0)
        surv = pd.read_parquet(results / model / MODELS[model] / "survival" / "rtn-w4.parquet")
        for col in ("feature", "fp_active_tokens", "variant_active_tokens", "r", "status", "peak_activation"):
            assert col in surv.columns, col
        assert set(surv.status) <= {"survived", "blurred", "damaged", "inactive"}
        metrics = json.loads((results / model / "metrics" / "rtn-w4.json").read_text())
        for key in ("perplexity", "perplexity_sliding", "kl_to_fp", "top1_agreement", "n_tokens"):
            assert np.isfinite(metrics[key]), key
        # The workflow's metrics (FP logits rebuilt from stored hidden states, one forward per
        # variant) equal two plain forwards compared with torch's own KL.
        direct = direct_metrics(arch_project, model, results)
        for key in ("perplexity", "fp_perplexity", "kl_to_fp", "top1_agreement"):
            assert metrics[key] == pytest.approx(direct[key], rel=1e-4, abs=1e-6), key
        ov = json.loads((results / model / MODELS[model] / "overlap" / "rtn-w4.json").read_text())
        for key in ("matched_sparsity", "matched_perplexity", "jaccard", "spearman"):
            assert key in ov
        tokens = pq.read_table(results / model / "tokens.parquet")
        assert tokens.schema.field("input_ids").type.value_type.bit_width == 64
        for fig in ("survival_by_bits", "perplexity_vs_damage", "r_histogram", "predictor_auc", "overlap"):
            img = mpimg.imread(results / model / MODELS[model] / "figures" / f"{fig}.png")
            assert img.ndim == 3 and img.shape[0] > 100 and img[..., :3].std() > 0.01, fig


def test_a_variant_identical_to_fp_reuses_fps_outputs(arch_project):
    """On these random tiny models RTN-4 stays within the match tolerance of FP perplexity, so
    match-rtn-w4 is pruned at sparsity 0: the FP model. Its job copies fp's outputs (no second
    capture), and the summary says so; rtn-w4 itself is computed."""
    results = arch_project.workdir / "results"
    for model in MODELS:
        r = results / model
        assert json.loads((r / "matched" / "rtn-w4.json").read_text())["matched_sparsity"] == 0.0
        hook = MODELS[model]
        codes = f"{hook}.parquet"
        assert (r / "codes" / "match-rtn-w4" / codes).read_bytes() == (r / "codes" / "fp" / codes).read_bytes()
        shards = sorted((r / "activations" / "fp" / hook).glob("shard-*.parquet"))
        assert shards and all((r / "activations" / "match-rtn-w4" / hook / s.name).read_bytes() == s.read_bytes()
                              for s in shards)
        met, fp = (json.loads((r / "metrics" / f"{v}.json").read_text()) for v in ("match-rtn-w4", "fp"))
        assert met["same_as"] == "fp" and met["perplexity"] == fp["perplexity"] and met["weight_error"] == 0.0
        log = (arch_project.workdir / "logs" / model / "variant" / "match-rtn-w4.log").read_text()
        assert "reused" in log and "captured" not in log
        summary = pd.read_csv(r / "summary.csv").set_index("variant")
        assert summary.loc["match-rtn-w4", "reused_from"] == "fp"
        assert pd.isna(summary.loc["rtn-w4", "reused_from"])


@pytest.mark.parametrize("model", list(MODELS))
def test_workflow_activations_and_codes_match_references(arch_project, tiny_models, model):
    from sae_lens import SAE
    from transformers import AutoModelForCausalLM

    results = arch_project.workdir / "results"
    ids = audit_ids(results, model)
    hf = AutoModelForCausalLM.from_pretrained(tiny_models[model], dtype=torch.float32).eval()
    with torch.no_grad():
        ref = tl_reference(tiny_models[model], hf, ids, MODELS[model])[:, 1:]  # BOS excluded
    ref = ref.reshape(-1, ref.shape[-1]).numpy()
    captured = read_shards(results / model / "activations" / "fp" / MODELS[model])
    np.testing.assert_allclose(captured, ref, atol=2e-5, rtol=1e-4)

    sae = SAE.load_from_disk(str(results / model / MODELS[model] / "sae"))
    with torch.no_grad():
        expected = sae.encode(torch.from_numpy(ref)).numpy()
    T = ids.shape[1]
    token_ids = [s * T + p for s in range(len(ids)) for p in range(1, T)]
    got = dense_codes(results / model / "codes" / "fp" / f"{MODELS[model]}.parquet", {t: i for i, t in enumerate(token_ids)},
                      expected.shape[1])
    # TopK ties at the k-th value can flip between two equal encodes; compare all but a handful of entries.
    mismatch = ~np.isclose(got, expected, atol=1e-4, rtol=1e-3)
    assert mismatch.sum() <= 0.001 * got.size, f"{mismatch.sum()} of {got.size} codes differ from SAELens encode"

    # Survival r equals scipy's Pearson r on the densified codes.
    var = dense_codes(results / model / "codes" / "rtn-w4" / f"{MODELS[model]}.parquet",
                      {t: i for i, t in enumerate(token_ids)}, got.shape[1])
    surv = pd.read_parquet(results / model / MODELS[model] / "survival" / "rtn-w4.parquet").set_index("feature")
    checked = 0
    for f in surv.index[surv.status != "inactive"][:30]:
        if got[:, f].std() > 0 and var[:, f].std() > 0:
            assert surv.loc[f, "r"] == pytest.approx(pearsonr(got[:, f], var[:, f]).statistic, abs=1e-6)
            checked += 1
    assert checked > 5


def test_adding_a_bit_width_schedules_only_the_new_branch(arch_project):
    original = yaml.safe_load(arch_project.config_path.read_text())
    try:
        arch_project.add_bits(6, causal=True)
        counts = job_counts(arch_project.snakemake("-n").stdout)
    finally:
        arch_project.config = original
        arch_project.write()
    # rtn-w6 added to causal.variants too: its causal job is part of its branch, no other causal job reruns
    per_model = {"variant": 2, "survival": 2, "predictability": 2, "causal": 1, "match_pruning": 1, "overlap": 1,
                 "method_overlap": 1, "summary": 1, "figures": 1, "browser": 1, "depth_figure": 1}
    expected = {rule: n * len(MODELS) for rule, n in per_model.items()} | {"all": 1}
    assert counts == expected


def test_changing_a_survival_threshold_reruns_only_tables(arch_project):
    original = yaml.safe_load(arch_project.config_path.read_text())
    try:
        arch_project.config["survival"]["survived_r"] = 0.8
        arch_project.write()
        counts = job_counts(arch_project.snakemake("-n").stdout)
    finally:
        arch_project.config = original
        arch_project.write()
    assert not {"tokens", "reference_model", "sae", "variant", "fp_heldout", "pruning_curve", "match_pruning"} & set(counts)
    assert counts["survival"] == 3 * len(MODELS)


def test_nothing_to_do_after_a_complete_run(arch_project):
    out = arch_project.snakemake("-n").stdout
    assert "Nothing to be done" in out or job_counts(out) == {}


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda c: c.update(bogus=1), "bogus"),
        (lambda c: c["quantization"].update(bits=["4"]), "quantization.bits"),
        (lambda c: c["quantization"].update(bits=[9]), "quantization.bits"),
        (lambda c: c["models"]["tiny"].pop("hook"), "hook"),
        (lambda c: c["models"]["tiny"].update(hook="blocks.9.hook_resid_post"), "layers 0..3"),
        (lambda c: c["survival"].update(survived=0.9), "survival.survived"),
        (lambda c: c["quantization"].update(group_size=48), "rtn-w8-g48 quantizes in blocks of 48"),
        (lambda c: c.update(formats=["gguf-q3_k"]), "formats: unknown variant name 'gguf-q3_k'"),
        (lambda c: c["models"]["tiny"].update(checkpoints={"x": {"path": "/nonexistent.gguf"}}),
         "models.tiny.checkpoints.x.path"),
    ],
)
def test_bad_config_fails_at_start_up_in_one_line(tiny_project, mutate, key):
    mutate(tiny_project.config)
    tiny_project.write()
    proc = tiny_project.snakemake("-n", check=False, timeout=120)
    assert proc.returncode != 0
    lines = [l for l in proc.stderr.splitlines() if l.startswith("featureaudit:")]
    assert len(lines) == 1 and key in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (tiny_project.workdir / "results").exists()


def test_lint_passes(tiny_project):
    proc = tiny_project.snakemake("--lint", check=False, timeout=120)
    assert proc.returncode == 0 and "good condition" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_snakemake_report_embeds_summary_and_figures(arch_project, tmp_path):
    """`snakemake --report` builds the HTML report a person reads: per model the summary table
    and every figure, byte for byte the files the workflow wrote, with their captions."""
    import base64

    from featureaudit.figure_names import DEPTH_FIGURE, FIGURES

    html = tmp_path / "report.html"
    arch_project.snakemake("--report", str(html))
    text = html.read_text()
    m = re.search(r"var results = (\{.*?\});\n", text, re.S)
    assert m, "no results table in the report"
    entries = json.loads(m.group(1))
    results = (arch_project.workdir / "results").resolve()
    expected = {results / model / "summary.csv" for model in MODELS} | {
        results / model / hook / "figures" / f"{name}.{ext}" for model, hook in MODELS.items() for name in FIGURES
        for ext in ("png", "svg")} | {
        results / model / "figures" / f"{DEPTH_FIGURE}.{ext}" for model in MODELS for ext in ("png", "svg")} | {
        results / model / hook / "browser.html" for model, hook in MODELS.items()} | {
        results / model / hook / "method_overlap.csv" for model, hook in MODELS.items()}
    assert {Path(p).resolve() for p in entries} == expected
    caption = (REPO / "workflow" / "report" / "summary.rst").read_text().split()[:4]
    for path, entry in entries.items():
        payload = entry["data_uri"].split("base64,", 1)[1]
        assert base64.b64decode(payload) == Path(path).read_bytes(), path
        if path.endswith("summary.csv"):
            assert " ".join(caption) in entry["caption"], entry["caption"][:200]
        assert "{{" not in entry["caption"] and "snakemake.params" not in entry["caption"], path  # rendered
        name = Path(path).stem
        if name in FIGURES + (DEPTH_FIGURE,):  # each figure under its own caption, with the thresholds this run used
            own = (REPO / "workflow" / "report" / f"{name}.rst").read_text().split()[:3]
            assert " ".join(own) in entry["caption"], (path, entry["caption"][:200])
    survived_r = arch_project.config["survival"].get("survived_r", 0.9)
    by_path = {Path(p).resolve(): e for p, e in entries.items()}
    first = next(iter(MODELS))
    assert f"r &gt;= {survived_r}" in by_path[results / first / MODELS[first] / "figures" / "survival_by_bits.png"]["caption"]
