"""Compressed variants of a model: round-to-nearest quantization and magnitude pruning here,
the shipped formats through their own libraries (formats.py), checkpoints (checkpoints.py).
Variant names (variants.py) are the file-path vocabulary of the workflow.

Weights are changed in place on a deep copy; the reference model is never touched.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import torch
from torch import nn

from ..errors import AuditError
from ..io import read_json
from ..model.architecture import block_linears
from ..variants import Variant, check_bits, check_sparsity, parse_variant
from . import formats

# --------------------------------------------------------------------------- quantization


def rtn_quantize(weight: torch.Tensor, bits: int, group_size: int | None = None, symmetric: bool = True,
                 per_tensor: bool = False) -> torch.Tensor:
    """Round-to-nearest fake quantization of a (out, in) weight; returns the dequantized weight.

    Symmetric: scale = max|w| / (2^(b-1) - 1), q = clamp(round(w/scale), -2^(b-1), 2^(b-1) - 1).
    Asymmetric: scale = (max - min) / (2^b - 1), zero = round(-min/scale), q in [0, 2^b - 1].
    Statistics are per output row, per group of `group_size` consecutive input columns, or over
    the whole matrix (`per_tensor`).
    """
    check_bits(bits)
    out_features, in_features = weight.shape
    w = weight.detach().to(torch.float32)
    if per_tensor:
        w = w.reshape(1, 1, -1)
    elif group_size:
        if in_features % group_size:
            raise AuditError(
                f"quantization group_size {group_size} does not divide the input width {in_features}; "
                "choose a divisor or drop group_size for per-channel scales"
            )
        w = w.reshape(out_features, in_features // group_size, group_size)
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        scale = w.abs().amax(dim=-1, keepdim=True) / qmax
        scale = torch.where(scale == 0, torch.ones_like(scale), scale)
        q = torch.clamp(torch.round(w / scale), -(qmax + 1), qmax)
        deq = q * scale
    else:
        qmax = 2**bits - 1
        lo = w.amin(dim=-1, keepdim=True)
        hi = w.amax(dim=-1, keepdim=True)
        scale = (hi - lo) / qmax
        scale = torch.where(scale == 0, torch.ones_like(scale), scale)
        zero = torch.round(-lo / scale)
        q = torch.clamp(torch.round(w / scale) + zero, 0, qmax)
        deq = (q - zero) * scale
    return deq.reshape(out_features, in_features).to(weight.dtype)


# --------------------------------------------------------------------------- pruning


def smallest_k_mask(abs_values: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of exactly k smallest entries of a flat tensor.

    kthvalue, not torch.quantile (which fails above 16 M elements). Ties at the threshold are
    broken by position so the sparsity is exact even on weights with few distinct values
    (dequantized GGUF weights have 16 per block).
    """
    mask = torch.zeros_like(abs_values, dtype=torch.bool)
    if k <= 0:
        return mask
    threshold = torch.kthvalue(abs_values.float(), k).values
    mask = abs_values < threshold
    missing = k - int(mask.sum())
    if missing > 0:
        ties = torch.nonzero(abs_values == threshold).flatten()[:missing]
        mask[ties] = True
    return mask


@torch.no_grad()
def magnitude_prune_(linears: list[nn.Linear], sparsity: float, scope: str = "layer") -> None:
    """Zero the smallest-magnitude weights in place; permanent (no masks or hooks remain)."""
    check_sparsity(sparsity)
    if scope == "layer":
        for lin in linears:
            flat = lin.weight.view(-1)
            flat[smallest_k_mask(flat.abs(), round(sparsity * flat.numel()))] = 0
    elif scope == "global":
        flats = [lin.weight.view(-1) for lin in linears]
        everything = torch.cat([f.abs().float() for f in flats])
        mask = smallest_k_mask(everything, round(sparsity * everything.numel()))
        start = 0
        for flat in flats:
            flat[mask[start : start + flat.numel()]] = 0
            start += flat.numel()
    else:
        raise AuditError(f"pruning scope must be 'layer' or 'global', got {scope!r}")


# --------------------------------------------------------------------------- variants


@torch.no_grad()
def apply_variant(model: nn.Module, variant: Variant, matched_sparsity: float | None = None) -> nn.Module:
    """A deep copy of `model` with the variant's compression applied to every block linear."""
    compressed = copy.deepcopy(model)
    if variant.kind == "fp":
        return compressed
    linears = [lin for _, lin in block_linears(compressed)]
    block = variant.block
    if block:  # start-up checks this for local models; hub models meet it here
        widths = sorted({lin.in_features for lin in linears if lin.in_features % block})
        if widths:
            raise AuditError(f"{variant.name} needs matrix widths divisible by {block}, but the model has {widths}; "
                             "drop the variant (or choose a group size that divides every width)")
    if variant.kind == "rtn":
        for lin in linears:
            lin.weight.copy_(rtn_quantize(lin.weight, variant.bits, variant.group_size, variant.symmetric,
                                          variant.per_tensor))
    elif variant.kind == "gguf":
        for lin in linears:
            lin.weight.copy_(formats.gguf_round_trip(lin.weight, variant.fmt))
    elif variant.kind == "bnb":
        for lin in linears:
            lin.weight.copy_(formats.bnb_round_trip(lin.weight, variant.fmt))
    elif variant.kind == "torchao":
        formats.torchao_quantize_(compressed, linears, variant.fmt)
    elif variant.kind == "magnitude":
        magnitude_prune_(linears, variant.sparsity, variant.scope)
    elif variant.kind == "match":
        if matched_sparsity is None:
            raise AuditError(f"variant {variant.name} needs its matched sparsity (run the match_pruning stage)")
        magnitude_prune_(linears, matched_sparsity, variant.scope)
    return compressed


def build_variant(reference: nn.Module, variant: str, pruning_scope: str = "layer", matched_json=None,
                  checkpoint=None, reference_tokenizer=None) -> nn.Module:
    """The named variant of a loaded reference: the reference itself for `fp`, a checkpoint
    loaded from `checkpoint` (same dtype and device as the reference; its tokenizer checked
    against `reference_tokenizer`), else a compressed copy. A `match-` variant prunes at the
    sparsity recorded in `matched_json`, with the configured pruning scope."""
    v = parse_variant(variant)
    if v.kind == "fp":
        return reference
    if v.kind == "checkpoint":
        from .checkpoints import check_tokenizer, load_checkpoint

        p = next(reference.parameters())
        from ..integrity import sidecar, verify_file

        if sidecar(checkpoint).exists():  # written by the workflow (a mix), not the user's file
            verify_file(checkpoint)
        model, tokenizer = load_checkpoint(checkpoint, p.dtype, p.device, key=variant)
        if reference_tokenizer is not None:
            check_tokenizer(reference_tokenizer, tokenizer, variant)
        return model
    matched = None
    if v.kind == "match":
        v = replace(v, scope=pruning_scope)
        matched = read_json(matched_json)["matched_sparsity"]
    return apply_variant(reference, v, matched)


@torch.no_grad()
def weight_error(reference: nn.Module, variant: nn.Module) -> float:
    """Relative Frobenius error of the block linears' weights (as the variant computes with
    them) against the reference's: 0 means the variant's weights are the reference's."""
    err = total = 0.0
    for (_, a), (_, b) in zip(block_linears(reference), block_linears(variant)):
        wa = a.weight.detach().float()
        wb = formats.effective_weight(b).float().to(wa.device)
        err += float(((wb - wa) ** 2).sum())
        total += float((wa**2).sum())
    return (err / total) ** 0.5 if total else 0.0


def bits_per_weight(model: nn.Module, variant: str, checkpoint=None) -> float | None:
    """Storage bits per block-linear weight, averaged over the weights (None where unknown)."""
    v = parse_variant(variant)
    if v.kind == "checkpoint":
        from ..model.storage import checkpoint_bits_per_weight

        return checkpoint_bits_per_weight(checkpoint)
    if v.kind not in ("rtn", "gguf", "bnb", "torchao"):
        return None
    linears = [lin for _, lin in block_linears(model)]
    n = sum(lin.weight.numel() for lin in linears)
    return sum(formats.bits_per_weight(v, lin.in_features, lin.weight.numel()) * lin.weight.numel()
               for lin in linears) / n
