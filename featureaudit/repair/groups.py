"""Tensor groups: the unit a sensitivity scan quantizes and an allocator upgrades. One group is
one block's attention (q, k, v, output) or its MLP (gate, up, down), named `blk.<L>.<part>`
with the GGUF tensor names llama-quantize reads, and matched to the transformers linears the
scan changes."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import AuditError
from ..model.storage import block_part

PARTS = ("attn", "mlp")


@dataclass(frozen=True)
class Group:
    layer: int
    part: str  # attn | mlp
    tensors: tuple  # GGUF tensor names
    n_params: int

    @property
    def name(self) -> str:
        return f"blk.{self.layer}.{self.part}"


def type_bits(type_name: str) -> float:
    """Bits per weight of a GGUF type, scales included (gguf-py's block sizes)."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        qt = GGMLQuantizationType[type_name.upper()]
    except KeyError:
        raise AuditError(f"{type_name!r} is not a GGUF type; use one of {', '.join(MIX_TYPES)}") from None
    block, size = GGML_QUANT_SIZES[qt]
    return 8 * size / block


def gguf_groups(path) -> list[Group]:
    """Every block's attention and MLP group of a GGUF file, in layer order."""
    from gguf import GGUFReader

    found: dict[tuple[int, str], list] = {}
    for t in GGUFReader(str(path)).tensors:
        part = block_part(t.name)
        if part is None:
            continue
        layer = int(t.name.split(".")[1])
        found.setdefault((layer, part), []).append((t.name, int(t.n_elements)))
    return [Group(layer, part, tuple(n for n, _ in sorted(ts)), sum(k for _, k in ts))
            for (layer, part), ts in sorted(found.items(), key=lambda kv: (kv[0][0], PARTS.index(kv[0][1])))]


def linear_part(name: str) -> str:
    """attn or mlp for a transformers linear inside a block (model.architecture.block_linears)."""
    return "attn" if "attn" in name or "attention" in name else "mlp"


def group_linears(model, layer: int, part: str) -> list:
    """The nn.Linear modules of one group of a transformers model."""
    from ..model.architecture import block_linears

    out = [lin for name, lin in block_linears(model) if name.split(".")[1] == str(layer) and linear_part(name) == part]
    if not out:
        raise AuditError(f"the model has no {part} linears in block {layer}")
    return out


def model_groups(model) -> list[Group]:
    """Every block's attention and MLP group of a transformers model (no GGUF names)."""
    from ..model.architecture import block_linears

    sizes: dict[tuple[int, str], int] = {}
    for name, lin in block_linears(model):
        key = (int(name.split(".")[1]), linear_part(name))
        sizes[key] = sizes.get(key, 0) + lin.weight.numel()
    return [Group(layer, part, (), n) for (layer, part), n in sorted(sizes.items(), key=lambda kv: (kv[0][0], PARTS.index(kv[0][1])))]
