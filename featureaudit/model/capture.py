"""Activations at an SAE's hook, captured with PyTorch forward hooks on the HF model.

Hook names follow TransformerLens/SAELens: blocks.L.hook_resid_pre | hook_resid_post |
hook_mlp_out | hook_attn_out. The forward pass stops right after the hooked module (a private
exception), so the layers after it never run. Values are the *unprocessed* model's, which is
SAELens's convention; `center=True` subtracts the per-token mean, which is what
TransformerLens's `center_writing_weights` does to a LayerNorm model's residual stream.

The activations are written as shards (shards.py), by the `variant` rule (variant/job.py) and,
in memory, for training an SAE.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from ..config import CaptureSettings
from ..errors import AuditError
from ..hooks import parse_hook
from ..io import atomic_dir
from ..progress import progress_bar
from .architecture import decoder_layers
from .shards import shard_name, write_shard


def _module_and_mode(layer: nn.Module, point: str) -> tuple[nn.Module, str]:
    """The module whose input ('pre') or output ('out') is the hook's value."""
    if point == "hook_resid_pre":
        return layer, "pre"
    if point == "hook_resid_post":
        return layer, "out"
    # Gemma-2 normalises the sublayer outputs before adding them to the residual stream;
    # TransformerLens's hook_attn_out/hook_mlp_out are taken after those norms.
    gemma_style = hasattr(layer, "pre_feedforward_layernorm")
    if point == "hook_mlp_out":
        mod = layer.post_feedforward_layernorm if gemma_style else getattr(layer, "mlp", None)
    else:
        mod = layer.post_attention_layernorm if gemma_style else (getattr(layer, "self_attn", None) or getattr(layer, "attention", None))
    if mod is None:
        raise AuditError(f"{point} is not available for {type(layer).__name__}; use a residual-stream hook")
    return mod, "out"


class _StopForward(Exception):
    pass


class HookCapture:
    """Context manager: registers the hook; `run(ids)` returns the activation and stops early."""

    def __init__(self, model: nn.Module, hook_name: str):
        layers = decoder_layers(model)
        self.hook = parse_hook(hook_name, len(layers))
        self.model = model
        self.module, mode = _module_and_mode(layers[self.hook.layer], self.hook.point)
        self.value: torch.Tensor | None = None
        self._mode = mode

    def _pre(self, module, args, kwargs):
        self.value = (args[0] if args else kwargs["hidden_states"]).detach()
        raise _StopForward

    def _out(self, module, args, output):
        self.value = (output[0] if isinstance(output, tuple) else output).detach()
        raise _StopForward

    def __enter__(self):
        if self._mode == "pre":
            self._handle = self.module.register_forward_pre_hook(self._pre, with_kwargs=True)
        else:
            self._handle = self.module.register_forward_hook(self._out)
        return self

    def __exit__(self, *exc):
        self._handle.remove()

    @torch.no_grad()
    def run(self, input_ids: torch.Tensor) -> torch.Tensor:
        self.value = None
        try:
            self.model(input_ids=input_ids, use_cache=False)
        except _StopForward:
            pass
        if self.value is None:
            raise RuntimeError(f"hook {self.hook.name} did not fire")
        return self.value


def iter_activations(
    model: nn.Module,
    input_ids: torch.Tensor,
    hook_name: str,
    batch_size: int = 16,
    center: bool = False,
    progress: bool = False,
    to_cpu: bool = True,
) -> Iterator[torch.Tensor]:
    """Yields (batch, T, d) float32 activations for consecutive batches of sequences, on the
    CPU, or left on the model's device with `to_cpu=False` (the caller moves them in bulk)."""
    device = next(model.parameters()).device
    n = len(input_ids)
    with HookCapture(model, hook_name) as cap, \
            progress_bar(total=n, desc=f"capture {hook_name}", unit="seq", enabled=progress) as bar:
        for start in range(0, n, batch_size):
            acts = cap.run(input_ids[start : start + batch_size].to(device)).float()
            if center:
                acts = acts - acts.mean(-1, keepdim=True)
            bar.update(min(batch_size, n - start))
            yield acts.cpu() if to_cpu else acts


#: Shards written side by side in background threads while the model computes the next ones.
#: Writing a 65536 x 2304 fp32 shard takes ~1.2 s of one CPU core here; on a GPU the forward
#: for it is likely shorter (estimate; benchmarks/shard_writer.py measures it where one is lent).
SHARD_WRITERS = 2


def write_activation_shards(
    model: nn.Module,
    input_ids: torch.Tensor,
    hook_name: str,
    out_dir,
    batch_size: int = 16,
    shard_tokens: int = 65536,
    exclude_bos: bool = True,
    center: bool = False,
    progress: bool = True,
) -> int:
    """Capture activations for every sequence and write parquet shards atomically; returns #tokens."""
    n_seq, T = input_ids.shape
    first = 1 if exclude_bos else 0
    pos = np.arange(first, T)
    written = 0
    with atomic_dir(out_dir) as tmp, ThreadPoolExecutor(SHARD_WRITERS) as writers:
        buf_acts, buf_tok, n_buf, shard = [], [], 0, 0
        pending = deque()

        def flush():
            nonlocal buf_acts, buf_tok, n_buf, shard
            # One device-to-host copy per shard, not per batch: on a GPU, many small copies
            # would stall the forward passes.
            acts = torch.cat(buf_acts).cpu().numpy()
            pending.append(writers.submit(write_shard, Path(tmp) / shard_name(shard),
                                          np.concatenate(buf_tok), acts, hook_name))
            # at most SHARD_WRITERS shards wait in host memory; a failed write raises here
            while len(pending) > SHARD_WRITERS:
                pending.popleft().result()
            buf_acts, buf_tok, n_buf, shard = [], [], 0, shard + 1

        batches = iter_activations(model, input_ids, hook_name, batch_size, center, progress, to_cpu=False)
        for b, acts in enumerate(batches):
            d = acts.shape[-1]
            seq0 = b * batch_size
            acts = acts[:, first:, :]
            tok = ((seq0 + np.arange(len(acts)))[:, None] * T + pos[None, :]).reshape(-1)
            buf_acts.append(acts.reshape(-1, d))
            buf_tok.append(tok.astype(np.int64))
            n_buf += len(tok)
            written += len(tok)
            if n_buf >= shard_tokens:
                flush()
        if n_buf:
            flush()
        for f in pending:
            f.result()
    return written


def capture_matrix(model: nn.Module, input_ids: torch.Tensor, capture: CaptureSettings) -> np.ndarray:
    """(n_tokens, d) FP activations in memory, for training an SAE (which has no metadata yet
    to say whether to centre: only an explicit `center: true` does)."""
    first = 1 if capture.exclude_bos else 0
    batches = iter_activations(model, input_ids, capture.hook, capture.batch_size, bool(capture.center),
                               progress=True)
    return np.concatenate([a[:, first:].reshape(-1, a.shape[-1]).numpy() for a in batches])
