"""One variant, built once: its activations at every audited hook on the audit tokens (shards,
all hooks from one forward that stops after the deepest), their codes (each hook's own SAE), and
its task metrics on the held-out tokens. `write_variant` is the body of the `variant` rule.

One job rather than three (capture, encode, metrics) because each of those paid again for what
the others had done: importing the stack, loading the reference, building the variant (20-60 s
of a 60 s job on the default). The FP model's share of the metrics comes precomputed
(fp_heldout.py), so the variant's own held-out forward is the only one.

A variant whose block weights come out bit-identical to the reference's (magnitude pruning at
matched sparsity 0; a GGUF type that re-quantizes a reference stored in that very type) is the
FP model: it copies fp's activations and codes instead of computing them again, and its metrics
say `same_as: fp`. (Copies, not hard links: a link shares fp's modification time, which would
make Snakemake see the copy as older than its own inputs.)
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from ..compress.builtin import bits_per_weight, build_variant, weight_error
from ..config import CaptureSettings, EvaluationConfig, ModelRun
from ..device import resolve_device
from ..hooks import parse_hook
from ..inputs.tokens import read_tokens
from ..integrity import verify_dir
from ..io import atomic_dir, read_json, write_json
from ..model.architecture import block_linears, hidden_size, n_layers
from ..model.capture import write_hook_shards
from ..model.reference import load_reference
from ..model.storage import checkpoint_metadata
from ..progress import log
from ..sae.codes import encode_activations
from ..sae.encoder import load_encoder
from ..sae.frozen import check_bos, check_width, saved_sae_metadata, wants_centering
from ..variants import WEIGHT_ONLY_KINDS, parse_variant
from .fp_heldout import OutputHead
from .metrics import variant_metrics


@dataclass(frozen=True)
class VariantInputs:
    tokens: str
    reference: str
    saes: tuple  # each hook's SAE folder, in the order of the captures
    fp_heldout: str
    matched: str | None = None  # match- variants: the matched sparsity
    checkpoint: str | None = None  # ckpt- variants: the file or folder
    fp_activations: str | None = None  # fp's outputs, for a variant that turns out identical
    fp_codes: str | None = None
    fp_metrics: str | None = None


@dataclass(frozen=True)
class VariantOutputs:
    activations: str  # a folder: one subfolder of shards per hook
    codes: str  # a folder: <hook>.parquet per hook
    metrics: str


@torch.no_grad()
def same_weights(reference, lm) -> bool:
    pairs = list(zip(block_linears(reference), block_linears(lm)))
    return bool(pairs) and all(torch.equal(a.weight, b.weight) for (_, a), (_, b) in pairs)


def write_variant(variant: str, run: ModelRun, captures: list[CaptureSettings], evaluation: EvaluationConfig,
                  prepend_bos: bool, pruning_scope: str, inputs: VariantInputs, outputs: VariantOutputs) -> None:
    """Build the variant once; write its activation shards and codes at every hook, and its metrics."""
    i = inputs
    metas = [saved_sae_metadata(verify_dir(sae), key=f"the SAE at {c.hook}") for sae, c in zip(i.saes, captures)]
    kind = parse_variant(variant).kind
    reference, tokenizer = load_reference(i.reference, run, tokenizer=kind == "checkpoint")
    lm = build_variant(reference, variant, pruning_scope, i.matched, i.checkpoint, tokenizer)
    extra = {"weight_error": 0.0 if lm is reference else weight_error(reference, lm)}
    if kind == "checkpoint":
        extra.update(checkpoint_metadata(i.checkpoint))
    if i.matched:
        extra["matched_sparsity"] = read_json(i.matched)["matched_sparsity"]
    if lm is not reference and i.fp_metrics and kind in WEIGHT_ONLY_KINDS and same_weights(reference, lm):
        extra["bits_per_weight"] = bits_per_weight(lm, variant)
        reuse_fp(variant, i, outputs, extra)
        return
    head = OutputHead.of(reference)
    del reference  # a checkpoint or compressed copy stands alone; keep one model in memory

    centers = {}
    for c, meta in zip(captures, metas):
        parse_hook(c.hook, n_layers(lm))
        check_width(meta["d_in"], hidden_size(lm), f"the activation at {c.hook}")
        check_bos(meta["prepend_bos"], c.prepend_bos)
        centers[c.hook] = c.center if c.center is not None else wants_centering(meta)
    first = captures[0]  # batch size and BOS handling are the model's, the same for every hook
    with atomic_dir(outputs.activations) as tmp:
        n = write_hook_shards(lm, read_tokens(i.tokens, "audit"), {c.hook: tmp / c.hook for c in captures},
                              batch_size=first.batch_size, exclude_bos=first.exclude_bos, centers=centers)
    log(f"captured {n} activations of {variant} at {', '.join(centers)}")

    device = resolve_device(run.device)
    with atomic_dir(outputs.codes) as tmp:
        for sae, c in zip(i.saes, captures):
            nnz = encode_activations(load_encoder(sae, device), f"{outputs.activations}/{c.hook}",
                                     tmp / f"{c.hook}.parquet")
            log(f"encoded {nnz} nonzero codes at {c.hook}")

    result = variant_metrics(variant, lm, head, evaluation, prepend_bos, i.fp_heldout, i.reference, i.checkpoint)
    result.update(extra)
    write_json(result, outputs.metrics)


def reuse_fp(variant: str, i: VariantInputs, outputs: VariantOutputs, extra: dict) -> None:
    """Outputs of a variant identical to the FP model: fp's, copied, its metrics relabelled."""
    for src, dst in ((i.fp_activations, outputs.activations), (i.fp_codes, outputs.codes)):
        with atomic_dir(dst) as tmp:
            shutil.copytree(verify_dir(src), tmp, dirs_exist_ok=True, copy_function=shutil.copyfile,
                            ignore=lambda folder, names: ["MANIFEST.sha256"] if Path(folder) == Path(src) else [])
    metrics = read_json(i.fp_metrics)
    metrics.update(extra, variant=variant, same_as="fp")
    write_json(metrics, outputs.metrics)
    log(f"{variant} has the reference's weights: fp's activations, codes and metrics reused")
