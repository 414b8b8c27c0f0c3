"""Checks that run when the workflow starts, before any job: everything that can be known
from local files (hook layer in range, SAE width, SAE hook) fails here in one line rather than
after an hour of capture. Nothing here touches the network; hub ids are checked when loaded."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .architecture import config_value, hidden_size, linear_input_widths, n_layers, text_config
from .checkpoints import check_compatible
from .errors import AuditError
from .io import atomic_path
from .hooks import parse_hook
from .models import resolve_path, unsupported_gguf
from .sae import check_hook, check_width, saved_sae_metadata
from .variants import parse_variant


def model_config(source: str, path: str, name: str = "<name>") -> dict | None:
    """The (text) config of a local model as a dict, or None for a hub id. A GGUF file's comes
    from transformers' reading of it (remembered between starts); a folder's from config.json."""
    where = resolve_path(path)
    if source == "gguf" or str(where).endswith(".gguf"):
        if not os.path.isfile(where):
            raise AuditError(f"GGUF file {where} does not exist; fix models.<name>.path")
        return _gguf_config(where, name)
    if os.path.isfile(os.path.join(where, "config.json")):
        # Plain JSON: importing transformers here would cost seconds on every Snakemake start
        # (and on a cluster, in every job).
        return text_config(json.loads(Path(where, "config.json").read_text()))
    if os.path.isdir(where):
        raise AuditError(f"{where} has no config.json; point models.<name>.path at a transformers model folder")
    return None


def shape_of(config: dict) -> dict:
    """{'n_layers', 'd_model', 'n_params'} (parameters estimated from the shapes)."""
    d, L = hidden_size(config), n_layers(config)
    ffn = int(config_value(config, "intermediate_size") or 4 * d)
    n_params = L * (4 * d * d + 3 * d * ffn) + 2 * int(config_value(config, "vocab_size")) * d
    return {"n_layers": L, "d_model": d, "n_params": n_params}


def model_shape(source: str, path: str, name: str = "<name>") -> dict | None:
    """{'n_layers', 'd_model', 'n_params'} from a local model's config, or None if not local."""
    config = model_config(source, path, name)
    return shape_of(config) if config is not None else None


#: Where the config of a GGUF file is remembered between starts, below the working directory.
GGUF_CONFIG_CACHE = Path(".snakemake") / "featureaudit" / "gguf_configs.json"


def _gguf_config(file: str, name: str) -> dict:
    """The transformers config of a GGUF file. Reading it means importing transformers and
    parsing the whole header (vocabulary included): 10-20 s on a small CPU, on every start. So
    the result is kept, keyed by the file's path, size and modification time."""
    stat = os.stat(file)
    key = f"v2:{os.path.realpath(file)}:{stat.st_size}:{stat.st_mtime_ns}"
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
    keep = ("num_hidden_layers", "hidden_size", "intermediate_size", "vocab_size", "model_type",
            "num_attention_heads", "head_dim")
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


def check_widths(config: dict, variants: list[str], name: str) -> None:
    """Every variant whose blocks or groups must divide the matrices' input widths does."""
    widths = linear_input_widths(config)
    for v in map(parse_variant, variants):
        bad = sorted(w for w in widths if v.block and w % v.block)
        if bad:
            raise AuditError(
                f"{v.name} quantizes in blocks of {v.block} along the input dimension, but models.{name} has matrices "
                f"{bad[0]} wide; drop it from the config (formats / quantization.group_size) for this model"
            )


def check_checkpoints(model, reference: dict | None) -> None:
    """Checkpoints named by path exist and have the reference's architecture and sizes."""
    for key, ck in model.checkpoints.items():
        where = f"models.{model.name}.checkpoints.{key}"
        if ck.path is None:
            continue  # written by the workflow from the reference
        path = resolve_path(ck.path)
        if not os.path.exists(path):
            raise AuditError(f"{where}.path: {path} does not exist")
        config = model_config("gguf" if path.endswith(".gguf") else "hf", path, model.name)
        if reference is not None and config is not None:
            check_compatible(reference, config, where)


def preflight(cfg) -> dict:
    shapes = {}
    for name, m in cfg.models.items():
        try:
            config = model_config(m.source, m.path, name)
        except AuditError as e:
            raise AuditError(f"models.{name}: {e}") from None
        shape = shape_of(config) if config is not None else None
        parse_hook(m.hook, shape["n_layers"] if shape else None)
        if shape and m.sae.source == "disk":
            meta = saved_sae_metadata(m.sae.path, key=f"models.{name}.sae.path")
            try:
                check_width(meta["d_in"], shape["d_model"], f"the activation at {m.hook}")
            except AuditError as e:
                raise AuditError(f"models.{name}.sae: {e}") from None
            check_hook(meta["hook_name"], m.hook, name)
        if config is not None:
            check_widths(config, cfg.variants(name), name)
        check_checkpoints(m, config)
        shapes[name] = shape or guess_shape(m.path)
    return shapes
