"""The reference (full-precision) model: loading it and its tokenizer, and the
`reference_model` rule, which checks once that it loads and records where it came from.

Sources:
  gguf  a GGUF file (path, or `package:<pkg>/<file>` for a file inside an installed package);
        transformers dequantizes it to the requested dtype. The dequantized weights are the
        reference weights.
  hf    a local folder saved by transformers, or a hub id (needs hub access).
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

from ..config import ModelRun, ModelSource
from ..errors import AuditError
from ..integrity import verify_dir
from ..io import atomic_dir, read_json
from ..paths import resolve_path
from ..progress import log
from .architecture import hidden_size, n_layers


def unsupported_gguf(e: Exception, name: str) -> AuditError:
    """transformers' GGUF loader knows only some architectures (not GPT-NeoX/Pythia)."""
    return AuditError(
        f"transformers cannot load this GGUF architecture ({str(e).splitlines()[0]}); "
        f"convert the model to a transformers folder and set models.{name}.source: hf"
    )


def _where(source: str, path: str, name: str) -> tuple[str, dict]:
    """(folder, extra from_pretrained kwargs) for a model source."""
    if source == "gguf":
        file = Path(resolve_path(path))
        if not file.is_file():
            raise AuditError(f"models.{name}.path: GGUF file {file} does not exist")
        return str(file.parent), {"gguf_file": file.name}
    if source == "hf":
        where = resolve_path(path)
        # A local folder loads from safetensors only: pickled weights (.bin) can run code.
        # (Hub downloads keep transformers' default: weights_only unpickling.)
        return where, ({"use_safetensors": True} if os.path.isdir(where) else {})
    raise AuditError(f"models.{name}.source must be gguf or hf, got {source!r}")


def load_tokenizer(source: str, path: str, name: str = "<name>"):
    from transformers import AutoTokenizer

    where, extra = _where(source, path, name)
    extra.pop("use_safetensors", None)  # a tokenizer has no weights
    with _load_errors(source, where, name):
        return AutoTokenizer.from_pretrained(where, **extra)


def load_model(source: str, path: str, dtype=None, device="cpu", name: str = "<name>", tokenizer: bool = True,
               **extra_kwargs):
    """(model, tokenizer) in eval mode on `device`; dtype defaults to float32; `extra_kwargs` go
    to `from_pretrained` (a quantization_config, say). `tokenizer=False` skips loading it (None
    in its place): ~3 s of a job that only needs token ids.
    (torch is imported here, not at the top: preflight uses this module's path helpers.)"""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(source, path, name) if tokenizer else None
    where, extra = _where(source, path, name)
    with _load_errors(source, where, name):
        model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype or torch.float32, **extra, **extra_kwargs)
    model.to(device).eval()
    model.requires_grad_(False)
    return model, tokenizer


@contextmanager
def _load_errors(source: str, where: str, name: str):
    """transformers' loading errors as one line naming the config key to change."""
    try:
        yield
    except ValueError as e:
        if "not supported" in str(e) and source == "gguf":
            raise unsupported_gguf(e, name) from None
        raise
    except OSError as e:
        if source == "hf" and not os.path.isdir(where):
            raise AuditError(
                f"could not download model {where!r} from the Hugging Face hub ({type(e).__name__}); "
                f"download it where you have access and set models.{name}.path to the local folder"
            ) from None
        raise AuditError(f"models.{name}.path: could not load {where} ({str(e).splitlines()[0]})") from None


# --------------------------------------------------------------------------- the rule

POINTER = "featureaudit-reference.json"
#: Inside the reference folder: a GGUF reference, dequantized once and saved as safetensors.
DEQUANTIZED = "dequantized"


def write_reference(source: ModelSource, out_dir) -> None:
    """Load the reference once (a broken path or hub id fails here, early) and record where it
    came from and its shape. A GGUF reference is saved dequantized (fp32 safetensors), since
    dequantizing the file again costs every model job ~20 s; the saved weights are bit-identical.
    Other sources are loaded from where they are (safetensors already load fast)."""
    import torch

    lm, tokenizer = load_model(source.source, source.path, torch.float32, "cpu", name=source.name)
    shape = {"n_layers": n_layers(lm), "d_model": hidden_size(lm), "n_params": sum(p.numel() for p in lm.parameters())}
    # A reference read from a quantized file is not full precision: record how it is stored,
    # so the summary can say which variants merely re-quantize it.
    from .storage import checkpoint_bits_per_weight, gguf_tensor_types

    where = resolve_path(source.path)
    stored = {"tensor_types": gguf_tensor_types(where) if source.source == "gguf" else None,
              "bits_per_weight": checkpoint_bits_per_weight(where) if os.path.exists(where) else None}
    with atomic_dir(out_dir) as tmp:
        record = {"source": source.source, "path": source.path, **shape, **stored}
        if source.source == "gguf":
            # transformers marks a GGUF-loaded model as quantized and refuses to save it; the
            # weights are plain fp32 tensors by now.
            lm.hf_quantizer = None
            if hasattr(lm.config, "quantization_config"):
                del lm.config.quantization_config
            lm.save_pretrained(Path(tmp) / DEQUANTIZED)
            tokenizer.save_pretrained(Path(tmp) / DEQUANTIZED)
            record["local"] = DEQUANTIZED
        (Path(tmp) / POINTER).write_text(json.dumps(record))
    log(f"reference {source.name}: {shape}, stored as {stored}")


def reference_record(ref_dir) -> dict:
    """What write_reference recorded: source, path, shape, how the weights are stored."""
    return read_json(verify_dir(ref_dir) / POINTER, verify=False)


def load_reference(ref_dir, run: ModelRun, tokenizer: bool = True):
    """(model, tokenizer) as recorded by `write_reference`, on the run's device and dtype
    (tokenizer None with `tokenizer=False`)."""
    from ..device import resolve_device, resolve_dtype

    pointer = reference_record(ref_dir)
    device = resolve_device(run.device)
    dtype = resolve_dtype(run.dtype, device)
    if pointer.get("local"):
        return load_model("hf", str(Path(ref_dir) / pointer["local"]), dtype, device, name=run.name, tokenizer=tokenizer)
    return load_model(pointer["source"], pointer["path"], dtype, device, name=run.name, tokenizer=tokenizer)
