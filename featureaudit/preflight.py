"""Checks that run when the workflow starts, before any job: everything that can be known
from local files (hook layer in range, SAE width, SAE hook) fails here in one line rather than
after an hour of capture. Nothing here touches the network; hub ids are checked when loaded."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .architecture import config_value, hidden_size, n_layers
from .errors import AuditError
from .hooks import parse_hook
from .models import resolve_path, unsupported_gguf
from .sae import check_hook, check_width, saved_sae_metadata


def model_shape(source: str, path: str, name: str = "<name>") -> dict | None:
    """{'n_layers', 'd_model', 'n_params'} from a local model's config, or None if not local."""
    where = resolve_path(path)
    if source == "gguf":
        from transformers import AutoConfig

        if not os.path.isfile(where):
            raise AuditError(f"GGUF file {where} does not exist; fix models.<name>.path")
        try:
            cfg = AutoConfig.from_pretrained(str(Path(where).parent), gguf_file=Path(where).name)
        except ValueError as e:
            if "not supported" in str(e):
                raise unsupported_gguf(e, name) from None
            raise
        cfg = cfg.to_dict()
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
