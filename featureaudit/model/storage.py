"""How a model's weights are stored, read from the file without loading the model: the tensor
types of a GGUF, a compressed-tensors scheme, bits per weight of the block linears. The
reference's record and every checkpoint variant's metrics use it."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

#: Parts of a transformer block a mix assigns types to, by GGUF tensor name.
PARTS = {"attn": ("attn_q.", "attn_k.", "attn_v.", "attn_output."), "mlp": ("ffn_gate.", "ffn_up.", "ffn_down.")}


def is_gguf(path: str | os.PathLike) -> bool:
    return Path(path).is_file() and str(path).endswith(".gguf")


def checkpoint_bits_per_weight(path) -> float | None:
    """Storage bits per weight of the block linears, read from the file: GGUF tensor sizes, a
    compressed-tensors scheme's bits and group, or the safetensors dtype."""
    if is_gguf(path):
        from gguf import GGUFReader

        n_bytes = n_weights = 0
        for t in GGUFReader(str(path)).tensors:
            if block_part(t.name):
                n_bytes += int(t.n_bytes)
                n_weights += int(t.n_elements)
        return 8 * n_bytes / n_weights if n_weights else None
    config = json.loads((Path(path) / "config.json").read_text())
    quant = config.get("quantization_config") or {}
    for group in (quant.get("config_groups") or {}).values():
        w = group.get("weights") or {}
        if w.get("num_bits"):
            return w["num_bits"] + 16 / (w.get("group_size") or config.get("hidden_size"))
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "float32")
    return {"float32": 32.0, "bfloat16": 16.0, "float16": 16.0}.get(dtype)


def checkpoint_metadata(path) -> dict:
    """What the variant's metrics record of how a checkpoint was stored: for a GGUF, the type of
    every tensor counted (all tensors, and the block linears alone: llama.cpp's presets fall
    back to other types on widths that are not a multiple of 256); for a compressed-tensors
    folder, its format and schemes."""
    if is_gguf(path):
        from gguf import GGUFReader

        tensors = GGUFReader(str(path)).tensors
        blocks = Counter(t.tensor_type.name for t in tensors if block_part(t.name))
        return {"tensor_types": dict(Counter(t.tensor_type.name for t in tensors).most_common()),
                "block_tensor_types": dict(blocks.most_common())}
    quant = json.loads((Path(path) / "config.json").read_text()).get("quantization_config") or {}
    if not quant:
        return {}
    schemes = [{k: g.get(k) for k in ("weights", "input_activations") if g.get(k)}
               for g in (quant.get("config_groups") or {}).values()]
    return {"compression": {"format": quant.get("format"), "schemes": schemes,
                            "sparsity": quant.get("sparsity_config")}}


def gguf_tensor_types(path) -> dict[str, int]:
    """How many tensors of each type a GGUF file holds (the reference's own quantization)."""
    from gguf import GGUFReader

    return dict(Counter(t.tensor_type.name for t in GGUFReader(str(path)).tensors))


def block_part(tensor_name: str) -> str | None:
    if not tensor_name.startswith("blk.") or not tensor_name.endswith(".weight"):
        return None
    for part, prefixes in PARTS.items():
        if any(p in tensor_name for p in prefixes):
            return part
    return None
