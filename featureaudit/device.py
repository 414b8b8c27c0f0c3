"""Device and dtype choice: CUDA when present, CPU everywhere else."""

from __future__ import annotations

import torch

from .errors import AuditError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise AuditError("device: cuda was requested but no CUDA device is visible; set device: auto or cpu")
    if name not in ("cpu", "cuda"):
        raise AuditError(f"device: {name!r} is not one of auto, cpu, cuda")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """`auto` is bf16 on GPU (speed, memory) and fp32 on CPU (bf16 matmuls are slow there)."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name not in table:
        raise AuditError(f"dtype: {name!r} is not one of auto, {', '.join(table)}")
    return table[name]
