"""One variant, built once: its activations at the SAE's hook on the audit tokens (shards), their
SAE codes, and its task metrics on the held-out tokens. `write_variant` is the body of the
`variant` rule.

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

import torch

from ..compress.builtin import bits_per_weight, build_variant, weight_error
from ..config import CaptureSettings, EvaluationConfig, ModelRun
from ..device import resolve_device
from ..hooks import parse_hook
from ..inputs.tokens import read_tokens
from ..integrity import verify_dir, verify_file
from ..io import atomic_dir, atomic_path, read_json, write_json
from ..model.architecture import block_linears, hidden_size, n_layers
from ..model.capture import write_activation_shards
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
    sae: str
    fp_heldout: str
    matched: str | None = None  # match- variants: the matched sparsity
    checkpoint: str | None = None  # ckpt- variants: the file or folder
    fp_activations: str | None = None  # fp's outputs, for a variant that turns out identical
    fp_codes: str | None = None
    fp_metrics: str | None = None


@dataclass(frozen=True)
class VariantOutputs:
    activations: str
    codes: str
    metrics: str


@torch.no_grad()
def same_weights(reference, lm) -> bool:
    pairs = list(zip(block_linears(reference), block_linears(lm)))
    return bool(pairs) and all(torch.equal(a.weight, b.weight) for (_, a), (_, b) in pairs)


def write_variant(variant: str, run: ModelRun, capture: CaptureSettings, evaluation: EvaluationConfig,
                  prepend_bos: bool, pruning_scope: str, inputs: VariantInputs, outputs: VariantOutputs) -> None:
    """Build the variant once; write its activation shards, codes and metrics."""
    i = inputs
    meta = saved_sae_metadata(verify_dir(i.sae), key="the SAE")
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

    parse_hook(capture.hook, n_layers(lm))
    check_width(meta["d_in"], hidden_size(lm), f"the activation at {capture.hook}")
    check_bos(meta["prepend_bos"], capture.prepend_bos)
    center = capture.center if capture.center is not None else wants_centering(meta)
    n = write_activation_shards(lm, read_tokens(i.tokens, "audit"), capture.hook, outputs.activations,
                                batch_size=capture.batch_size, exclude_bos=capture.exclude_bos, center=center)
    log(f"captured {n} activations of {variant} at {capture.hook}")

    nnz = encode_activations(load_encoder(i.sae, resolve_device(run.device)), outputs.activations, outputs.codes)
    log(f"encoded {nnz} nonzero codes")

    result = variant_metrics(variant, lm, head, evaluation, prepend_bos, i.fp_heldout, i.reference, i.checkpoint)
    result.update(extra)
    write_json(result, outputs.metrics)


def reuse_fp(variant: str, i: VariantInputs, outputs: VariantOutputs, extra: dict) -> None:
    """Outputs of a variant identical to the FP model: fp's, copied, its metrics relabelled."""
    src = verify_dir(i.fp_activations)
    with atomic_dir(outputs.activations) as tmp:
        for f in sorted(src.iterdir()):
            if f.is_file() and f.name != "MANIFEST.sha256":
                shutil.copyfile(f, tmp / f.name)
    with atomic_path(outputs.codes) as tmp:
        shutil.copyfile(verify_file(i.fp_codes), tmp)
    metrics = read_json(i.fp_metrics)
    metrics.update(extra, variant=variant, same_as="fp")
    write_json(metrics, outputs.metrics)
    log(f"{variant} has the reference's weights: fp's activations, codes and metrics reused")
