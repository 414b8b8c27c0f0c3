"""The frozen SAE: the fixed measurement basis every variant is encoded with.

Loading it (always from a folder SAELens saved: the `sae` rule puts one in results/<model>/sae,
see source.py; the jobs that only encode read the common architectures without SAELens,
encoder.py), what it says about itself (SAELens metadata), and the checks that it fits
the model. One place for each check: start-up (preflight, from a saved cfg.json) and the jobs
(on the loaded SAE) use the same ones. Importing this module imports neither torch nor
sae_lens (the Snakefile imports it on every start).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import AuditError
from ..integrity import verify_dir

#: The weights file of a folder SAELens saved (sae_lens.constants.SAE_WEIGHTS_FILENAME; named
#: here so that reading it needs no sae_lens import).
SAE_WEIGHTS = "sae_weights.safetensors"


def saved_weights(folder, device="cpu") -> dict:
    """The tensors in the weights file of a folder SAELens saved, as saved (torch reads any dtype,
    bfloat16 included), without importing SAELens."""
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / SAE_WEIGHTS), device=str(device))


def load_sae(path, device="cpu", output: bool = True):
    """The SAE in a folder saved by SAELens, in eval mode, gradients off. `output`: the folder
    is the workflow's own (results/<model>/sae), checked against its manifest first."""
    from sae_lens import SAE

    path = Path(path)
    if output:
        verify_dir(path)
    if not (path / "cfg.json").exists():
        raise AuditError(f"{path} is not a folder saved by SAELens (no cfg.json); set the SAE path to one")
    try:
        sae = SAE.load_from_disk(str(path), device=str(device))
    except Exception as e:
        raise AuditError(f"could not load the SAE in {path} ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    sae.eval()
    sae.requires_grad_(False)
    return sae


#: Keys of the dict `sae_metadata` returns.
METADATA_KEYS = ("hook_name", "prepend_bos", "context_size", "model_name", "model_from_pretrained_kwargs",
                 "d_in", "d_sae", "architecture")


def sae_metadata(sae_or_cfg: Any) -> dict[str, Any]:
    """The metadata the audit uses, as a plain dict (missing values are None).

    Takes a loaded SAELens SAE, its `cfg`, or the dict of a saved `cfg.json`. SAELens 6 keeps
    hook_name, prepend_bos, ... in `cfg.metadata`; older configs have them at the top level.
    """
    cfg = getattr(sae_or_cfg, "cfg", sae_or_cfg)
    get = cfg.get if isinstance(cfg, dict) else (lambda k, d=None: getattr(cfg, k, d))
    meta = get("metadata")

    def value_of(key):
        if meta is not None:
            value = meta.get(key) if isinstance(meta, dict) else getattr(meta, key, None)
            if value is not None:
                return value
        return get(key)

    arch = get("architecture")
    kwargs = value_of("model_from_pretrained_kwargs")
    return {
        "hook_name": value_of("hook_name"),
        "prepend_bos": value_of("prepend_bos"),
        "context_size": value_of("context_size"),
        "model_name": value_of("model_name"),
        "model_from_pretrained_kwargs": dict(kwargs) if kwargs is not None else None,
        "d_in": int(get("d_in")) if get("d_in") is not None else None,
        "d_sae": int(get("d_sae")) if get("d_sae") is not None else None,
        "architecture": arch() if callable(arch) else arch,
    }


def saved_sae_metadata(folder: str | Path, key: str = "sae.path") -> dict[str, Any]:
    """Metadata of a folder saved by SAELens, read from its cfg.json (no weights loaded)."""
    cfg_json = Path(folder) / "cfg.json"
    if not cfg_json.is_file():
        raise AuditError(f"{key}: {folder} is not a folder saved by SAELens (no cfg.json)")
    try:
        return sae_metadata(json.loads(cfg_json.read_text()))
    except (OSError, ValueError, TypeError) as e:
        raise AuditError(f"{key}: {cfg_json} is unreadable ({type(e).__name__}); save the SAE again with SAELens") from None


def check_width(d_in: int, width: int, where: str) -> None:
    """The SAE reads vectors of the activations' width; `where` names them ("the activation
    at blocks.3.hook_resid_post")."""
    if int(d_in) != int(width):
        raise AuditError(f"SAE d_in is {d_in} but {where} has width {width}; use an SAE trained on this model and hook")


def check_hook(sae_hook: str | None, hook: str, model: str) -> None:
    """The SAE was trained where the config says it reads (if its metadata says where)."""
    if sae_hook and sae_hook != hook:
        raise AuditError(f"models.{model} reads {hook} with an SAE trained at {sae_hook}; give that hook an SAE "
                         "trained there (or name the hook the SAE was trained at)")


def check_bos(sae_prepend_bos: bool | None, prepend_bos: bool) -> None:
    """An SAE trained without BOS tokens is not fed sequences that start with one."""
    if sae_prepend_bos is False and prepend_bos:
        raise AuditError("the SAE was trained without BOS tokens; set corpus.prepend_bos: false")


def wants_centering(metadata: dict) -> bool:
    """SAELens SAEs trained on TransformerLens-processed models see mean-centred residuals."""
    kwargs = metadata.get("model_from_pretrained_kwargs") or {}
    return bool(kwargs.get("center_writing_weights", False))
