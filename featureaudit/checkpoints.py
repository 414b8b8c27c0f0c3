"""Checkpoint variants: a file or folder that is already compressed, audited like a built-in
variant (`ckpt-<name>`), and the GGUF checkpoint the workflow writes itself.

What a checkpoint may be:
  a GGUF file           any type transformers' loader dequantizes (K- and IQ-quants included)
  a transformers folder plain safetensors (a fine-tune, a distillation, a pruned model), or with
                        a compressed-tensors `quantization_config` (GPTQ, AWQ, W8A8, FP8 as vLLM
                        loads them), read dequantized by compressed-tensors on CPU
It must have the reference's architecture, width, layer count, vocabulary and tokenizer:
start-up compares the configs (`check_compatible`), the job the tokenizers (`check_tokenizer`).

`write_mixed_gguf` is the body of the `write_checkpoint` rule: it writes the reference GGUF again with
per-tensor types mixed the way llama.cpp's presets mix them (e.g. attention Q8_0, MLP Q4_0),
through gguf-py's GGUFWriter; the result is then read back like any user's GGUF file.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from .errors import AuditError
from .io import atomic_path
from .progress import log

#: Config fields that must agree between a checkpoint and the reference.
COMPATIBLE = ("model_type", "hidden_size", "num_hidden_layers", "vocab_size")
#: Parts of a transformer block a mix assigns types to, by GGUF tensor name.
PARTS = {"attn": ("attn_q.", "attn_k.", "attn_v.", "attn_output."), "mlp": ("ffn_gate.", "ffn_up.", "ffn_down.")}


def is_gguf(path: str | os.PathLike) -> bool:
    return Path(path).is_file() and str(path).endswith(".gguf")


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
    from .models import load_model

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


def checkpoint_bits_per_weight(path) -> float | None:
    """Storage bits per weight of the block linears, read from the file: GGUF tensor sizes, a
    compressed-tensors scheme's bits and group, or the safetensors dtype."""
    if is_gguf(path):
        from gguf import GGUFReader

        n_bytes = n_weights = 0
        for t in GGUFReader(str(path)).tensors:
            if _part(t.name):
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
        blocks = Counter(t.tensor_type.name for t in tensors if _part(t.name))
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


def _part(tensor_name: str) -> str | None:
    if not tensor_name.startswith("blk.") or not tensor_name.endswith(".weight"):
        return None
    for part, prefixes in PARTS.items():
        if any(p in tensor_name for p in prefixes):
            return part
    return None


def write_mixed_gguf(source: str, mix: dict, out_path) -> None:
    """The `write_checkpoint` rule: the reference GGUF with each block part re-quantized to the type
    the mix names (`{attn: q8_0, mlp: q4_0}`); other tensors (embeddings, norms) copied as they
    are. Metadata (architecture, tokenizer) is copied, so transformers loads it like the source."""
    from gguf import GGMLQuantizationType

    types = {part: GGMLQuantizationType[t.upper()] for part, t in mix.items()}
    rewrite_gguf(source, lambda name: types.get(_part(name)), out_path)


def write_f32_gguf(source: str, out_path) -> None:
    """The `reference_gguf` rule: the reference GGUF with every tensor dequantized to F32, what
    llama-quantize starts from. F32, not F16: the preset is then made from exactly the weights
    the audit calls FP (the embedded reference's Q4_1 values are not all F16 numbers)."""
    from gguf import GGMLQuantizationType

    rewrite_gguf(source, lambda name: GGMLQuantizationType.F32, out_path)


def rewrite_gguf(source: str, target_of, out_path) -> None:
    """Copy a GGUF (metadata and tensors), storing each tensor as `target_of(name)` (None: as it is)."""
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter, quants

    from .models import resolve_path

    reader = GGUFReader(resolve_path(source))
    arch = reader.fields["general.architecture"].contents()
    plain = (GGMLQuantizationType.F32, GGMLQuantizationType.F16)
    written = Counter()
    with atomic_path(out_path) as tmp:
        writer = GGUFWriter(str(tmp), arch)
        for key, field in reader.fields.items():
            if key.startswith("GGUF.") or key == "general.architecture":
                continue  # the writer's own header fields
            vtype = field.types[0]
            writer.add_key_value(key, field.contents(), vtype,
                                 sub_type=field.types[-1] if vtype == GGUFValueType.ARRAY else None)
        for t in reader.tensors:
            target = target_of(t.name)
            shape = [int(x) for x in reversed(t.shape)]  # GGUF lists dims fastest first
            if target is None or target == t.tensor_type:
                raw_shape = t.data.shape if t.tensor_type in plain else None
                writer.add_tensor(t.name, np.asarray(t.data), raw_shape=raw_shape, raw_dtype=t.tensor_type)
                written[t.tensor_type.name] += 1
                continue
            if t.tensor_type in plain:
                weights = np.asarray(t.data, dtype=np.float32).reshape(shape)
            else:
                weights = quants.dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)
            if target == GGMLQuantizationType.F32:
                writer.add_tensor(t.name, weights, raw_dtype=target)
            else:
                writer.add_tensor(t.name, quants.quantize(weights, target), raw_dtype=target)
            written[target.name] += 1
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    log(f"wrote {out_path}: tensor types {dict(written)}")
