"""Task metrics on held-out tokens: perplexity (per-sequence and sliding-window), and how far a
variant's next-token distribution moves from the FP model's (KL, top-1 agreement).
`write_metrics` is the body of the `metrics` rule."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .compression import bits_per_weight, build_variant, weight_error
from .config import EvaluationConfig, ModelRun
from .io import read_json, write_json
from .models import load_reference, reference_record
from .progress import log, progress_bar
from .tokens import read_tokens


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


@torch.no_grad()
def compare_to_fp(fp_model, variant_model, input_ids: torch.Tensor, batch_size: int = 8,
                  progress: bool = False) -> dict:
    """Perplexity of both, KL(P_fp || P_variant) per token, and top-1 agreement, in one pass."""
    device = _device(variant_model)
    nll_fp = nll_var = kl = agree = 0.0
    count = 0
    starts = range(0, len(input_ids), batch_size)
    for s in progress_bar(starts, desc="metrics", unit="batch", enabled=progress):
        ids = input_ids[s : s + batch_size].to(device)
        lp_fp = F.log_softmax(fp_model(input_ids=ids, use_cache=False).logits.float()[:, :-1], -1)
        if variant_model is fp_model:
            lp_var = lp_fp
        else:
            lp_var = F.log_softmax(variant_model(input_ids=ids, use_cache=False).logits.float()[:, :-1], -1)
        targets = ids[:, 1:]
        nll_fp -= lp_fp.gather(-1, targets[..., None]).sum().item()
        nll_var -= lp_var.gather(-1, targets[..., None]).sum().item()
        kl += (lp_fp.exp() * (lp_fp - lp_var)).sum().item()
        agree += (lp_fp.argmax(-1) == lp_var.argmax(-1)).sum().item()
        count += targets.numel()
    return {
        "perplexity": math.exp(nll_var / count),
        "fp_perplexity": math.exp(nll_fp / count),
        "kl_to_fp": kl / count,
        "top1_agreement": agree / count,
        "n_tokens": count,
    }


def heldout_stream(ids: torch.Tensor, has_bos: bool) -> torch.Tensor:
    """The held-out sequences are consecutive corpus text: join their bodies into one stream."""
    body = ids[:, 1:] if has_bos else ids
    stream = body.reshape(-1)
    return torch.cat([ids[:1, 0], stream]) if has_bos else stream


def write_metrics(variant: str, run: ModelRun, evaluation: EvaluationConfig, prepend_bos: bool, pruning_scope: str,
                  tokens_path, ref_dir, out_path, matched_json=None, checkpoint=None) -> None:
    """The `metrics` rule: perplexities of the variant, KL and top-1 agreement against FP, and
    what the variant is made of (bits per weight, weight error against the reference)."""
    fp, tokenizer = load_reference(ref_dir, run)
    lm = build_variant(fp, variant, pruning_scope, matched_json, checkpoint, tokenizer)
    ids = read_tokens(tokens_path, "heldout")
    e = evaluation
    result = compare_to_fp(fp, lm, ids, e.batch_size, progress=True)
    window = e.window or ids.shape[1]
    stride = e.stride or max(window // 2, 1)
    result["perplexity_sliding"] = sliding_perplexity(lm, heldout_stream(ids, prepend_bos), window, stride, e.batch_size)
    result.update(variant=variant, window=window, stride=stride, weight_error=weight_error(fp, lm),
                  bits_per_weight=(reference_record(ref_dir)["bits_per_weight"] if variant == "fp"
                                   else bits_per_weight(fp, variant, checkpoint)))
    if matched_json:
        result["matched_sparsity"] = read_json(matched_json)["matched_sparsity"]
    write_json(result, out_path)
    log(f"metrics {variant}: perplexity {result['perplexity']:.3f} (FP {result['fp_perplexity']:.3f})")
