"""Task metrics on held-out tokens: perplexity (per sequence, and optionally sliding-window), and
how far a variant's next-token distribution moves from the FP model's (KL, top-1 agreement).
`variant_metrics` is what the `variant` rule records for each variant."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..compress.builtin import bits_per_weight
from ..config import EvaluationConfig
from ..model.reference import reference_record
from ..progress import log, progress_bar
from .fp_heldout import OutputHead, final_hidden, read_fp_heldout


def _device(model):
    return next(model.parameters()).device


@torch.no_grad()
def perplexity(model, input_ids: torch.Tensor, batch_size: int = 8) -> float:
    """exp(mean next-token cross-entropy), each sequence its own window (no overlap)."""
    nll, count = 0.0, 0
    for s in range(0, len(input_ids), batch_size):
        ids = input_ids[s : s + batch_size].to(_device(model))
        logits = model(input_ids=ids, use_cache=False).logits.float()
        nll += F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten(), reduction="sum").item()
        count += ids[:, 1:].numel()
    return math.exp(nll / count)


@torch.no_grad()
def sliding_perplexity(model, stream: torch.Tensor, window: int, stride: int, batch_size: int = 8) -> float:
    """Perplexity of one contiguous token stream with a sliding window (transformers' recipe):
    each token is scored once, with up to `window - stride` tokens of context before it.

    Windows of equal length run as one batch, and only the logits of scored positions are
    computed (`logits_to_keep`): the LM head is a large share of a small model's forward."""
    device = _device(model)
    spans, prev_end = [], 0  # (begin, end, number of new tokens scored in this window)
    for begin in range(0, len(stream), stride):
        end = min(begin + window, len(stream))
        if end - begin >= 2 and end > prev_end:
            spans.append((begin, end, end - prev_end))
        prev_end = end
        if end == len(stream):
            break
    nll, count = 0.0, 0
    i = 0
    while i < len(spans):
        group = [spans[i]]
        while (i + len(group) < len(spans) and len(group) < batch_size
               and spans[i + len(group)][1] - spans[i + len(group)][0] == group[0][1] - group[0][0]
               and spans[i + len(group)][2] == group[0][2]):
            group.append(spans[i + len(group)])
        i += len(group)
        length, scored = group[0][1] - group[0][0], min(group[0][2], group[0][1] - group[0][0] - 1)
        ids = torch.stack([stream[b:e] for b, e, _ in group]).to(device)
        # logits at positions length-1-scored .. length-2 predict the last `scored` tokens.
        logits = model(input_ids=ids, use_cache=False, logits_to_keep=scored + 1).logits.float()[:, :-1]
        targets = ids[:, length - scored :]
        nll += F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum").item()
        count += targets.numel()
    return math.exp(nll / count)


def _result(per_seq: dict, input_ids: torch.Tensor) -> dict:
    per_seq = {k: torch.cat(v).double().cpu() for k, v in per_seq.items()}
    count = input_ids[:, 1:].numel()
    return {
        "perplexity": math.exp(per_seq["nll"].sum().item() / count),
        "fp_perplexity": math.exp(per_seq["fp_nll"].sum().item() / count),
        "kl_to_fp": per_seq["kl"].sum().item() / count,
        "top1_agreement": per_seq["agree"].sum().item() / count,
        "n_tokens": count,
        "tokens_per_sequence": input_ids.shape[1] - 1,
        "per_sequence": {k: v.tolist() for k, v in per_seq.items()},
    }


@torch.no_grad()
def compare_with_fp_hidden(fp_head: OutputHead, fp_hidden: torch.Tensor, variant_model, input_ids: torch.Tensor,
                           batch_size: int = 8, progress: bool = False) -> dict:
    """Perplexity of FP and variant, KL(P_fp || P_variant) per token and top-1 agreement, with
    the FP logits rebuilt from its stored final hidden states (fp_heldout.py): one forward, the
    variant's (none when `variant_model` is None: the FP model itself). Per-sequence sums come
    along (`per_sequence`): a perplexity over any subset of sequences, and error bars."""
    per = {"nll": [], "fp_nll": [], "kl": [], "agree": []}
    starts = range(0, len(input_ids), batch_size)
    for s in progress_bar(starts, desc="metrics", unit="batch", enabled=progress):
        ids = input_ids[s : s + batch_size]
        lp_fp = F.log_softmax(fp_head.logits(fp_hidden[s : s + batch_size])[:, :-1], -1)
        if variant_model is None:
            lp_var = lp_fp
        else:
            logits = variant_model(input_ids=ids.to(_device(variant_model)), use_cache=False).logits
            lp_var = F.log_softmax(logits.float()[:, :-1].to(lp_fp.device), -1)
        targets = ids[:, 1:, None].to(lp_fp.device)
        per["fp_nll"].append(-lp_fp.gather(-1, targets).sum((1, 2)))
        per["nll"].append(-lp_var.gather(-1, targets).sum((1, 2)))
        per["kl"].append((lp_fp.exp() * (lp_fp - lp_var)).sum((1, 2)))
        per["agree"].append((lp_fp.argmax(-1) == lp_var.argmax(-1)).sum(1).float())
    return _result(per, input_ids)


@torch.no_grad()
def logsumexp_argmax(z: torch.Tensor, rows: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.logsumexp(z, -1) and z.argmax(-1), from one pass for the maximum and its index and
    one for the sum of exponentials, `rows` vocabulary rows at a time in one reused buffer.

    The same operations in the same order as torch's logsumexp (subtract the row maximum, or 0
    where it is infinite; exp; sum; log; add it back), so the same floats; but the vocabulary-wide
    pass over a variant's logits is the larger part of the metrics' cost beyond the forward, and
    torch's version makes four passes over a (batch, T, vocab) temporary, argmax a fifth."""
    flat = z.reshape(-1, z.shape[-1])
    peak, top = flat.max(-1)  # indices: the first maximum, as argmax's
    peak.masked_fill_(peak.abs() == float("inf"), 0)
    total = torch.empty_like(peak)
    buf = torch.empty(min(rows, len(flat)), flat.shape[1], dtype=flat.dtype, device=flat.device)
    for i in range(0, len(flat), rows):
        chunk = buf[: min(rows, len(flat) - i)]
        torch.sub(flat[i : i + rows], peak[i : i + rows, None], out=chunk)
        total[i : i + rows] = chunk.exp_().sum(-1)
    return (total.log_() + peak).view(z.shape[:-1]), top.view(z.shape[:-1])


@torch.no_grad()
def compare_with_fp_summary(fp: dict, variant_model, input_ids: torch.Tensor, batch_size: int = 8,
                            progress: bool = False) -> dict:
    """`compare_with_fp_hidden`'s numbers from the FP summary (heldout.fp_summary), for a
    variant whose output head is the FP model's own linear head: KL from the identity
    sum_v p(v) log q(v) = h_q . (W^T p) - logsumexp(z_q), no FP logits computed."""
    per = {"nll": [], "fp_nll": [], "kl": [], "agree": []}
    head = OutputHead.of(variant_model) if variant_model is not None else None
    for s in progress_bar(range(0, len(input_ids), batch_size), desc="metrics", unit="batch", enabled=progress):
        ids = input_ids[s : s + batch_size]
        fp_lp = fp["target_logprob"][s : s + batch_size].double()
        per["fp_nll"].append(-fp_lp.sum(1))
        if variant_model is None:
            per["nll"].append(-fp_lp.sum(1))
            per["kl"].append(torch.zeros(len(ids), dtype=torch.float64))
            per["agree"].append(torch.full((len(ids),), float(ids.shape[1] - 1)))
            continue
        # contiguous: the head's matmul over a strided (B, T-1, d) view is ~20 % slower on CPU
        h = final_hidden(variant_model, ids)[:, :-1].contiguous()
        z = head.logits(h)
        target_z = z.gather(-1, ids[:, 1:, None].to(z.device))[..., 0].double().cpu()
        lse, top = logsumexp_argmax(z)
        lse = lse.double().cpu()
        cross = (h.double().cpu() * fp["expected_embedding"][s : s + batch_size].double()).sum(-1) - lse
        per["nll"].append((lse - target_z).sum(1))
        per["kl"].append((fp["neg_entropy"][s : s + batch_size].double() - cross).sum(1))
        per["agree"].append((top.cpu() == fp["argmax"][s : s + batch_size]).sum(1).float())
    return _result(per, input_ids)


@torch.no_grad()
def compare_to_fp(fp_model, variant_model, input_ids: torch.Tensor, batch_size: int = 8,
                  progress: bool = False) -> dict:
    """`compare_with_fp_hidden` with the FP model at hand (its hidden states computed here)."""
    hidden = torch.cat([final_hidden(fp_model, input_ids[s : s + batch_size])
                        for s in range(0, len(input_ids), batch_size)])
    return compare_with_fp_hidden(OutputHead.of(fp_model), hidden,
                                  None if variant_model is fp_model else variant_model, input_ids, batch_size, progress)


def heldout_stream(ids: torch.Tensor, has_bos: bool) -> torch.Tensor:
    """The held-out sequences are consecutive corpus text: join their bodies into one stream."""
    body = ids[:, 1:] if has_bos else ids
    stream = body.reshape(-1)
    return torch.cat([ids[:1, 0], stream]) if has_bos else stream


def variant_metrics(variant: str, lm, fp_head: OutputHead, evaluation: EvaluationConfig, prepend_bos: bool,
                    fp_heldout, ref_dir, checkpoint=None) -> dict:
    """A variant's task metrics against FP on the held-out tokens, and its bits per weight.
    `fp_heldout`: the fp_heldout rule's file; `fp_head`: the reference's output head."""
    stored = read_fp_heldout(fp_heldout)
    ids = stored["input_ids"]
    e = evaluation
    other = None if variant == "fp" else lm
    if "expected_embedding" in stored and (other is None or fp_head.same_as(OutputHead.of(other))):
        result = compare_with_fp_summary(stored, other, ids, e.batch_size, progress=True)
    else:  # the variant's head is not the FP model's, or not linear: rebuild the FP logits
        result = compare_with_fp_hidden(fp_head, stored["hidden"], other, ids, e.batch_size, progress=True)
    window = e.window or ids.shape[1]
    stride = e.stride or max(window // 2, 1)
    if e.sliding:
        result["perplexity_sliding"] = sliding_perplexity(lm, heldout_stream(ids, prepend_bos), window, stride,
                                                          e.batch_size)
        result.update(window=window, stride=stride)
    result.update(variant=variant, bits_per_weight=(reference_record(ref_dir)["bits_per_weight"] if variant == "fp"
                                                    else bits_per_weight(lm, variant, checkpoint)))
    log(f"metrics {variant}: perplexity {result['perplexity']:.3f} (FP {result['fp_perplexity']:.3f})")
    return result
