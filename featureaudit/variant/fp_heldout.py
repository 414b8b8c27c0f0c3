"""The FP model's side of the task metrics, computed once per model, in d_model floats a token
rather than a vocabulary's worth of log-probabilities.

KL(P_fp || Q) = sum_v p(v) log p(v) - sum_v p(v) log q(v). When the variant's logits are
z_q = W h_q with the FP model's own output matrix W (every compression here leaves the LM head
alone), the second sum is h_q . (W^T p) - logsumexp(z_q): so storing, per held-out position,
the FP distribution's negative entropy, its expected output embedding W^T p, its argmax and
its log-probability of the next token is enough for exact KL, top-1 agreement and both
perplexities from the variant's own forward, with no FP computation at all.

For a variant whose head differs (a checkpoint that quantizes it) or a soft-capped head
(Gemma-2), the FP logits are rebuilt from the stored final hidden states instead (one matrix
product with the reference's head). `write_fp_heldout` is the body of the `fp_heldout` rule; it
checks on the first batch that the model's logits are its head applied to the last hidden
state, so an architecture that breaks that fails there, once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import ModelRun
from ..errors import AuditError
from ..inputs.tokens import read_tokens
from ..integrity import verify_file
from ..io import atomic_path
from ..model.reference import load_reference
from ..progress import log, progress_bar


@dataclass
class OutputHead:
    """What turns a final hidden state into logits: the LM head and the optional soft cap."""

    head: nn.Module
    softcap: float | None = None

    @classmethod
    def of(cls, model: nn.Module) -> "OutputHead":
        return cls(model.get_output_embeddings(), getattr(model.config, "final_logit_softcapping", None))

    @property
    def linear(self) -> bool:
        """Logits are exactly hidden @ W^T: no bias, no soft cap."""
        return not self.softcap and getattr(self.head, "bias", None) is None

    def same_as(self, other: "OutputHead") -> bool:
        return (self.softcap == other.softcap and self.head.weight.shape == other.head.weight.shape
                and torch.equal(self.head.weight, other.head.weight.to(self.head.weight.device)))

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


@torch.no_grad()
def fp_summary(head: OutputHead, hidden: torch.Tensor, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per position predicting the next token (B, T-1): what KL, top-1 agreement and the FP
    perplexity need of the FP distribution p (module docstring)."""
    logp = torch.log_softmax(head.logits(hidden)[:, :-1], -1)
    p = logp.exp()
    w = head.head.weight
    return {
        "neg_entropy": (p * logp).sum(-1),
        "expected_embedding": (p.to(w.dtype) @ w).float(),
        "argmax": logp.argmax(-1),
        "target_logprob": logp.gather(-1, input_ids[:, 1:, None].to(logp.device))[..., 0],
    }


def write_fp_heldout(run: ModelRun, batch_size: int, tokens_path, ref_dir, out_path, split: str = "heldout") -> None:
    """The `fp_heldout` rule: the FP model's final hidden states on every sequence the task
    metrics score, and (for a linear head) the summary of its next-token distributions. Those
    are the main corpus's held-out split, and a further corpus's audit tokens (it has no other)."""
    from safetensors.torch import save_file

    fp, _ = load_reference(ref_dir, run, tokenizer=False)
    ids = read_tokens(tokens_path, split)
    check_head(fp, ids[:batch_size])
    head = OutputHead.of(fp)
    parts = []
    for s in progress_bar(range(0, len(ids), batch_size), desc="FP held-out", unit="batch"):
        h = final_hidden(fp, ids[s : s + batch_size])
        part = {"hidden": h.float().cpu()}
        if head.linear:
            part |= {k: v.cpu() for k, v in fp_summary(head, h, ids[s : s + batch_size]).items()}
        parts.append(part)
    tensors = {k: torch.cat([p[k] for p in parts]).contiguous() for k in parts[0]}
    with atomic_path(out_path) as tmp:
        save_file({**tensors, "input_ids": ids.contiguous()}, str(tmp))
    log(f"FP hidden states on {ids.numel()} {split} tokens" + (", and its next-token summary" if head.linear else ""))


def read_fp_heldout(path) -> dict[str, torch.Tensor]:
    """What `write_fp_heldout` stored: hidden, input_ids, and (linear heads) the summary."""
    from safetensors.torch import load_file

    verify_file(path)
    try:
        return load_file(str(path))
    except Exception as e:  # a truncated or foreign file
        raise AuditError(f"{path} is unreadable ({type(e).__name__}); delete it and rerun") from None
