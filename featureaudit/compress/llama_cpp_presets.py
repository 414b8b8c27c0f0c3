"""The llama.cpp producer's rule bodies: the reference as an F32 GGUF, an importance matrix
on the calibration tokens, and a preset quantized by llama-quantize, optionally with a recipe
file of per-tensor types (whose types are then checked against the file written; the variant
job records them)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ..config import ModelSource
from ..errors import AuditError
from ..inputs.calibration import calibration_text, read_calibration
from ..io import atomic_path
from ..model.reference import load_tokenizer
from ..model.storage import checkpoint_bits_per_weight
from ..paths import resolve_path
from ..progress import log
from . import llama_cpp
from .gguf_writer import write_f32_gguf
from .recipe_file import recipe_types


def write_reference_gguf(source: str, out_path) -> None:
    llama_cpp.install_dir()  # fail before writing 0.5 GB if llama.cpp is missing
    write_f32_gguf(resolve_path(source), out_path)


def write_imatrix(source: ModelSource, gguf, calibration, out_path, threads: int) -> None:
    """llama-imatrix over the calibration split's text, one chunk per calibration sequence."""
    tokenizer = load_tokenizer(source.source, source.path, source.name)
    n_seq, length = read_calibration(calibration).shape
    with tempfile.TemporaryDirectory() as tmp, atomic_path(out_path) as out:
        text, made = Path(tmp) / "calibration.txt", Path(tmp) / "imatrix.gguf"  # the format follows the extension
        text.write_text(calibration_text(calibration, tokenizer), encoding="utf-8")
        llama_cpp.compute_imatrix(gguf, text, made, context=length, chunks=n_seq, threads=threads)
        shutil.copyfile(made, out)
    log(f"importance matrix over {n_seq} calibration chunks of {length} tokens")


def write_preset(gguf, preset: str, imatrix, out_path, threads: int, recipe=None, pure: bool = False) -> None:
    """The `llama_quantize` rule: llama-quantize as a user runs it. With a recipe file, every
    tensor it names must then be stored in that type (read back with gguf-py): a silent fallback
    (a K-type on a width 256 does not divide) would otherwise ship another file than the
    recipe says."""
    with atomic_path(out_path) as out:
        llama_cpp.quantize(gguf, out, preset, imatrix=imatrix or None, threads=threads, tensor_type_file=recipe,
                           pure=pure)
        types = llama_cpp.tensor_types(out)
        if recipe:
            stored = {k: v.lower() for k, v in types.items()}
            wanted = recipe_types(Path(recipe).read_text(), list(stored))
            differ = [f"{n} {stored[n]} (recipe {t})" for n, t in wanted.items() if stored[n] != t]
            if differ:
                raise AuditError(f"llama-quantize stored {len(differ)} tensors in other types than the recipe names, "
                                 f"e.g. {differ[0]}; use 32-block types (q4_0, q5_0, q8_0, ...) on widths that 256 "
                                 "does not divide")
    how = (" with importance matrix" if imatrix else "") + (f" and {Path(recipe).name}" if recipe else "")
    log(f"llama-quantize {preset}{how}: tensor types {llama_cpp.type_counts(types)}, "
        f"{checkpoint_bits_per_weight(out_path):.4f} bits per weight over the block matrices")
