"""Checkpoint variants: a file or folder that is already compressed, audited like a built-in
variant (`ckpt-<name>`), and the GGUF checkpoint the workflow writes itself.

What a checkpoint may be:
  a GGUF file           any type transformers' loader dequantizes (K- and IQ-quants included)
  a transformers folder plain safetensors (a fine-tune, a distillation, a pruned model), or with
                        a compressed-tensors `quantization_config` (GPTQ, AWQ, W8A8, FP8 as vLLM
                        loads them), read dequantized by compressed-tensors on CPU
It must have the reference's architecture, width, layer count, vocabulary and tokenizer:
start-up compares the configs (`check_compatible`), the job the tokenizers (`check_tokenizer`).

How a checkpoint is stored (tensor types, bits per weight) is read by `model/storage.py`; the
GGUF files the workflow writes itself come from `gguf_writer.py`.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import AuditError
from ..model.storage import is_gguf
from ..progress import log

#: Config fields that must agree between a checkpoint and the reference.
COMPATIBLE = ("model_type", "hidden_size", "num_hidden_layers", "vocab_size")


def check_compatible(reference: dict, checkpoint: dict, key: str) -> None:
    """One line naming every field where the checkpoint's config differs from the reference's."""
    diff = [f"{f} {checkpoint.get(f)} vs {reference.get(f)}" for f in COMPATIBLE
            if checkpoint.get(f) is not None and reference.get(f) is not None and checkpoint.get(f) != reference.get(f)]
    if diff:
        raise AuditError(f"{key}: the checkpoint is not a variant of the reference ({'; '.join(diff)}); "
                         "audit it against a reference of its own architecture")


def check_tokenizer(reference_tokenizer, checkpoint_tokenizer, key: str) -> None:
    """Every token of the reference has the same id in the checkpoint (the audit's token ids
    were made by the reference's tokenizer). Extra tokens in the checkpoint (transformers'
    GGUF reader adds an <|endoftext|>, say) are never produced, so they do not matter."""
    a, b = reference_tokenizer.get_vocab(), checkpoint_tokenizer.get_vocab()
    differ = [t for t, i in a.items() if b.get(t) != i]
    if differ:
        raise AuditError(f"{key}: the checkpoint's tokenizer differs from the reference's ({len(differ)} of {len(a)} "
                         f"tokens have other ids, e.g. {differ[0]!r}); variants must read the same token ids")


def load_checkpoint(path, dtype, device, key: str):
    """(model, tokenizer) of a checkpoint, dequantized to `dtype` on `device`."""
    from ..model.reference import load_model

    if is_gguf(path):
        return load_model("gguf", str(path), dtype, device, name=key)
    config = Path(path) / "config.json"
    if not config.is_file():
        raise AuditError(f"{key}: {path} is neither a .gguf file nor a transformers folder (no config.json)")
    quant = json.loads(config.read_text()).get("quantization_config") or {}
    extra = {}
    if quant.get("quant_method") == "compressed-tensors":
        from transformers import CompressedTensorsConfig

        extra["quantization_config"] = CompressedTensorsConfig(dequantize=True)
    model, tokenizer = load_model("hf", str(path), dtype, device, name=key, **extra)
    if quant.get("quant_method") == "compressed-tensors":
        quantize_input_activations(model, quant, key)
    return model, tokenizer


def quantize_input_activations(model, quant: dict, key: str) -> int:
    """Put back what loading dequantized drops: a W8A8 / FP8-dynamic checkpoint quantizes each
    targeted Linear's input on the fly (vLLM does it in its kernels). A forward pre-hook runs
    compressed-tensors' own dynamic quantization on the input, the way its fake-quant forward
    (`forward_quantize`) does; weights are already the dequantized ones. Returns the number of
    modules hooked."""
    from compressed_tensors.quantization import QuantizationArgs
    from compressed_tensors.quantization.lifecycle.forward import fake_quantize
    from compressed_tensors.quantization.utils import compute_dynamic_scales_and_zp
    from compressed_tensors.utils import match_named_modules

    hooked = 0
    for group in (quant.get("config_groups") or {}).values():
        raw = group.get("input_activations")
        if not raw:
            continue
        args = QuantizationArgs.model_validate(raw)
        if args.dynamic is not True:
            raise AuditError(f"{key}: static input-activation quantization (stored scales) is not read yet; "
                             "audit a dynamic-activation or weight-only checkpoint")

        def pre_hook(module, inputs, args=args):
            x = inputs[0]
            scale, zero_point = compute_dynamic_scales_and_zp(value=x, args=args, module=module)
            return (fake_quantize(x=x, scale=scale, zero_point=zero_point, args=args),) + tuple(inputs[1:])

        for _, module in match_named_modules(model, group.get("targets"), quant.get("ignore")):
            module.register_forward_pre_hook(pre_hook)
            hooked += 1
    if hooked:
        log(f"{key}: input activations quantized on the fly in {hooked} modules (as the checkpoint's scheme says)")
    return hooked


