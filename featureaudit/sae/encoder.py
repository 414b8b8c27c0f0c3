"""The frozen SAE's encoder (and its linear decoder), read from the folder SAELens saved,
without importing SAELens.

Why: `import sae_lens` imports TransformerLens and costs 5-6 s of every job that encodes (measured
on the default's `variant` job, 2-core AVX2: more than the encode of 32 K tokens itself), and the
workflow encodes in one job per variant (and decodes in one causal job per audited variant).
For the three architectures whose encode is one affine map and one activation, the SAE is read
here from `cfg.json` and `sae_weights.safetensors`:

    standard   relu((x - b_dec) @ W_enc + b_enc)
    topk       the k largest of (x - b_dec) @ W_enc + b_enc  (times |W_dec| rows when
               rescale_acts_by_decoder_norm), relu'd, the rest zero
    jumprelu   relu(pre) where pre > threshold, else zero

(b_dec subtracted only when apply_b_dec_to_input), and for all three

    decode     codes @ W_dec + b_dec  (codes divided by the |W_dec| rows first when rescaled)

Anything else (gated and other architectures, normalize_activations, hook_z reshaping, older
files with other keys) loads through SAELens itself (`sae.load_sae`).
tests/test_sae_encoder.py compares every supported case with SAELens's own encode and decode.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..integrity import verify_dir
from .frozen import SAE_WEIGHTS, load_sae, saved_weights

ARCHITECTURES = ("standard", "topk", "jumprelu")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class EncoderConfig:
    """What the encode needs of a saved cfg.json (named like SAELens's cfg fields)."""

    architecture: str
    d_in: int
    d_sae: int
    dtype: str = "float32"
    apply_b_dec_to_input: bool = True
    k: int | None = None
    rescale_acts_by_decoder_norm: bool = False

    @classmethod
    def from_saved(cls, cfg: dict) -> "EncoderConfig | None":
        """None where the saved SAE needs more than this module does (SAELens loads it)."""
        arch = cfg.get("architecture")
        if (not _saelens_6(cfg) or arch not in ARCHITECTURES or cfg.get("dtype", "float32") not in DTYPES
                or cfg.get("normalize_activations", "none") != "none"
                or cfg.get("reshape_activations", "none") != "none"
                or (arch == "topk" and not isinstance(cfg.get("k"), int))
                or (arch != "topk" and cfg.get("rescale_acts_by_decoder_norm"))):
            return None
        return cls(arch, int(cfg["d_in"]), int(cfg["d_sae"]), cfg.get("dtype", "float32"),
                   bool(cfg.get("apply_b_dec_to_input", True)), cfg.get("k"),
                   bool(cfg.get("rescale_acts_by_decoder_norm", False)))


def _saelens_6(cfg: dict) -> bool:
    """Saved by SAELens 6 or later (older configs are converted by SAELens's loader)."""
    from packaging.version import InvalidVersion, Version

    version = cfg.get("sae_lens_version") or (cfg.get("metadata") or {}).get("sae_lens_version")
    try:
        return bool(version) and Version(str(version)) >= Version("6.0.0")
    except InvalidVersion:
        return False


def _keys(arch: str) -> set[str]:
    return {"W_enc", "W_dec", "b_enc", "b_dec"} | ({"threshold"} if arch == "jumprelu" else set())


class SaeEncoder(nn.Module):
    """`encode(x)` and `decode(codes)` of a saved SAE; `W_dec`, `cfg.d_in`, `cfg.d_sae` like a
    SAELens SAE's."""

    def __init__(self, cfg: EncoderConfig, weights: dict[str, torch.Tensor]):
        super().__init__()
        self.cfg = cfg
        # W_enc a parameter, so that `next(encoder.parameters())` gives device and dtype (codes.py)
        self.W_enc = nn.Parameter(weights["W_enc"], requires_grad=False)
        for name, w in weights.items():
            if name != "W_enc":
                self.register_buffer(name, w)
        if cfg.rescale_acts_by_decoder_norm:
            self.register_buffer("dec_norm", self.W_dec.norm(dim=-1))

    def _pre(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.W_enc.dtype)
        if self.cfg.apply_b_dec_to_input:
            x = x - self.b_dec
        pre = x @ self.W_enc
        pre += self.b_enc  # in place: the same sum as `+`, without a second (n, d_sae) tensor
        if self.cfg.rescale_acts_by_decoder_norm:
            pre *= self.dec_norm
        return pre

    def _topk(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values, index = torch.topk(pre, k=self.cfg.k, dim=-1, sorted=False)
        return values.relu(), index

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pre = self._pre(x)
        if self.cfg.architecture == "standard":
            return pre.relu()
        if self.cfg.architecture == "jumprelu":
            return pre.relu() * (pre > self.threshold).to(pre.dtype)
        values, index = self._topk(pre)
        return torch.zeros_like(pre).scatter_(-1, index, values)

    @torch.no_grad()
    def encode_sparse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`encode(x)`'s nonzeros as (row, feature, value), sorted by row then feature (what
        `torch.nonzero` of the dense codes gives). TopK builds them from its k picks per row
        directly, never the dense (n, d_sae) codes: scattering and scanning those for nonzeros
        took a third of the encode."""
        if self.cfg.architecture != "topk":
            z = self.encode(x)
            rows, feats = torch.nonzero(z, as_tuple=True)
            return rows, feats, z[rows, feats]
        values, index = self._topk(self._pre(x))
        index, order = index.sort(-1)
        values = values.gather(-1, order)
        keep = values != 0  # as nonzero: drops zeros (relu'd), keeps NaN
        rows = torch.arange(len(index), device=index.device)[:, None].expand_as(index)
        return rows[keep], index[keep], values[keep]

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        if self.cfg.rescale_acts_by_decoder_norm:
            codes = codes * (1 / self.dec_norm)
        return codes @ self.W_dec + self.b_dec


def load_encoder(path, device="cpu", output: bool = True):
    """The SAE in a folder SAELens saved, for encoding and decoding: a `SaeEncoder` where the
    architecture allows (module docstring), else the SAE SAELens loads (`sae.load_sae`: same
    checks)."""
    path = Path(path)
    if output:
        verify_dir(path)
    try:
        cfg = EncoderConfig.from_saved(json.loads((path / "cfg.json").read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        cfg = None
    if cfg is None or not (path / SAE_WEIGHTS).is_file():
        return load_sae(path, device, output=False)
    weights = saved_weights(path, device)
    if set(weights) != _keys(cfg.architecture):
        return load_sae(path, device, output=False)
    dtype = DTYPES[cfg.dtype]
    return SaeEncoder(cfg, {k: v.to(dtype) for k, v in weights.items()}).eval()
