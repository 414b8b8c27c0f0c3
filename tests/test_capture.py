"""featureaudit.model.capture against TransformerLens and HF, on tiny random NeoX / Llama / Gemma-2 models."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from featureaudit.io import atomic_dir
import torch

from featureaudit.errors import AuditError
from featureaudit.hooks import POINTS
from featureaudit.model.architecture import decoder_layers
from featureaudit.model.capture import HookCapture, iter_activations, write_activation_shards
from featureaudit.model.shards import iter_activation_shards
from tiny_models import ARCHS, N_LAYERS, VOCAB_SIZE, tl_model, tl_reference

ATOL = 1e-5
RTOL = 1e-5
MID = N_LAYERS // 2


@pytest.fixture(scope="module", params=ARCHS)
def tiny(request, tmp_path_factory):
    """(arch, model_dir, hf_model, tokenizer) -- built once per arch for this module.

    The folder name holds the arch name ("llama", "gemma2") on purpose: tl_reference must cope.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tiny_models import build_tiny_model

    arch = request.param
    model_dir = build_tiny_model(arch, tmp_path_factory.mktemp(f"tiny-{arch}") / f"{arch}-model", seed=0)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    return arch, model_dir, model, tok


@pytest.fixture(scope="module")
def ids():
    """3 sequences of 16 tokens, BOS first (as featureaudit.inputs.tokens makes them)."""
    g = torch.Generator().manual_seed(123)
    x = torch.randint(3, VOCAB_SIZE, (3, 16), generator=g)
    x[:, 0] = 1
    return x


def capture(model, hook, ids):
    with HookCapture(model, hook) as cap:
        return cap.run(ids)


# ----------------------------------------------------------------------------- the tiny models


def test_tiny_model_is_what_it_claims(tiny):
    arch, model_dir, model, tok = tiny
    assert tok.bos_token_id == 1 and tok.convert_ids_to_tokens(1) == "<bos>"
    text = "The help topics of pydoc."
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    assert len(decoder_layers(model)) == N_LAYERS
    cfg = model.config
    if arch == "neox":
        assert type(model).__name__ == "GPTNeoXForCausalLM" and cfg.use_parallel_residual
        ht = tl_model(model_dir, model)
        assert ht.cfg.parallel_attn_mlp and ht.cfg.rotary_dim == 4 and ht.cfg.normalization_type == "LN"
    elif arch == "llama":
        assert type(model).__name__ == "LlamaForCausalLM"
    else:
        assert type(model).__name__ == "Gemma2ForCausalLM"
        assert cfg._attn_implementation == "eager"
        assert cfg.attn_logit_softcapping == 50.0 and cfg.final_logit_softcapping == 30.0
        assert hasattr(decoder_layers(model)[0], "post_feedforward_layernorm")
        assert tl_model(model_dir, model).cfg.use_normalization_before_and_after


# ------------------------------------------------------------------- equality with TransformerLens


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("layer", [0, MID, N_LAYERS - 1])
def test_matches_transformer_lens(tiny, ids, point, layer):
    _, model_dir, model, _ = tiny
    hook = f"blocks.{layer}.{point}"
    got = capture(model, hook, ids)
    ref = tl_reference(model_dir, model, ids, hook)
    assert got.shape == ref.shape == (*ids.shape, 64)
    assert got.dtype == torch.float32
    assert ref.abs().max() > 0.1  # the values are not trivially small
    torch.testing.assert_close(got, ref, atol=ATOL, rtol=RTOL)


def test_iter_activations_batches_match_transformer_lens(tiny, ids):
    _, model_dir, model, _ = tiny
    hook = f"blocks.{MID}.hook_resid_post"
    batches = list(iter_activations(model, ids, hook, batch_size=2))
    assert [b.shape[0] for b in batches] == [2, 1]
    assert all(b.dtype == torch.float32 and b.device.type == "cpu" for b in batches)
    torch.testing.assert_close(torch.cat(batches), tl_reference(model_dir, model, ids, hook), atol=ATOL, rtol=RTOL)


def test_center_equals_tl_center_writing_weights(tiny, ids):
    """center=True is TL's default `center_writing_weights` on a LayerNorm model (NeoX)."""
    arch, model_dir, model, _ = tiny
    hook = f"blocks.{MID}.hook_resid_post"
    got = torch.cat(list(iter_activations(model, ids, hook, center=True)))
    raw = capture(model, hook, ids)
    # float32 rounding of a mean over d values, and of the forward itself if the two captures
    # took different kernels: d * eps * max|x| bounds both (no constant tuned to one CPU).
    d = raw.shape[-1]
    tol = d * torch.finfo(torch.float32).eps * float(raw.abs().max())
    torch.testing.assert_close(got.mean(-1), torch.zeros(got.shape[:2]), atol=tol, rtol=0)
    torch.testing.assert_close(got, raw - raw.mean(-1, keepdim=True), atol=tol, rtol=0)
    if arch == "neox":
        ht = tl_model(model_dir, model, center_writing_weights=True)
        with torch.no_grad():
            ref = ht.run_with_cache(ids, names_filter=hook)[1][hook]
        torch.testing.assert_close(got, ref, atol=ATOL, rtol=RTOL)


# ----------------------------------------------------------------------------- HF hidden states


def test_hf_hidden_states(tiny, ids):
    _, _, model, _ = tiny
    with torch.no_grad():
        hs = model(input_ids=ids, output_hidden_states=True, use_cache=False).hidden_states
    assert len(hs) == N_LAYERS + 1
    for layer in range(N_LAYERS - 1):  # the last entry has the final norm applied
        torch.testing.assert_close(capture(model, f"blocks.{layer}.hook_resid_post", ids), hs[layer + 1], atol=0, rtol=0)
        torch.testing.assert_close(capture(model, f"blocks.{layer}.hook_resid_pre", ids), hs[layer], atol=0, rtol=0)


# -------------------------------------------------------------------------------- early exit


@pytest.mark.parametrize("point", POINTS)
def test_forward_stops_after_hooked_module(tiny, ids, point):
    _, _, model, _ = tiny
    layers = decoder_layers(model)
    entered, finished = [0] * N_LAYERS, [0] * N_LAYERS
    head_calls = []
    handles = []
    for i, layer in enumerate(layers):  # registered before HookCapture's hook, so they fire first
        handles.append(layer.register_forward_pre_hook(lambda m, a, i=i: entered.__setitem__(i, entered[i] + 1)))
        handles.append(layer.register_forward_hook(lambda m, a, o, i=i: finished.__setitem__(i, finished[i] + 1)))
    handles.append(model.get_output_embeddings().register_forward_hook(lambda *a: head_calls.append(1)))
    try:
        capture(model, f"blocks.1.{point}", ids)
    finally:
        for h in handles:
            h.remove()
    assert entered == [1, 1, 0, 0], "layers after the hooked one must not run"
    # the hooked layer completes only when its own output is the value
    assert finished == ([1, 1, 0, 0] if point == "hook_resid_post" else [1, 0, 0, 0])
    assert not head_calls

    # and the hooks are gone afterwards: a full forward runs every layer again
    calls = []
    hs = [layer.register_forward_hook(lambda *a: calls.append(1)) for layer in layers]
    try:
        with torch.no_grad():
            model(input_ids=ids, use_cache=False)
    finally:
        for h in hs:
            h.remove()
    assert len(calls) == N_LAYERS


# -------------------------------------------------------------------------------- bad hook names


@pytest.mark.parametrize("hook", ["blocks.99.hook_resid_post", f"blocks.{N_LAYERS}.hook_mlp_out"])
def test_layer_out_of_range(tiny, hook):
    _, _, model, _ = tiny
    with pytest.raises(AuditError, match=rf"layers 0\.\.{N_LAYERS - 1}"):
        HookCapture(model, hook)


@pytest.mark.parametrize("hook", ["blocks.1.hook_foo", "blocks.1.hook_resid_mid", "resid_post", "", "blocks.x.hook_resid_pre"])
def test_unknown_hook_point(tiny, hook):
    _, _, model, _ = tiny
    with pytest.raises(AuditError) as e:
        HookCapture(model, hook)
    for point in POINTS:  # the message names the supported points
        assert point in str(e.value)


# ------------------------------------------------------------------------------------ shards


def _write(model, ids, out, **kw):
    kw = {"batch_size": 2, "shard_tokens": 20, "progress": False, **kw}
    return write_activation_shards(model, ids, f"blocks.{MID}.hook_resid_post", out, **kw)


@pytest.mark.parametrize("exclude_bos", [True, False])
def test_shards_round_trip(tiny, ids, tmp_path, exclude_bos):
    _, _, model, _ = tiny
    out = tmp_path / "acts"
    n = _write(model, ids, out, exclude_bos=exclude_bos)
    n_seq, T = ids.shape
    first = 1 if exclude_bos else 0
    assert n == n_seq * (T - first)
    shards = list(iter_activation_shards(out))
    assert len(shards) > 1  # shard_tokens 20 < 45 tokens: several files
    for path in out.glob("shard-*.parquet"):  # pyarrow's own reading of the recorded width
        assert pq.read_schema(path).metadata[b"d_in"] == b"64"
    tok = np.concatenate([t for t, _ in shards])
    acts = np.concatenate([a for _, a in shards])
    assert acts.dtype == np.float32 and acts.shape == (n, 64)
    expected_tok = (np.arange(n_seq)[:, None] * T + np.arange(first, T)[None, :]).reshape(-1)
    np.testing.assert_array_equal(tok, expected_tok)
    direct = capture(model, f"blocks.{MID}.hook_resid_post", ids)[:, first:, :].reshape(-1, 64).numpy()
    np.testing.assert_array_equal(acts, direct)
    # token index -> (sequence, position) recovers the same row of the direct capture
    seq, pos = divmod(int(tok[17]), T)
    np.testing.assert_array_equal(acts[17], capture(model, f"blocks.{MID}.hook_resid_post", ids)[seq, pos].numpy())
    assert not list(out.parent.glob(".acts.*"))  # no temporary directory left behind


@pytest.mark.parametrize("tiny", ["llama"], indirect=True)
def test_failed_shard_write_raises_and_leaves_nothing(tiny, ids, tmp_path, monkeypatch):
    """Shards are written in background threads: a failure there still reaches the caller,
    and neither the output folder nor a temporary one is left behind."""
    import featureaudit.model.capture as capture_module

    real = capture_module.write_shard

    def failing(path, *args):
        if path.name == "shard-00001.parquet":
            raise OSError("disk full")
        real(path, *args)

    monkeypatch.setattr(capture_module, "write_shard", failing)
    _, _, model, _ = tiny
    out = tmp_path / "acts"
    with pytest.raises(OSError, match="disk full"):
        _write(model, ids, out)
    assert not out.exists() and not list(tmp_path.glob(".acts.*"))


@pytest.mark.parametrize("tiny", ["llama"], indirect=True)  # file handling is architecture-blind
@pytest.mark.parametrize("damage", ["garbage", "truncate", "page_header", "empty"])
def test_corrupt_shard_raises_audit_error(tiny, ids, tmp_path, damage):
    _, _, model, _ = tiny
    out = tmp_path / "acts"
    _write(model, ids, out)
    path = sorted(out.glob("shard-*.parquet"))[1]
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    if damage == "garbage":  # garbage bytes over the whole file
        data = bytearray(rng.integers(0, 256, len(data), dtype=np.uint8).tobytes())
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "page_header":  # footer intact, first data page header destroyed
        data[4 : len(data) // 2] = rng.integers(0, 256, len(data) // 2 - 4, dtype=np.uint8).tobytes()
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    with pytest.raises(AuditError, match=r"shard-00001\.parquet"):
        for _ in iter_activation_shards(out):
            pass


def test_no_shards_raises_audit_error(tmp_path):
    with atomic_dir(tmp_path / "acts"):
        pass  # finished, but empty
    with pytest.raises(AuditError, match="no activation shards"):
        list(iter_activation_shards(tmp_path / "acts"))
    (tmp_path / "unfinished").mkdir()  # no manifest: its job never finished
    with pytest.raises(AuditError, match="is incomplete"):
        list(iter_activation_shards(tmp_path / "unfinished"))
