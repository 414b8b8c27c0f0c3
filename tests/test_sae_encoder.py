"""featureaudit.sae.encoder (the SAE read without importing SAELens) against SAELens's own
encode and decode of the same saved folder, for every case it claims; SAELens loads everything
else."""

from __future__ import annotations

import json

import pytest
import torch

from featureaudit.sae.encoder import SaeEncoder, load_encoder

D_IN, D_SAE, K = 48, 96, 6


def saelens_sae(arch: str, apply_b_dec: bool = True, rescale: bool = False, dtype: str = "float32", **extra):
    from sae_lens import (GatedSAE, GatedSAEConfig, JumpReLUSAE, JumpReLUSAEConfig, StandardSAE,
                          StandardSAEConfig, TopKSAE, TopKSAEConfig)

    common = dict(d_in=D_IN, d_sae=D_SAE, apply_b_dec_to_input=apply_b_dec, dtype=dtype, **extra)
    if arch == "topk":
        sae = TopKSAE(TopKSAEConfig(k=K, rescale_acts_by_decoder_norm=rescale, **common))
    else:
        classes = {"standard": (StandardSAE, StandardSAEConfig), "jumprelu": (JumpReLUSAE, JumpReLUSAEConfig),
                   "gated": (GatedSAE, GatedSAEConfig)}
        cls, cfg_cls = classes[arch]
        sae = cls(cfg_cls(**common))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            # nonzero biases (so that a missed b_dec or b_enc shows), uneven decoder rows (rescale)
            p.copy_((torch.randn(p.shape, generator=g) * (0.3 if p.ndim == 1 else D_IN**-0.5)).to(p.dtype))
        if arch == "topk":  # mostly negative pre-activations: some rows have fewer than k positive
            sae.b_enc.sub_(4)
        if arch == "jumprelu":
            sae.threshold.copy_(torch.rand(D_SAE, generator=g).to(sae.threshold.dtype) * 0.5)
        if rescale:
            sae.W_dec.mul_(torch.rand(D_SAE, 1, generator=g).to(sae.W_dec.dtype) * 2 + 0.1)
    return sae


def saved_pair(tmp_path, sae):
    """SAELens's own load of `sae` saved to tmp_path, and this module's load of the same folder."""
    from sae_lens import SAE

    sae.save_model(str(tmp_path))
    return SAE.load_from_disk(str(tmp_path)).eval(), load_encoder(tmp_path, output=False)


CASES = [("standard", True, False), ("standard", False, False), ("topk", True, False), ("topk", True, True),
         ("topk", False, True), ("jumprelu", True, False), ("jumprelu", False, False)]


@pytest.mark.parametrize("arch,apply_b_dec,rescale", CASES)
def test_encoder_encodes_like_saelens(tmp_path, arch, apply_b_dec, rescale):
    reference, encoder = saved_pair(tmp_path, saelens_sae(arch, apply_b_dec, rescale))
    assert isinstance(encoder, SaeEncoder)
    assert (encoder.cfg.d_in, encoder.cfg.d_sae) == (D_IN, D_SAE)
    x = torch.randn(500, D_IN, generator=torch.Generator().manual_seed(1)) * 2
    with torch.no_grad():
        want, got = reference.encode(x), encoder.encode(x)
    assert torch.equal(want != 0, got != 0)
    assert 0 < int((want != 0).sum(1).max()) <= (K if arch == "topk" else D_SAE)
    # the same float32 operations in the same order: at most an ulp or so apart, relative to the
    # largest code (a matmul of D_IN terms, blocked maybe differently)
    atol = 4 * D_IN**0.5 * torch.finfo(torch.float32).eps * float(want.abs().max())
    torch.testing.assert_close(got, want, rtol=0, atol=atol)


@pytest.mark.parametrize("arch,apply_b_dec,rescale", CASES)
def test_sparse_codes_are_the_nonzeros_of_saelens_encode(tmp_path, arch, apply_b_dec, rescale):
    """codes.sparse_encode (TopK: from the k picks per row, never the dense codes) against
    torch.nonzero of SAELens's dense encode: the same (token, feature) rows in the same order,
    sorted by token then feature, and the same values to the encode's rounding."""
    import numpy as np

    from featureaudit.sae.codes import sparse_encode

    reference, encoder = saved_pair(tmp_path, saelens_sae(arch, apply_b_dec, rescale))
    x = torch.randn(500, D_IN, generator=torch.Generator().manual_seed(2)) * 2
    tokens = np.arange(1000, 1500)
    with torch.no_grad():
        dense = reference.encode(x)
    rows, feats = torch.nonzero(dense, as_tuple=True)
    for sae in (encoder, reference):  # batches of 128: the rows of each batch map to its tokens
        t, f, v = sparse_encode(sae, x.numpy(), tokens, batch=128)
        np.testing.assert_array_equal(t, tokens[rows.numpy()])
        np.testing.assert_array_equal(f, feats.numpy())
        atol = 4 * D_IN**0.5 * torch.finfo(torch.float32).eps * float(dense.abs().max())
        np.testing.assert_allclose(v, dense[rows, feats].numpy(), rtol=0, atol=atol)


@pytest.mark.parametrize("arch,apply_b_dec,rescale", CASES)
def test_encoder_decodes_like_saelens(tmp_path, arch, apply_b_dec, rescale):
    """The causal audit splices decode(encode(h)) into the model: SAELens's decode of the same
    codes (rescaled TopK divides by the decoder-row norms first)."""
    reference, encoder = saved_pair(tmp_path, saelens_sae(arch, apply_b_dec, rescale))
    assert isinstance(encoder, SaeEncoder)
    torch.testing.assert_close(encoder.W_dec, reference.W_dec, rtol=0, atol=0)
    x = torch.randn(500, D_IN, generator=torch.Generator().manual_seed(5)) * 2
    with torch.no_grad():
        codes = reference.encode(x)
        want, got = reference.decode(codes), encoder.decode(codes)
    # a matmul over the active codes (at most D_SAE terms) plus a bias: float32 rounding of
    # sums of that many terms, relative to the largest term's size
    scale = float(codes.abs().max()) * float(reference.W_dec.abs().max()) * D_SAE + float(reference.b_dec.abs().max())
    atol = 4 * torch.finfo(torch.float32).eps * scale
    torch.testing.assert_close(got, want, rtol=0, atol=atol)
    # and it is not just b_dec: the codes move the output by far more than that tolerance
    assert float((want - reference.b_dec).abs().max()) > 100 * atol


def test_encoder_keeps_the_saved_dtype(tmp_path):
    reference, encoder = saved_pair(tmp_path, saelens_sae("topk", rescale=True, dtype="bfloat16"))
    assert isinstance(encoder, SaeEncoder) and encoder.W_enc.dtype == torch.bfloat16
    x = torch.randn(200, D_IN, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want, got = reference.encode(x), encoder.encode(x)
    assert want.dtype == got.dtype == torch.bfloat16
    assert torch.equal(want != 0, got != 0)
    atol = 4 * D_IN**0.5 * torch.finfo(torch.bfloat16).eps * float(want.abs().max())
    torch.testing.assert_close(got.float(), want.float(), rtol=0, atol=atol)


@pytest.mark.parametrize("case", ["gated", "normalized", "pre-6 config"])
def test_anything_else_loads_through_saelens(tmp_path, case):
    from sae_lens import SAE

    if case == "gated":
        sae = saelens_sae("gated")
    elif case == "normalized":
        sae = saelens_sae("standard", normalize_activations="constant_norm_rescale")
    else:
        sae = saelens_sae("standard")
    sae.save_model(str(tmp_path))
    if case == "pre-6 config":  # SAELens converts these (renamed keys, other defaults) when it loads them
        cfg = json.loads((tmp_path / "cfg.json").read_text())
        cfg.pop("sae_lens_version", None)
        cfg.get("metadata", {}).pop("sae_lens_version", None)
        (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    loaded = load_encoder(tmp_path, output=False)
    assert isinstance(loaded, SAE) and not isinstance(loaded, SaeEncoder)
    x = torch.randn(50, D_IN, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(x), SAE.load_from_disk(str(tmp_path)).encode(x), rtol=0, atol=0)
