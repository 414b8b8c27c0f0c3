"""Hook names as TransformerLens/SAELens spell them (``blocks.L.hook_resid_post``).
Pure Python: checked when the workflow starts, before torch is imported."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import AuditError

POINTS = ("hook_resid_pre", "hook_resid_post", "hook_mlp_out", "hook_attn_out")
_HOOK = re.compile(r"^blocks\.(\d+)\.(\w+)$")
#: A hook name as a path component and Snakemake wildcard (results/<model>/<hook>/...).
HOOK_PATTERN = r"blocks\.\d+\.(?:" + "|".join(POINTS) + ")"


@dataclass(frozen=True)
class HookPoint:
    layer: int
    point: str

    @property
    def name(self) -> str:
        return f"blocks.{self.layer}.{self.point}"


def parse_hook(name: str, n_layers: int | None = None) -> HookPoint:
    m = _HOOK.match(name or "")
    if not m or m[2] not in POINTS:
        layers = f" with layer 0..{n_layers - 1}" if n_layers else ""
        raise AuditError(f"hook {name!r} is not supported; use blocks.<layer>.<{'|'.join(POINTS)}>{layers}")
    hp = HookPoint(int(m[1]), m[2])
    if n_layers is not None and not 0 <= hp.layer < n_layers:
        raise AuditError(f"hook {name!r}: the model has layers 0..{n_layers - 1}; pick one of those")
    return hp
