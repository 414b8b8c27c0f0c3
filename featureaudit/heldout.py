"""The FP model's side of the task metrics, computed once per model: its final hidden states
on the held-out tokens (d_model floats a token, not a vocabulary's worth of log-probabilities).

Every variant's metrics turn them back into the FP logits with the reference's output head,
one matrix product, instead of running the FP model again: exact, since a causal LM's logits
are its head applied to the last hidden state (Gemma-2's final soft-capping applied after).
`write_fp_heldout` is the body of the `fp_heldout` rule; it checks that identity on the first
batch against the model's own logits, so an architecture that breaks it fails there, once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .config import ModelRun
from .errors import AuditError
from .integrity import verify_file
from .io import atomic_path
from .models import load_reference
from .progress import log, progress_bar
from .tokens import read_tokens


@dataclass
class OutputHead:
    """What turns a final hidden state into logits: the LM head and the optional soft cap."""

    head: nn.Module
    softcap: float | None = None

    @classmethod
    def of(cls, model: nn.Module) -> "OutputHead":
        return cls(model.get_output_embeddings(), getattr(model.config, "final_logit_softcapping", None))

    @torch.no_grad()
    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        device = next(self.head.parameters()).device
        dtype = next(self.head.parameters()).dtype
        z = self.head(hidden.to(device=device, dtype=dtype)).float()
        return torch.tanh(z / self.softcap) * self.softcap if self.softcap else z


@torch.no_grad()
def final_hidden(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """(batch, T, d) last hidden state, after the final norm (the head's input)."""
    out = model.base_model(input_ids=input_ids.to(next(model.parameters()).device), use_cache=False)
    return out.last_hidden_state


def check_head(model: nn.Module, input_ids: torch.Tensor) -> None:
    """The model's logits are its head applied to `final_hidden` (float32 matmul rounding aside)."""
    with torch.no_grad():
        full = model(input_ids=input_ids.to(next(model.parameters()).device), use_cache=False).logits.float()
    again = OutputHead.of(model).logits(final_hidden(model, input_ids))
    scale = full.abs().max().item() or 1.0
    # the same matmul, maybe blocked differently: error ~ sqrt(d) float eps relative to the scale
    bound = 64 * torch.finfo(torch.float32).eps * hidden_width(model) ** 0.5 * scale
    if (full - again).abs().max().item() > bound:
        raise AuditError(f"{type(model).__name__}: logits are not the output head applied to the last hidden state; "
                         "task metrics cannot reuse the FP model's hidden states for this architecture")


def hidden_width(model: nn.Module) -> int:
    return model.get_output_embeddings().in_features


def write_fp_heldout(run: ModelRun, batch_size: int, tokens_path, ref_dir, out_path) -> None:
    """The `fp_heldout` rule: the FP model's final hidden states on every held-out sequence."""
    from safetensors.torch import save_file

    fp, _ = load_reference(ref_dir, run, tokenizer=False)
    ids = read_tokens(tokens_path, "heldout")
    check_head(fp, ids[:batch_size])
    starts = range(0, len(ids), batch_size)
    hidden = torch.cat([final_hidden(fp, ids[s : s + batch_size]).float().cpu()
                        for s in progress_bar(starts, desc="FP held-out", unit="batch")])
    with atomic_path(out_path) as tmp:
        save_file({"hidden": hidden.contiguous(), "input_ids": ids.contiguous()}, str(tmp))
    log(f"FP hidden states on {ids.numel()} held-out tokens")


def read_fp_heldout(path) -> tuple[torch.Tensor, torch.Tensor]:
    """(hidden, input_ids) as `write_fp_heldout` stored them."""
    from safetensors.torch import load_file

    verify_file(path)
    try:
        t = load_file(str(path))
        return t["hidden"], t["input_ids"]
    except Exception as e:  # a truncated or foreign file
        raise AuditError(f"{path} is unreadable ({type(e).__name__}); delete it and rerun") from None
