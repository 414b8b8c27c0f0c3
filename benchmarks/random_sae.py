"""A random TopK SAE written in the folder format SAELens 6 saves, for the speed benchmarks.

Written by hand (cfg.json, sae_weights.safetensors, the workflow's manifest) rather than by
SAELens, which the GPU machine does not have; SAELens loads the folder as a TopKSAE with the same
encode (checked when this was written: `SAE.load_from_disk` and `featureaudit.sae.encoder` agree).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from featureaudit.integrity import seal_dir


def write_random_sae(d_in: int, d_sae: int, k: int, hook: str, context: int, out: Path) -> Path:
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(1)
    w_enc = torch.randn(d_in, d_sae, generator=g) * d_in**-0.5
    out = Path(out)
    out.mkdir()
    save_file({"W_enc": w_enc, "W_dec": w_enc.T.contiguous(), "b_enc": torch.zeros(d_sae), "b_dec": torch.zeros(d_in)},
              str(out / "sae_weights.safetensors"))
    cfg = {"architecture": "topk", "d_in": d_in, "d_sae": d_sae, "k": k, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": True, "normalize_activations": "none", "reshape_activations": "none",
           "rescale_acts_by_decoder_norm": False,
           "metadata": {"sae_lens_version": "6.0.0", "hook_name": hook, "prepend_bos": True, "context_size": context}}
    (out / "cfg.json").write_text(json.dumps(cfg))
    seal_dir(out)
    return out
