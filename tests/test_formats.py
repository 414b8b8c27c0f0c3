"""Shipped formats and checkpoints as variants, against the formats' own libraries called
directly (gguf-py, bitsandbytes, compressed-tensors) and a hand-checked W8A8 formula."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from featureaudit.compress.builtin import apply_variant, bits_per_weight, build_variant, rtn_quantize
from featureaudit.compress.checkpoints import check_compatible, load_checkpoint
from featureaudit.compress.gguf_writer import write_mixed_gguf
from featureaudit.errors import AuditError
from featureaudit.model.architecture import block_linears
from featureaudit.variants import BNB_TYPES, GGUF_TYPES, parse_variant
from tiny_models import build_tiny_model, write_tiny_gguf

#: Where the gguf project's SAE reads (its per-hook outputs sit under results/tiny/<HOOK>/).
HOOK = "blocks.2.hook_resid_post"


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return build_tiny_model("llama", tmp_path_factory.mktemp("fmt") / "llama")


@pytest.fixture(scope="module")
def llama(llama_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(llama_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def ids():
    return torch.randint(3, 500, (3, 24), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("qtype", GGUF_TYPES)
def test_gguf_variant_weights_equal_gguf_py(llama, qtype):
    from gguf import GGMLQuantizationType, quants

    qt = GGMLQuantizationType[qtype.upper()]
    variant = apply_variant(llama, parse_variant(f"gguf-{qtype}"))
    for (name, ref), (_, got) in zip(block_linears(llama), block_linears(variant)):
        w = ref.weight.detach().numpy()
        expected = quants.dequantize(quants.quantize(w, qt), qt).reshape(w.shape)
        np.testing.assert_array_equal(got.weight.detach().numpy(), expected, err_msg=name)


@pytest.mark.parametrize("qtype", BNB_TYPES)
def test_bnb_variant_weights_equal_bitsandbytes(llama, qtype):
    import bitsandbytes.functional as F

    variant = apply_variant(llama, parse_variant(f"bnb-{qtype}"))
    for (name, ref), (_, got) in zip(block_linears(llama), block_linears(variant)):
        q, state = F.quantize_4bit(ref.weight.detach(), blocksize=64, quant_type=qtype)
        torch.testing.assert_close(got.weight, F.dequantize_4bit(q, state), rtol=0, atol=0, msg=name)


def test_per_tensor_rtn_has_one_scale_per_matrix():
    w = torch.randn(48, 64, generator=torch.Generator().manual_seed(1))
    scale = w.abs().max() / 31  # 6 bits symmetric: levels -32..31, scale max|w| / 31
    expected = torch.clamp(torch.round(w / scale), -32, 31) * scale
    torch.testing.assert_close(rtn_quantize(w, 6, per_tensor=True), expected, rtol=0, atol=0)
    assert len(torch.unique(torch.round(rtn_quantize(w, 6, per_tensor=True) / scale))) <= 64


class W8A8Reference(nn.Module):
    """W8A8 written out: int8 per-output-channel weights and int8 per-token activations, both
    symmetric with scale max|.| / 127.5, levels -128..127, rounding x * (1/scale) half to even;
    integer matmul, then the two scales (the int8 dynamic-activation scheme)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        w = linear.weight.detach()
        self.sw = w.abs().amax(1, keepdim=True) / 127.5
        self.qw = torch.clamp(torch.round(w * (1.0 / self.sw)), -128, 127)
        self.bias = linear.bias

    def forward(self, x):
        sx = x.abs().amax(-1, keepdim=True) / 127.5
        qx = torch.clamp(torch.round(x * (1.0 / sx)), -128, 127)
        y = (qx @ self.qw.T) * sx * self.sw.T  # integers below 2**24: exact in float32
        return y if self.bias is None else y + self.bias


def test_w8a8_hook_activations_equal_the_written_out_scheme(llama, ids):
    import copy

    from featureaudit.model.capture import iter_activations

    hook = "blocks.2.hook_resid_post"
    variant = build_variant(llama, "ao-w8a8")
    reference = copy.deepcopy(llama)
    layers = reference.model.layers
    for layer in layers:
        for parent in (layer.self_attn, layer.mlp):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, name, W8A8Reference(child))
    got = torch.cat(list(iter_activations(variant, ids, hook, batch_size=2)))
    want = torch.cat(list(iter_activations(reference, ids, hook, batch_size=2)))
    fp = torch.cat(list(iter_activations(llama, ids, hook, batch_size=2)))
    # Same integer arithmetic; only the float32 rescaling may round differently (a few ulp).
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))
    assert (got - fp).abs().max() > 1e-3  # and it is not the FP model


@pytest.mark.parametrize("qtype", GGUF_TYPES)
def test_gguf_bits_per_weight_is_gguf_py_block_size(qtype):
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    from featureaudit.compress import formats

    block, size = GGML_QUANT_SIZES[GGMLQuantizationType[qtype.upper()]]
    assert formats.bits_per_weight(parse_variant(f"gguf-{qtype}"), 64, 64 * 64) == size * 8 / block


def test_w8a8_on_cpu_equals_torchaos_int8_kernels(llama, ids):
    """On a CPU the workflow sums the int8 products in float32 (torch's int8 matmul is slow
    there); the hook activations equal those of torchao's own quantize_ with its int8 kernels."""
    import copy

    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    from featureaudit.model.capture import iter_activations

    hook = "blocks.3.hook_resid_post"
    kernels = copy.deepcopy(llama)
    linears = {id(lin) for _, lin in block_linears(kernels)}
    quantize_(kernels, Int8DynamicActivationInt8WeightConfig(), filter_fn=lambda m, fqn: id(m) in linears)
    want = torch.cat(list(iter_activations(kernels, ids, hook)))
    got = torch.cat(list(iter_activations(build_variant(llama, "ao-w8a8"), ids, hook)))
    # int32 vs float32 sums of int8 products: equal while sums stay below 2**24 (here < 2**18)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_bits_per_weight_of_a_model_weights_the_matrices_by_size(llama):
    # RTN per channel, symmetric: b bits + one fp16 scale per row of width `in`.
    linears = [lin for _, lin in block_linears(llama)]
    n = sum(lin.weight.numel() for lin in linears)
    expected = sum((4 + 16 / lin.in_features) * lin.weight.numel() for lin in linears) / n
    assert bits_per_weight(llama, "rtn-w4") == pytest.approx(expected)
    assert bits_per_weight(llama, "gguf-q4_0") == pytest.approx(4.5)


def test_compressed_tensors_checkpoint_loads_to_the_weights_it_was_made_from(llama_dir, tmp_path):
    """A pack-quantized W4A16 (group 32) checkpoint made with compressed-tensors' own compressor
    loads to the fake-quantized weights, within half a quantization step of the originals."""
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import (QuantizationArgs, QuantizationConfig, QuantizationScheme,
                                                 apply_quantization_config)
    from compressed_tensors.quantization.lifecycle import fake_quantize
    from compressed_tensors.quantization.utils import calculate_qparams
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(llama_dir, dtype=torch.float32).eval()
    original = {n: lin.weight.detach().clone() for n, lin in block_linears(model)}
    args = QuantizationArgs(num_bits=4, type="int", symmetric=True, strategy="group", group_size=32)
    apply_quantization_config(model, QuantizationConfig(
        config_groups={"g0": QuantizationScheme(targets=["Linear"], weights=args)}, ignore=["lm_head"]))
    expected, half_step = {}, {}
    for name, lin in block_linears(model):
        w = lin.weight.detach()
        groups = w.reshape(w.shape[0], -1, 32)
        scale, zero = calculate_qparams(groups.amin(-1), groups.amax(-1), args)
        lin.weight_scale.data = scale.to(lin.weight_scale.dtype).reshape(lin.weight_scale.shape)
        lin.weight_zero_point.data = zero.to(lin.weight_zero_point.dtype).reshape(lin.weight_zero_point.shape)
        expected[name] = fake_quantize(w, lin.weight_scale, lin.weight_zero_point, args)
        half_step[name] = lin.weight_scale.repeat_interleave(32, dim=1) / 2
    compressor = ModelCompressor.from_pretrained_model(model, quantization_format="pack-quantized")
    compressor.compress_model(model)
    out = tmp_path / "w4a16"
    model.save_pretrained(out)
    compressor.update_config(out)
    AutoTokenizer.from_pretrained(llama_dir).save_pretrained(out)
    assert json.loads((out / "config.json").read_text())["quantization_config"]["format"] == "pack-quantized"

    loaded, _ = load_checkpoint(out, torch.float32, "cpu", key="ckpt-w4a16")
    for name, lin in block_linears(loaded):
        torch.testing.assert_close(lin.weight, expected[name], rtol=0, atol=0, msg=name)
        assert ((lin.weight - original[name]).abs() <= half_step[name] * (1 + 1e-5)).all(), name


def test_checkpoint_of_another_shape_is_refused_in_one_line():
    ref = {"model_type": "llama", "hidden_size": 576, "num_hidden_layers": 30, "vocab_size": 49152}
    check_compatible(ref, dict(ref), "models.m.checkpoints.same")
    with pytest.raises(AuditError) as e:
        check_compatible(ref, {**ref, "model_type": "gpt_neox", "hidden_size": 512}, "models.m.checkpoints.x")
    msg = str(e.value)
    assert "\n" not in msg and "models.m.checkpoints.x" in msg and "hidden_size 512 vs 576" in msg and "gpt_neox" in msg


def test_written_gguf_checkpoint_equals_the_builtin_format(llama_dir, tmp_path, ids):
    """The workflow's GGUF writer (all block parts Q8_0) read back by transformers gives the
    weights, and so the activations, of the built-in gguf-q8_0 variant of the same reference."""
    from transformers import AutoModelForCausalLM

    from featureaudit.model.capture import iter_activations

    ref_file = write_tiny_gguf(llama_dir, tmp_path / "ref.gguf")
    reference = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="ref.gguf", dtype=torch.float32).eval()
    ckpt = tmp_path / "mixed.gguf"
    write_mixed_gguf(str(ref_file), {"attn": "q8_0", "mlp": "q8_0"}, ckpt)
    from_file = build_variant(reference, "ckpt-mixed", checkpoint=ckpt)
    builtin = build_variant(reference, "gguf-q8_0")
    for (name, a), (_, b) in zip(block_linears(from_file), block_linears(builtin)):
        torch.testing.assert_close(a.weight, b.weight, rtol=0, atol=0, msg=name)
    hook = "blocks.3.hook_resid_post"
    torch.testing.assert_close(torch.cat(list(iter_activations(from_file, ids, hook))),
                               torch.cat(list(iter_activations(builtin, ids, hook))), rtol=0, atol=0)
    assert bits_per_weight(reference, "ckpt-mixed", ckpt) == pytest.approx(8.5)


def test_mixed_gguf_keeps_other_tensors_and_mixes_types(llama_dir, tmp_path):
    from gguf import GGUFReader

    ref_file = write_tiny_gguf(llama_dir, tmp_path / "ref.gguf")
    write_mixed_gguf(str(ref_file), {"attn": "q8_0", "mlp": "q4_0"}, tmp_path / "mix.gguf")
    src = {t.name: t for t in GGUFReader(str(ref_file)).tensors}
    for t in GGUFReader(str(tmp_path / "mix.gguf")).tensors:
        if ".attn_" in t.name and "norm" not in t.name:
            assert t.tensor_type.name == "Q8_0", t.name
        elif ".ffn_" in t.name and "norm" not in t.name:
            assert t.tensor_type.name == "Q4_0", t.name
        else:
            assert t.tensor_type == src[t.name].tensor_type and np.array_equal(t.data, src[t.name].data), t.name


def test_block_formats_refuse_widths_they_cannot_split(llama):
    with pytest.raises(AuditError, match="divisible by 48"):
        apply_variant(llama, parse_variant("rtn-w4-g48"))


# ------------------------------------------------------------------------- through the workflow


def producers_available() -> bool:
    """llama.cpp and llm-compressor's environment are there (`make test` builds both and sets
    FEATUREAUDIT_REQUIRE_PRODUCERS, so that under it a missing one fails instead)."""
    from test_producers import LLMC_PYTHON, REQUIRE

    from featureaudit.compress import llama_cpp

    return REQUIRE or (llama_cpp.available() and LLMC_PYTHON.exists())


#: Checkpoints the producers make in gguf_project (when they are available).
PRODUCED = {"q4km": {"llama_cpp": "Q4_K_M"}, "q4kmi": {"llama_cpp": "Q4_K_M", "imatrix": True},
            "gptq": {"llm_compressor": "gptq-w4a16", "group_size": 32}}


@pytest.fixture(scope="module")
def gguf_project(tmp_path_factory, llama_dir):
    """A tiny GGUF reference through the whole Snakefile with shipped formats, a checkpoint the
    workflow writes with gguf-py (every block part Q8_0) and, where the producers are built,
    llama.cpp's Q4_K_M (with and without an importance matrix) and llm-compressor's GPTQ, with
    llama.cpp's own activations for the GGUF ones."""
    from conftest import TinyProject, base_config, save_saelens_sae

    workdir = tmp_path_factory.mktemp("gguf_project")
    ref = write_tiny_gguf(llama_dir, workdir / "tiny.gguf")
    sae = save_saelens_sae(workdir / "sae", 64, "blocks.2.hook_resid_post")
    cfg = base_config(workdir / "results")
    cfg["quantization"]["bits"] = []
    cfg["formats"] = ["gguf-q8_0", "bnb-nf4", "ao-w8a8"]
    checkpoints = {"mixq8": {"mix": {"attn": "q8_0", "mlp": "q8_0"}}}
    if producers_available():
        checkpoints.update(PRODUCED)
        cfg["calibration"] = {"n_tokens": 256}
        cfg["runtime"] = {"enabled": True}
    cfg["models"]["tiny"] = {"source": "gguf", "path": str(ref), "hook": "blocks.2.hook_resid_post",
                             "sae": {"source": "disk", "path": str(sae)}, "checkpoints": checkpoints}
    return TinyProject.ran(workdir, cfg)


@pytest.mark.slow
def test_workflow_checkpoint_gives_the_builtin_formats_survival_table(gguf_project):
    import pandas as pd

    results = gguf_project.workdir / "results" / "tiny"
    builtin = pd.read_parquet(results / HOOK / "survival" / "gguf-q8_0.parquet")
    written = pd.read_parquet(results / HOOK / "survival" / "ckpt-mixq8.parquet")
    pd.testing.assert_frame_equal(builtin, written)
    assert (builtin.status == "survived").any()
    summary = pd.read_csv(results / "summary.csv").set_index("variant")
    assert list(summary.index)[:5] == ["fp", "gguf-q8_0", "bnb-nf4", "ao-w8a8", "ckpt-mixq8"]
    assert summary.loc["gguf-q8_0", "bits_per_weight"] == summary.loc["ckpt-mixq8", "bits_per_weight"] == 8.5
    assert summary.loc["fp", "bits_per_weight"] == 32.0  # the reference is an F32 GGUF
    assert summary.loc["ao-w8a8", "family"] == "torchao" and summary.loc["ao-w8a8", "kl_to_fp"] > 0
    record = json.loads((results / "reference" / "featureaudit-reference.json").read_text())
    assert set(record["tensor_types"]) == {"F32"}


@pytest.mark.slow
def test_adding_a_format_plans_only_its_jobs(gguf_project):
    counts = gguf_project.planned_after(lambda cfg: cfg["formats"].append("gguf-q4_0"))
    assert counts == {"variant": 1, "survival": 1, "predictability": 1, "method_overlap": 1, "summary": 1,
                      "figures": 1, "depth_figure": 1, "browser": 1, "all": 1}


@pytest.mark.slow
def test_checkpoint_of_another_architecture_fails_at_start_up(gguf_project, tmp_path):
    other = build_tiny_model("neox", tmp_path / "neox")
    original = json.loads(json.dumps(gguf_project.config))
    try:
        gguf_project.config["models"]["tiny"]["checkpoints"] = {"other": {"path": str(other)}}
        gguf_project.write()
        proc = gguf_project.snakemake("-n", check=False, timeout=120)
    finally:
        gguf_project.config = original
        gguf_project.write()
    lines = [line for line in proc.stderr.splitlines() if line.startswith("featureaudit:")]
    assert proc.returncode != 0 and len(lines) == 1 and "Traceback" not in proc.stderr
    assert "models.tiny.checkpoints.other" in lines[0] and "gpt_neox" in lines[0]


def _need_producers():
    if not producers_available():
        pytest.skip("llama.cpp or llm-compressor's environment is not built (make llama-cpp llm-compressor)")


@pytest.mark.slow
def test_workflow_audits_the_producers_checkpoints(gguf_project):
    """llama.cpp's presets and llm-compressor's GPTQ go through the whole workflow: the types
    llama.cpp chose are recorded (as gguf-py reads them from the file), the importance matrix
    changes the preset's weights, GPTQ's storage is 4 bits + a 16-bit scale per 32 weights,
    calibration tokens are none of the audit's, and llama.cpp's own activations are reported."""
    _need_producers()
    import pandas as pd
    import pyarrow.parquet as pq
    from gguf import GGUFReader

    results = gguf_project.workdir / "results" / "tiny"
    summary = pd.read_csv(results / "summary.csv").set_index("variant")
    assert summary.loc["ckpt-q4km", "method"] == "llama.cpp Q4_K_M"
    assert summary.loc["ckpt-gptq", "method"] == "llm-compressor gptq-w4a16"
    assert summary.loc["ckpt-gptq", "bits_per_weight"] == pytest.approx(4 + 16 / 32)

    blocks = [t for t in GGUFReader(str(results / "checkpoints" / "q4km.gguf")).tensors
              if t.name.startswith("blk.") and any(p in t.name for p in ("attn_", "ffn_")) and "norm" not in t.name]
    counts = pd.Series([t.tensor_type.name for t in blocks]).value_counts()
    recorded = json.loads((results / "metrics" / "ckpt-q4km.json").read_text())["block_tensor_types"]
    assert recorded == counts.to_dict() and sum(recorded.values()) == 7 * 4
    # 64 wide: no 256-weight super-block fits, so llama.cpp fell back on other types
    assert not any(t.endswith("_K") for t in recorded), recorded

    plain = {t.name: np.asarray(t.data) for t in GGUFReader(str(results / "checkpoints" / "q4km.gguf")).tensors}
    weighted = {t.name: np.asarray(t.data) for t in GGUFReader(str(results / "checkpoints" / "q4kmi.gguf")).tensors}
    assert any(not np.array_equal(plain[k], weighted[k]) for k in plain if k.startswith("blk."))

    rows = lambda p: {tuple(r) for r in pq.read_table(p).column("input_ids").to_pylist()}
    calibration, audited = rows(results / "calibration.parquet"), rows(results / "tokens.parquet")
    assert len(calibration) == 256 // 32 and not calibration & audited

    for v in ("fp", "ckpt-mixq8", "ckpt-q4km", "ckpt-q4kmi"):
        assert 0 <= summary.loc[v, "runtime_rel_error"] < 0.05, (v, summary.loc[v, "runtime_rel_error"])
        assert 0 <= summary.loc[v, "runtime_frac_survived"] <= 1
    # fp through llama.cpp: only the runtime's own rounding (F16 KV cache) separates the paths
    assert summary.loc["fp", "runtime_rel_error"] < 8 * 2.0**-10
    assert pd.isna(summary.loc["ckpt-gptq", "runtime_rel_error"])  # not a GGUF


@pytest.mark.slow
def test_method_overlap_is_set_jaccard_and_scipy_spearman(gguf_project):
    """method_overlap.csv against the definition computed here from the survival tables:
    Jaccard of the not-survived sets among FP-active features, scipy's Spearman of 1 - r."""
    import pandas as pd
    from scipy.stats import spearmanr

    results = gguf_project.workdir / "results" / "tiny"
    pairs = pd.read_csv(results / HOOK / "method_overlap.csv")
    variants = [v for v in pd.read_csv(results / "summary.csv").variant if v != "fp"]
    assert len(pairs) == len(variants) * (len(variants) - 1) // 2
    for row in pairs.itertuples():
        a = pd.read_parquet(results / HOOK / "survival" / f"{row.variant_a}.parquet").set_index("feature")
        b = pd.read_parquet(results / HOOK / "survival" / f"{row.variant_b}.parquet").set_index("feature")
        active = a.status != "inactive"
        bad_a = set(a.index[active & a.status.isin(["blurred", "damaged"])])
        bad_b = set(b.index[active & b.status.isin(["blurred", "damaged"])])
        union = bad_a | bad_b
        if union:
            assert row.jaccard == pytest.approx(len(bad_a & bad_b) / len(union), abs=1e-6)
            assert row.jaccard_lo <= row.jaccard + 1e-9 and row.jaccard <= row.jaccard_hi + 1e-9
        else:
            assert np.isnan(row.jaccard)
        da, db = 1 - a.r[active].fillna(0), 1 - b.r[active].fillna(0)
        if da.nunique() > 1 and db.nunique() > 1:
            assert row.spearman == pytest.approx(spearmanr(da, db).statistic, abs=1e-6)


@pytest.mark.slow
def test_adding_a_recipe_plans_only_its_jobs(gguf_project):
    _need_producers()
    def add(cfg):
        cfg["models"]["tiny"]["checkpoints"].update(wanda={"llm_compressor": "wanda-50"}, q6k={"llama_cpp": "Q6_K"})

    counts = gguf_project.planned_after(add)
    assert counts == {"llm_compress": 1, "llama_quantize": 1, "variant": 2, "runtime": 1, "survival": 2,
                      "predictability": 2, "method_overlap": 1, "summary": 1, "figures": 1, "depth_figure": 1,
                      "browser": 1, "all": 1}
