"""The producers: checkpoints made by llama.cpp and llm-compressor, read back by the audit.

Each test compares the audit's path against the tool's own reading of what it wrote:
  - a llama.cpp preset (the real llama-quantize) loads, through the checkpoint path, to
    gguf-py's dequantization of the written file;
  - llama-imatrix's statistics are the mean squared inputs of each matrix that transformers
    computes on the same tokens;
  - llama.cpp's own residual stream (eval callback) equals transformers' on an F16 GGUF to
    float16 precision;
  - an llm-compressor GPTQ checkpoint loads to the weights llm-compressor's fake-quant forward
    uses (computed in llm-compressor's environment, before saving).
`make test` builds llama.cpp and llm-compressor's environment first and sets
FEATUREAUDIT_REQUIRE_PRODUCERS=1, so that a missing tool fails here instead of skipping.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import build_tiny_model, write_tiny_gguf  # noqa: E402

from featureaudit.compress.llm_compress import environment_python  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
REQUIRE = os.environ.get("FEATUREAUDIT_REQUIRE_PRODUCERS") == "1"
LLMC_PYTHON = Path(environment_python() or REPO / ".venv-llmc-missing")


def need_llama_cpp():
    from featureaudit.compress import llama_cpp

    if not llama_cpp.available():
        (pytest.fail if REQUIRE else pytest.skip)("llama.cpp is not built: make llama-cpp")


def need_llm_compressor():
    if not LLMC_PYTHON.exists():
        (pytest.fail if REQUIRE else pytest.skip)("llm-compressor's environment is missing: make llm-compressor")


@pytest.fixture(scope="module")
def wide_llama(tmp_path_factory):
    """A tiny Llama 256 wide (K-quant super-blocks fit) as a transformers folder and F32 GGUF."""
    root = tmp_path_factory.mktemp("wide_llama")
    hf = build_tiny_model("llama", root / "hf", hidden=256)
    return hf, write_tiny_gguf(hf, root / "tiny.f32.gguf")


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of llama.cpp's q/k row order (tiny_models._permute_rows)."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


HF_NAMES = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
            "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
            "ffn_down": "mlp.down_proj"}


@pytest.mark.parametrize("preset", ["Q4_K_M", "Q3_K_M", "IQ4_XS"])
def test_llama_cpp_preset_loads_to_gguf_pys_dequantization(wide_llama, tmp_path, preset):
    need_llama_cpp()
    from gguf import GGUFReader, quants

    from featureaudit.compress import llama_cpp
    from featureaudit.compress.checkpoints import load_checkpoint
    from featureaudit.model.storage import checkpoint_metadata

    hf, f32 = wide_llama
    out = tmp_path / f"{preset}.gguf"
    llama_cpp.quantize(f32, out, preset)
    types = llama_cpp.tensor_types(out)
    # types gguf-py cannot write: the file is llama.cpp's work
    assert {"Q4_K_M": "Q4_K", "Q3_K_M": "Q3_K", "IQ4_XS": "IQ4_XS"}[preset] in set(types.values()), types
    assert checkpoint_metadata(out)["tensor_types"] == llama_cpp.type_counts(types)

    model, _ = load_checkpoint(out, torch.float32, torch.device("cpu"), key=f"ckpt-{preset}")
    cfg = model.config
    checked = 0
    for t in GGUFReader(str(out)).tensors:
        name = t.name.split(".")
        if len(name) != 4 or name[0] != "blk" or name[2] not in HF_NAMES:
            continue
        shape = [int(x) for x in reversed(t.shape)]
        expected = quants.dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)
        if name[2] in ("attn_q", "attn_k"):
            expected = _unpermute(expected, cfg.num_attention_heads if name[2] == "attn_q" else cfg.num_key_value_heads)
        got = model.get_submodule(f"model.layers.{name[1]}.{HF_NAMES[name[2]]}").weight.detach().numpy()
        np.testing.assert_array_equal(got, expected, err_msg=t.name)
        checked += 1
    assert checked == 7 * cfg.num_hidden_layers


def test_llama_cpp_importance_matrix_is_mean_squared_inputs(wide_llama, tmp_path):
    """llama-imatrix's per-column statistic of each block matrix equals the mean of the squared
    inputs that transformers feeds that matrix on the same tokens (one chunk per sequence)."""
    need_llama_cpp()
    from gguf import GGUFReader
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from featureaudit.compress import llama_cpp

    hf, f32 = wide_llama
    tok = AutoTokenizer.from_pretrained(hf)
    text = ("The quick brown fox jumps over the lazy dog. " * 40).strip()
    ids = tok(text, add_special_tokens=False)["input_ids"]
    ctx = 64
    chunks = len(ids) // ctx
    (tmp_path / "cal.txt").write_text(text)
    out = tmp_path / "imatrix.gguf"
    llama_cpp.compute_imatrix(f32, tmp_path / "cal.txt", out, context=ctx, chunks=chunks, threads=2)
    stats = {t.name: np.asarray(t.data, dtype=np.float64).reshape(-1) for t in GGUFReader(str(out)).tensors}

    model = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32).eval()
    seen: dict[str, list] = {}
    hooks = [model.get_submodule(f"model.layers.{i}.{m}").register_forward_hook(
        lambda mod, inp, _o, key=f"blk.{i}.{g}.weight": seen.setdefault(key, []).append(inp[0].reshape(-1, inp[0].shape[-1])))
        for i in range(model.config.num_hidden_layers) for g, m in HF_NAMES.items()]
    # llama.cpp's imatrix puts BOS first in every chunk when the vocabulary asks for it; this
    # tokenizer does not (add_bos_token false), so a chunk is ctx plain tokens
    with torch.no_grad():
        for c in range(chunks):
            model(torch.tensor([ids[c * ctx:(c + 1) * ctx]]))
    for h in hooks:
        h.remove()
    checked = 0
    for key, xs in seen.items():
        x = torch.cat(xs).double()
        mean_sq = (x**2).mean(0).numpy()
        got = stats[f"{key}.in_sum2"] / stats[f"{key}.counts"][0]
        # llama.cpp keeps K and V in an F16 cache, so every input downstream of attention is
        # off by F16 roundings (eps 2^-10), doubled by squaring: a few F16 epsilons, no more
        np.testing.assert_allclose(got, mean_sq, rtol=4 * 2.0**-10, err_msg=key)
        checked += 1
    assert checked == 7 * model.config.num_hidden_layers


def test_llama_cpp_residual_matches_transformers_on_f16(wide_llama, tmp_path):
    """The hook's activations read from llama.cpp's graph (l_out-L) equal transformers' on the
    same F16 GGUF, to float16 precision: llama.cpp multiplies F16 weights by activations
    rounded to F16, so the difference is a few F16 roundings per layer, not a mismatch."""
    need_llama_cpp()
    from gguf import GGMLQuantizationType

    from featureaudit.compress.checkpoints import load_checkpoint
    from featureaudit.compress.gguf_writer import rewrite_gguf
    from featureaudit.compress.llama_cpp import capture_residual

    _, f32 = wide_llama
    f16 = tmp_path / "tiny.f16.gguf"
    rewrite_gguf(str(f32), lambda name: GGMLQuantizationType.F16 if not name.endswith("norm.weight") else None, f16)
    model, _ = load_checkpoint(f16, torch.float32, torch.device("cpu"), key="f16")
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(3, model.config.vocab_size, (3, 48), generator=g)
    tokens[:, 0] = model.config.bos_token_id
    for layer in (0, 2):
        got = capture_residual(f16, tokens.numpy(), f"blocks.{layer}.hook_resid_post", threads=2, every=0)
        with torch.no_grad():
            ref = model(tokens, output_hidden_states=True).hidden_states[layer + 1].numpy()
        rel = np.linalg.norm(got - ref, axis=-1) / np.linalg.norm(ref, axis=-1)
        # float16 has 11 significant bits (eps 2^-10 ~ 1e-3); a handful of roundings per layer
        assert rel.max() < 8 * 2.0**-10 * (layer + 1), (layer, rel.max())
        assert rel.max() > 0 or layer == 0  # the comparison sees real numbers, not a copy


def _llm_compressor(tmp_path, model_dir, recipe: str, group_size: int):
    """Run tests/llmc_fake_quant.py in llm-compressor's environment on 8 random calibration
    sequences; returns (checkpoint folder, fake-quant weights, fake-quant logits record)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from safetensors.torch import load_file

    rng = np.random.default_rng(0)
    cal = tmp_path / "calibration.parquet"
    rows = [[1] + rng.integers(3, 512, 31).tolist() for _ in range(8)]
    pq.write_table(pa.table({"input_ids": rows, "split": ["calibration"] * len(rows)}), cal)
    out, fake = tmp_path / recipe, tmp_path / "fake_quant.safetensors"
    proc = subprocess.run([str(LLMC_PYTHON), str(REPO / "tests" / "llmc_fake_quant.py"), str(model_dir), str(cal),
                           recipe, str(group_size), str(out), str(fake)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, load_file(fake), load_file(str(fake).replace(".safetensors", ".logits.safetensors"))


def _logits_close(model, record):
    with torch.no_grad():
        got = model(record["input_ids"]).logits
    want = record["logits"]
    # the same float32 operations in both environments; an int8 rounding that lands on the
    # other side of a boundary moves one activation by one step, so compare at the logits'
    # scale, not bit for bit
    torch.testing.assert_close(got, want, rtol=0, atol=1e-3 * float(want.abs().max()))


def test_llm_compressor_gptq_loads_to_its_fake_quant_weights(tmp_path, tiny_models):
    """GPTQ W4A16 (groups of 32) on the tiny Llama, made and saved by llm-compressor in its own
    environment; the audit's checkpoint path (compressed-tensors 0.20, dequantized) reads the
    weights llm-compressor's fake-quant forward used, and computes its logits."""
    need_llm_compressor()
    from featureaudit.compress.checkpoints import load_checkpoint
    from featureaudit.model.storage import checkpoint_metadata

    out, expected, record = _llm_compressor(tmp_path, tiny_models["llama"], "gptq-w4a16", 32)
    meta = checkpoint_metadata(out)["compression"]
    assert meta["format"] == "pack-quantized" and meta["schemes"][0]["weights"]["group_size"] == 32, meta

    model, _ = load_checkpoint(out, torch.float32, torch.device("cpu"), key="ckpt-gptq")
    assert len(expected) == 7 * model.config.num_hidden_layers
    for name, w in expected.items():
        got = model.get_submodule(name).weight.detach()
        # dequantization is scale x integer in both: equal up to float32 rounding of the product
        torch.testing.assert_close(got, w, rtol=0, atol=4 * torch.finfo(torch.float32).eps * float(w.abs().max()))
    # and it is really quantized: at most 16 levels per group of 32
    w = model.get_submodule("model.layers.0.mlp.down_proj").weight.detach()
    assert max(len(torch.unique(g)) for g in w.reshape(-1, 32)) <= 16
    _logits_close(model, record)


def test_llm_compressor_w8a8_quantizes_activations_when_loaded(tmp_path, tiny_models):
    """SmoothQuant + GPTQ W8A8: loading dequantized drops the per-token int8 activation
    quantization, which the checkpoint path puts back; the loaded model then computes the
    logits of llm-compressor's own fake-quant model, and without the hooks it would not."""
    need_llm_compressor()
    from featureaudit.compress.checkpoints import load_checkpoint

    out, _, record = _llm_compressor(tmp_path, tiny_models["llama"], "smoothquant-gptq-w8a8", 0)
    model, _ = load_checkpoint(out, torch.float32, torch.device("cpu"), key="ckpt-w8a8")
    _logits_close(model, record)
    for m in model.modules():
        m._forward_pre_hooks.clear()
    with torch.no_grad():
        plain = model(record["input_ids"]).logits
    assert (plain - record["logits"]).abs().max() > 1e-3 * float(record["logits"].abs().max())
