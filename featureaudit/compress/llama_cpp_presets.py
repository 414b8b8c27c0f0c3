"""The llama.cpp producer's rule bodies: the reference as an F32 GGUF, an importance matrix
on the calibration tokens, and a preset quantized by llama-quantize (whose per-tensor types
are then recorded by the variant job, from the file)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ..config import ModelSource
from ..inputs.calibration import calibration_text, read_calibration
from ..io import atomic_path
from ..model.reference import load_tokenizer
from ..paths import resolve_path
from ..progress import log
from . import llama_cpp
from .gguf_writer import write_f32_gguf


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


def write_preset(gguf, preset: str, imatrix, out_path, threads: int) -> None:
    with atomic_path(out_path) as out:
        llama_cpp.quantize(gguf, out, preset, imatrix=imatrix or None, threads=threads)
    counts = llama_cpp.type_counts(llama_cpp.tensor_types(out_path))
    log(f"llama-quantize {preset}{' with importance matrix' if imatrix else ''}: tensor types {counts}")
