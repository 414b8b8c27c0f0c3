"""GGUF files the workflow writes with gguf-py's GGUFWriter: the reference again with per-tensor
types mixed the way llama.cpp's presets mix them (the `write_checkpoint` rule), or dequantized to
F32 (what llama-quantize starts from). Each is then read back like any user's GGUF file."""

from __future__ import annotations

from collections import Counter

from ..io import atomic_path
from ..model.storage import block_part
from ..paths import resolve_path
from ..progress import log


def write_mixed_gguf(source: str, mix: dict, out_path) -> None:
    """The `write_checkpoint` rule: the reference GGUF with each block part re-quantized to the type
    the mix names (`{attn: q8_0, mlp: q4_0}`); other tensors (embeddings, norms) copied as they
    are. Metadata (architecture, tokenizer) is copied, so transformers loads it like the source."""
    from gguf import GGMLQuantizationType

    types = {part: GGMLQuantizationType[t.upper()] for part, t in mix.items()}
    rewrite_gguf(source, lambda name: types.get(block_part(name)), out_path)



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
