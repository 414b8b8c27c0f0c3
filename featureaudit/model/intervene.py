"""Edit the residual stream at an SAE's hook and run the rest of the model: one prefix, many edits.

A forward hook on the decoder layer whose output (``hook_resid_post``) or input
(``hook_resid_pre``) is the hook's value replaces that value with ``edit(h)``. The edit may
return a larger batch than it was given: for a single sequence ``h`` of shape (1, T, d), an edit
returning (n, T, d) runs the layers after the hook n times on one computation of the layers
before it, so n interventions cost n suffixes and one prefix. The layers after the hook
broadcast the batch-1 positions and causal mask they were given (no padding, no cache).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

import torch

from ..errors import AuditError
from ..hooks import parse_hook
from .architecture import decoder_layers

Edit = Callable[[torch.Tensor], torch.Tensor]


def check_intervenable(hook_name: str) -> None:
    """Causal measurements edit the residual stream; sublayer outputs would need the residual
    add after them replayed, which no layer exposes."""
    point = hook_name.rsplit(".", 1)[-1]
    if point not in ("hook_resid_post", "hook_resid_pre"):
        raise AuditError(f"causal measurements need a residual-stream hook (hook_resid_post or hook_resid_pre), "
                         f"not {hook_name}; set causal.variants: [] for this model")


@contextmanager
def edited_at(model, hook_name: str, edit: Edit):
    """While active, the model's residual at `hook_name` is `edit(h)`."""
    check_intervenable(hook_name)
    layers = decoder_layers(model)
    hook = parse_hook(hook_name, len(layers))
    if hook.point == "hook_resid_post":
        def on_output(module, args, output):
            if isinstance(output, tuple):
                return (edit(output[0]),) + tuple(output[1:])
            return edit(output)
        handle = layers[hook.layer].register_forward_hook(on_output)
    else:
        def on_input(module, args, kwargs):
            if args:
                return (edit(args[0]),) + tuple(args[1:]), kwargs
            kwargs = dict(kwargs)
            kwargs["hidden_states"] = edit(kwargs["hidden_states"])
            return args, kwargs
        handle = layers[hook.layer].register_forward_pre_hook(on_input, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


@torch.no_grad()
def logits_with(model, ids: torch.Tensor, hook_name: str, edit: Edit) -> torch.Tensor:
    """Logits (n, T, V) of one sequence `ids` (1, T) with the hook's residual replaced by
    edit(h) (n copies when the edit returns n)."""
    if ids.shape[0] != 1:
        raise ValueError("one sequence at a time: the edit fans it out")
    with edited_at(model, hook_name, edit):
        return model(input_ids=ids, use_cache=False).logits.float()


class ResidualAt:
    """Captures the hook's residual during a forward (returned unchanged)."""

    def __init__(self):
        self.value = None

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        self.value = h.detach()
        return h
