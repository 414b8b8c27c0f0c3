"""Checks that run when the workflow starts, before any job: everything that can be known
from local files (hook layer in range, SAE width, SAE hook) fails here in one line rather than
after an hour of capture. Nothing here touches the network; hub ids are checked when loaded."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .architecture import config_value, hidden_size, n_layers, text_config
from .errors import AuditError
from .io import atomic_path
from .hooks import parse_hook
from .models import resolve_path, unsupported_gguf
from .sae import check_hook, check_width, saved_sae_metadata


def model_shape(source: str, path: str, name: str = "<name>") -> dict | None:
    """{'n_layers', 'd_model', 'n_params'} from a local model's config, or None if not local."""
    where = resolve_path(path)
    if source == "gguf":
        if not os.path.isfile(where):
            raise AuditError(f"GGUF file {where} does not exist; fix models.<name>.path")
        cfg = _gguf_config(where, name)
    elif os.path.isfile(os.path.join(where, "config.json")):
        # Plain JSON: importing transformers here would cost seconds on every Snakemake start
        # (and on a cluster, in every job).
        cfg = json.loads(Path(where, "config.json").read_text())
    elif os.path.isdir(where):
        raise AuditError(f"{where} has no config.json; point models.<name>.path at a transformers model folder")
    else:
        return None
    d, L = hidden_size(cfg), n_layers(cfg)
    ffn = int(config_value(cfg, "intermediate_size") or 4 * d)
    n_params = L * (4 * d * d + 3 * d * ffn) + 2 * int(config_value(cfg, "vocab_size")) * d
    return {"n_layers": L, "d_model": d, "n_params": n_params}


#: Where the config of a GGUF file is remembered between starts, below the working directory.
GGUF_CONFIG_CACHE = Path(".snakemake") / "featureaudit" / "gguf_configs.json"


def _gguf_config(file: str, name: str) -> dict:
    """The transformers config of a GGUF file. Reading it means importing transformers and
    parsing the whole header (vocabulary included): 10-20 s on a small CPU, on every start. So
    the result is kept, keyed by the file's path, size and modification time."""
    stat = os.stat(file)
    key = f"{os.path.realpath(file)}:{stat.st_size}:{stat.st_mtime_ns}"
    try:
        cached = json.loads(GGUF_CONFIG_CACHE.read_text())
    except (OSError, ValueError):
        cached = {}
    if key in cached:
        return cached[key]
    from transformers import AutoConfig

    try:
        cfg = AutoConfig.from_pretrained(str(Path(file).parent), gguf_file=Path(file).name)
    except ValueError as e:
        if "not supported" in str(e):
            raise unsupported_gguf(e, name) from None
        raise
    keep = ("num_hidden_layers", "hidden_size", "intermediate_size", "vocab_size", "model_type")
    cfg = {k: v for k, v in text_config(cfg).to_dict().items() if k in keep}
    try:
        GGUF_CONFIG_CACHE.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(GGUF_CONFIG_CACHE) as tmp:
            tmp.write_text(json.dumps({**cached, key: cfg}, indent=1))
    except OSError:
        pass  # a read-only working directory: no cache, same answer
    return cfg


def guess_shape(path: str) -> dict:
    """For hub ids (not local): size from the name ('70m', '2b'), for resource requests only."""
    m = re.search(r"(\d+(?:\.\d+)?)([mb])\b", path.lower())
    n = float(m[1]) * (1e6 if m[2] == "m" else 1e9) if m else 1e9
    return {"n_layers": None, "d_model": int(512 * max(1.0, (n / 7e7) ** 0.33)), "n_params": int(n)}


def preflight(cfg) -> dict:
    shapes = {}
    for name, m in cfg.models.items():
        try:
            shape = model_shape(m.source, m.path, name)
        except AuditError as e:
            raise AuditError(f"models.{name}: {e}") from None
        parse_hook(m.hook, shape["n_layers"] if shape else None)
        if shape and m.sae.source == "disk":
            meta = saved_sae_metadata(m.sae.path, key=f"models.{name}.sae.path")
            try:
                check_width(meta["d_in"], shape["d_model"], f"the activation at {m.hook}")
            except AuditError as e:
                raise AuditError(f"models.{name}.sae: {e}") from None
            check_hook(meta["hook_name"], m.hook, name)
        shapes[name] = shape or guess_shape(m.path)
    return shapes
