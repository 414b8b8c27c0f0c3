"""Quantization formats people ship, made by the format's own library on the block linears:

  gguf-*   GGUF block types through gguf-py (`gguf.quants.quantize`, then `dequantize`): what
           llama.cpp would store, as transformers would load it back
  bnb-*    bitsandbytes 4-bit (`quantize_4bit` / `dequantize_4bit`, blocks of 64), as
           `load_in_4bit` stores weights
  ao-*     torchao `quantize_`: W8A8 (int8 per-channel weights, int8 per-token dynamic
           activations), W4A8 (int4 weights in groups of 32, int8 activations), and FP8 E4M3
           weights and activations (torchao's fake-quant, which runs on CPU). The activations
           at the SAE's hook are those of this quantized forward.

Weight-only formats are applied as their dequantized weights (what the runtime computes
with); torchao replaces the linears. Each function changes a model in place; builtin.py
makes the copy.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import AuditError
from ..variants import BNB_BLOCK, GGUF_BLOCK, TORCHAO_W4_GROUP


def _gguf_type(fmt: str):
    from gguf import GGMLQuantizationType

    return GGMLQuantizationType[fmt.upper()]


def gguf_round_trip(weight: torch.Tensor, fmt: str) -> torch.Tensor:
    """`dequantize(quantize(w))` with gguf-py, blocks along the input dimension."""
    from gguf import quants

    if weight.shape[-1] % GGUF_BLOCK:
        raise AuditError(f"gguf-{fmt} needs matrix widths divisible by {GGUF_BLOCK}, got {weight.shape[-1]}")
    qt = _gguf_type(fmt)
    w = weight.detach().to(torch.float32).cpu().numpy()
    out = quants.dequantize(quants.quantize(w, qt), qt)
    return torch.from_numpy(out.reshape(w.shape)).to(weight.dtype).to(weight.device)


def bnb_round_trip(weight: torch.Tensor, fmt: str) -> torch.Tensor:
    """bitsandbytes 4-bit quantize then dequantize (blocks of 64 over the flattened matrix)."""
    import bitsandbytes.functional as F

    w = weight.detach().to(torch.float32)
    q, state = F.quantize_4bit(w, blocksize=BNB_BLOCK, quant_type=fmt)
    return F.dequantize_4bit(q, state).reshape(w.shape).to(weight.dtype)


def torchao_config(fmt: str):
    if fmt == "w8a8":
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig

        return Int8DynamicActivationInt8WeightConfig()
    if fmt == "w4a8":
        from torchao.quantization import Int8DynamicActivationIntxWeightConfig, PerGroup

        return Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4,
                                                     weight_granularity=PerGroup(TORCHAO_W4_GROUP))
    if fmt == "fp8":
        from torchao.quantization.qat import Float8FakeQuantizeConfig, QATConfig

        return QATConfig(activation_config=Float8FakeQuantizeConfig(), weight_config=Float8FakeQuantizeConfig(),
                         step="prepare")
    raise AuditError(f"unknown torchao scheme {fmt!r}")


def torchao_quantize_(model: nn.Module, linears: list[nn.Linear], fmt: str) -> None:
    """torchao's quantize_ on exactly the given linears (the blocks'; not the LM head). W8A8 on
    a CPU runs as `W8A8Linear` (same quantization, float sums): torch's int8 matmul has no fast
    CPU kernel (7-40x slower than fp32 on this project's machines)."""
    from torchao.quantization import quantize_

    if fmt == "w8a8" and next(model.parameters()).device.type == "cpu":
        for module in list(model.modules()):
            for name, child in list(module.named_children()):
                if any(child is lin for lin in linears):
                    setattr(module, name, W8A8Linear(child))
        return
    chosen = {id(lin) for lin in linears}
    quantize_(model, torchao_config(fmt), filter_fn=lambda module, fqn: id(module) in chosen)


def _int8_symmetric(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 values as float, scale) per row of the last dimension, by torchao's own primitives
    with the settings of its Int8Tensor (symmetric, levels -128..127, float32 eps)."""
    from torchao.quantization.quant_primitives import MappingType, choose_qparams_affine, quantize_affine

    block = (1,) * (x.ndim - 1) + (x.shape[-1],)
    scale, zero = choose_qparams_affine(x, MappingType.SYMMETRIC, block, torch.int8, quant_min=-128, quant_max=127,
                                        eps=torch.finfo(torch.float32).eps, scale_dtype=torch.float32,
                                        zero_point_dtype=torch.int8, keepdim=True)
    q = quantize_affine(x, block, scale, zero, torch.int8, quant_min=-128, quant_max=127)
    return q.to(torch.float32), scale


class W8A8Linear(nn.Linear):
    """torchao's W8A8 (Int8DynamicActivationInt8WeightConfig) with the integer matmul done in
    float32: int8 x int8 products summed in float32 are exact while sums stay below 2**24, and
    are then scaled in torchao's order (activation scale, then weight scale). `weight` holds the
    dequantized weight (what `effective_weight` and the weight error read)."""

    def __init__(self, linear: nn.Linear):
        super().__init__(linear.in_features, linear.out_features, bias=linear.bias is not None,
                         device=linear.weight.device, dtype=linear.weight.dtype)
        qw, sw = _int8_symmetric(linear.weight.detach().float())
        self.register_buffer("qw_t", qw.T.contiguous())
        self.register_buffer("sw", sw.reshape(1, -1))
        with torch.no_grad():
            self.weight.copy_((qw * sw).to(self.weight.dtype))
            if linear.bias is not None:
                self.bias.copy_(linear.bias)

    def forward(self, x):
        qx, sx = _int8_symmetric(x.float())
        y = (qx @ self.qw_t) * sx * self.sw
        return (y if self.bias is None else y + self.bias).to(x.dtype)


def effective_weight(linear: nn.Module) -> torch.Tensor:
    """The float weight a linear computes with: dequantized torchao tensors, fake-quantized
    weights, or the plain weight."""
    w = linear.weight
    if hasattr(linear, "weight_fake_quantizer") and linear.weight_fake_quantizer is not None:
        return linear.weight_fake_quantizer(w).detach()
    if type(w) not in (torch.Tensor, nn.Parameter) and hasattr(w, "dequantize"):
        return w.dequantize()
    return w.detach()


def bits_per_weight(variant, in_features: int, n_elements: int) -> float:
    """Storage bits per weight of one matrix, scales included (fp16 scales unless the format
    says otherwise), so formats compare at their real cost."""
    if variant.kind == "rtn":
        group = n_elements if variant.per_tensor else (variant.group_size or in_features)
        per_group = 16 + (0 if variant.symmetric else variant.bits)  # scale (+ zero point)
        return variant.bits + per_group / group
    if variant.kind == "gguf":
        from gguf import GGML_QUANT_SIZES

        block, size = GGML_QUANT_SIZES[_gguf_type(variant.fmt)]
        return size * 8 / block
    if variant.kind == "bnb":
        return 4 + 32 / BNB_BLOCK  # fp32 absmax per block (no double quantization)
    if variant.kind == "torchao":
        return {"w8a8": 8 + 16 / in_features, "w4a8": 4 + 16 / TORCHAO_W4_GROUP, "fp8": 8.0}[variant.fmt]
    raise ValueError(f"no bits per weight for {variant.name}")
