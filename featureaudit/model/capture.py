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
from contextlib import ExitStack
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
    """Context manager: forward hooks at one or several hooks; `run(ids)` returns the activation
    ({hook: activation} for several) and stops the forward once the deepest one has fired, so
    one forward serves every hook and no layer after the deepest runs. With `stop=False` the
    forward runs on (the caller wants the logits too) and `values` holds the hooks' values."""

    def __init__(self, model: nn.Module, hook_names: str | list[str], stop: bool = True):
        layers = decoder_layers(model)
        self.single = isinstance(hook_names, str)
        names = [hook_names] if self.single else list(hook_names)
        self.model = model
        self.hooks = [parse_hook(name, len(layers)) for name in names]
        self.sites = [_module_and_mode(layers[h.layer], h.point) for h in self.hooks]
        self.values: dict[str, torch.Tensor] = {}
        self.stop = stop
        self._handles = []

    def _store(self, name: str, value: torch.Tensor) -> None:
        self.values[name] = value.detach()
        if self.stop and len(self.values) == len(self.hooks):
            raise _StopForward

    def __enter__(self):
        for hook, (module, mode) in zip(self.hooks, self.sites):
            if mode == "pre":
                def pre(module, args, kwargs, name=hook.name):
                    self._store(name, args[0] if args else kwargs["hidden_states"])
                self._handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
            else:
                def out(module, args, output, name=hook.name):
                    self._store(name, output[0] if isinstance(output, tuple) else output)
                self._handles.append(module.register_forward_hook(out))
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @torch.no_grad()
    def run(self, input_ids: torch.Tensor):
        self.values = {}
        try:
            self.model(input_ids=input_ids, use_cache=False)
        except _StopForward:
            pass
        missing = [h.name for h in self.hooks if h.name not in self.values]
        if missing:
            raise RuntimeError(f"hook {missing[0]} did not fire")
        return self.values[self.hooks[0].name] if self.single else {h.name: self.values[h.name] for h in self.hooks}


def iter_hook_activations(
    model: nn.Module,
    input_ids: torch.Tensor,
    hook_names: list[str],
    batch_size: int = 16,
    centers: dict[str, bool] | None = None,
    progress: bool = False,
    to_cpu: bool = True,
) -> Iterator[dict[str, torch.Tensor]]:
    """Yields {hook: (batch, T, d) float32} for consecutive batches of sequences, every hook from
    one forward, on the CPU, or left on the model's device with `to_cpu=False`."""
    device = next(model.parameters()).device
    centers = centers or {}
    n = len(input_ids)
    desc = f"capture {hook_names[0]}" if len(hook_names) == 1 else f"capture {len(hook_names)} hooks"
    with HookCapture(model, list(hook_names)) as cap, \
            progress_bar(total=n, desc=desc, unit="seq", enabled=progress) as bar:
        for start in range(0, n, batch_size):
            out = {}
            for name, acts in cap.run(input_ids[start : start + batch_size].to(device)).items():
                acts = acts.float()
                if centers.get(name):
                    acts = acts - acts.mean(-1, keepdim=True)
                out[name] = acts.cpu() if to_cpu else acts
            bar.update(min(batch_size, n - start))
            yield out


def iter_activations(
    model: nn.Module,
    input_ids: torch.Tensor,
    hook_name: str,
    batch_size: int = 16,
    center: bool = False,
    progress: bool = False,
    to_cpu: bool = True,
) -> Iterator[torch.Tensor]:
    """Yields (batch, T, d) float32 activations at one hook for consecutive batches of sequences."""
    for out in iter_hook_activations(model, input_ids, [hook_name], batch_size, {hook_name: center}, progress,
                                     to_cpu):
        yield out[hook_name]


#: Shards written side by side in background threads while the model computes the next ones.
#: Writing a 65536 x 2304 fp32 shard takes ~1.2 s of one CPU core here; on a GPU the forward
#: for it is likely shorter (estimate; benchmarks/shard_writer.py measures it where one is lent).
SHARD_WRITERS = 2


def write_hook_shards(
    model: nn.Module,
    input_ids: torch.Tensor,
    out_dirs: dict[str, str | Path],
    batch_size: int = 16,
    shard_tokens: int = 65536,
    exclude_bos: bool = True,
    centers: dict[str, bool] | None = None,
    progress: bool = True,
) -> int:
    """Capture every hook of `out_dirs` (hook -> folder) from one forward per batch and write
    each hook's parquet shards atomically into its folder; returns the tokens per hook."""
    n_seq, T = input_ids.shape
    first = 1 if exclude_bos else 0
    pos = np.arange(first, T)
    hooks = list(out_dirs)
    written = 0
    with ExitStack() as stack:
        tmps = {h: Path(stack.enter_context(atomic_dir(out_dirs[h]))) for h in hooks}
        writers = stack.enter_context(ThreadPoolExecutor(SHARD_WRITERS))
        buf_acts = {h: [] for h in hooks}
        buf_tok, n_buf, shard = [], 0, 0
        pending = deque()

        def flush():
            nonlocal buf_tok, n_buf, shard
            tok = np.concatenate(buf_tok)
            for h in hooks:
                # One device-to-host copy per shard, not per batch: on a GPU, many small copies
                # would stall the forward passes.
                acts = torch.cat(buf_acts[h]).cpu().numpy()
                pending.append(writers.submit(write_shard, tmps[h] / shard_name(shard), tok, acts, h))
                buf_acts[h] = []
            # at most SHARD_WRITERS shards per hook wait in host memory; a failed write raises here
            while len(pending) > SHARD_WRITERS * len(hooks):
                pending.popleft().result()
            buf_tok, n_buf, shard = [], 0, shard + 1

        batches = iter_hook_activations(model, input_ids, hooks, batch_size, centers, progress, to_cpu=False)
        for b, by_hook in enumerate(batches):
            seq0 = b * batch_size
            n = next(iter(by_hook.values())).shape[0]
            tok = ((seq0 + np.arange(n))[:, None] * T + pos[None, :]).reshape(-1)
            for h, acts in by_hook.items():
                buf_acts[h].append(acts[:, first:, :].reshape(-1, acts.shape[-1]))
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
    """Capture activations at one hook for every sequence and write parquet shards atomically;
    returns #tokens."""
    return write_hook_shards(model, input_ids, {hook_name: out_dir}, batch_size, shard_tokens, exclude_bos,
                             {hook_name: center}, progress)


def capture_matrix(model: nn.Module, input_ids: torch.Tensor, capture: CaptureSettings) -> np.ndarray:
    """(n_tokens, d) FP activations in memory, for training an SAE (which has no metadata yet
    to say whether to centre: only an explicit `center: true` does)."""
    first = 1 if capture.exclude_bos else 0
    batches = iter_activations(model, input_ids, capture.hook, capture.batch_size, bool(capture.center),
                               progress=True)
    return np.concatenate([a[:, first:].reshape(-1, a.shape[-1]).numpy() for a in batches])
