"""Cluster resource requests (memory, wall time) computed from the size of the audited model.

The Snakemake rules call :func:`estimate_resources` from their ``resources:`` so that a
SLURM submission for Gemma-2-2B asks for more than one for Pythia-70M, and a job that
was killed for memory or time asks for more when Snakemake retries it (``attempt``)::

    resources:
        mem_mb=lambda wc, attempt: estimate_resources(P, D, T, "variant", attempt)["mem_mb"],
        runtime=lambda wc, attempt: estimate_resources(P, D, T, "variant", attempt)["runtime"],

The model is deliberately coarse: a sum of a few terms, each one the dominant cost of a
stage, times a safety factor. The throughput anchors were measured on the project machines
(see the project notes): a 2-core CPU runs about 1e11 FLOP/s through a transformer forward
(SmolLM2-135M: 360 tokens/s), an H100 about 3.5e14 (Gemma-2-2B: 68 K tokens/s in bf16).
"""

from __future__ import annotations

import math

__all__ = ["STAGES", "estimate_resources"]

STAGES = ("variant", "fp_heldout", "pruning_curve", "match_pruning", "train_sae")

MIB = 2**20

#: Python + torch + transformers imported, CUDA/BLAS workspaces: what an "empty" job uses.
OVERHEAD_MB = 1500
#: Bytes per model parameter held in host memory. The CPU path runs fp32; on GPU the host
#: copy is still materialised while loading, so fp32 is the safe bound in both cases.
BYTES_PER_PARAM = 4
#: Bytes per captured activation value (activations are stored as fp32).
BYTES_PER_ACT = 4
#: SAE width when the caller does not give one (Gemma Scope 16k on 2304 is about 7x).
DEFAULT_EXPANSION = 8
#: Sparse TopK codes kept per token (k) and bytes per kept entry (int32 index + fp32 value).
TOPK = 32
BYTES_PER_CODE = 8
#: Training keeps SAE weights, gradients and two Adam moments: 4 copies.
TRAIN_COPIES = 4
#: Effective FLOP/s of the bulk of each stage, by device (measured anchors, rounded down).
FLOPS = {"cpu": 1e11, "cuda": 1e14}
#: The shared pruning curve evaluates this many sparsities (matching.CURVE_POINTS); a matched
#: search adds at most a few more inside its bracket.
CURVE_STEPS = 9
MATCH_PRUNING_STEPS = 4
#: Fixed wall time per job: start-up, imports, reading inputs from shared storage.
BASE_MINUTES = 2
#: Loading (and for compression stages, rewriting) the weights, per 1e9 parameters.
LOAD_MINUTES_PER_GPARAM = 1.0
#: Requests are this much above the estimate: a job killed at 95 % wastes all of it.
MEM_SAFETY = 1.25
TIME_SAFETY = 2.0


def estimate_resources(
    n_params: int,
    d_model: int,
    n_tokens: int,
    stage: str,
    attempt: int = 1,
    *,
    d_sae: int | None = None,
    device: str = "cpu",
) -> dict:
    """Memory (MB) and wall time (minutes) to request for one job of ``stage``.

    Parameters
    ----------
    n_params : total parameters of the audited model (Pythia-70M: 7e7, Gemma-2-2B: 2.6e9).
    d_model : residual-stream width at the hooked layer (512, 2304).
    n_tokens : tokens the job processes (captured, encoded, evaluated or trained on).
    stage : one of ``STAGES`` (the small table rules, survival and after, use the profile's
        default requests).
    attempt : Snakemake's ``attempt`` (1 on the first try). Both requests grow linearly
        with it, so a job killed for memory or time gets more on each retry.
    d_sae : SAE width (number of features); default ``DEFAULT_EXPANSION * d_model``.
    device : ``"cpu"`` or ``"cuda"``: sets the throughput used for the wall time.

    Memory terms (MB), each the dominant resident data of the stage:

    * every stage: ``OVERHEAD_MB`` for the interpreter and libraries;
    * ``weights`` = ``n_params * 4 B``: stages that load the model. ``variant``,
      ``pruning_curve`` and ``match_pruning`` hold two copies (the reference and the
      compressed variant);
    * ``activations`` = ``n_tokens * d_model * 4 B``: ``variant`` writes them and reads them
      back to encode, ``train_sae`` holds them in full;
    * ``sae`` = ``2 * d_model * d_sae * 4 B`` (encoder + decoder): ``variant`` holds it,
      ``train_sae`` holds it ``TRAIN_COPIES`` times (grads and Adam moments);
    * ``codes`` = ``n_tokens * TOPK * 8 B``: the sparse feature codes ``variant`` writes.

    Wall-time terms (seconds), each FLOPs / throughput:

    * transformer forward ``2 * n_params * n_tokens``: ``variant`` (twice, an upper bound:
      the audit forward stops at the hooked layer, and the held-out tokens are fewer),
      ``fp_heldout`` (once), ``pruning_curve`` (``CURVE_STEPS`` times), ``match_pruning``
      (``MATCH_PRUNING_STEPS`` times);
    * SAE encode ``2 * d_model * d_sae * n_tokens``; SAE training six times that per
      token (forward + backward through encoder and decoder);
    * plus ``BASE_MINUTES`` and ``LOAD_MINUTES_PER_GPARAM`` for stages that load weights.

    Returns ``{"mem_mb": int, "runtime": int}`` (runtime in minutes, as SLURM's ``-t``).
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
    if device not in FLOPS:
        raise ValueError(f"unknown device {device!r}; expected one of {tuple(FLOPS)}")
    if min(n_params, d_model, n_tokens) <= 0:
        raise ValueError("n_params, d_model and n_tokens must be positive")
    if attempt < 1:
        raise ValueError("attempt starts at 1")
    if d_sae is None:
        d_sae = DEFAULT_EXPANSION * d_model

    weights = n_params * BYTES_PER_PARAM / MIB
    activations = n_tokens * d_model * BYTES_PER_ACT / MIB
    sae = 2 * d_model * d_sae * 4 / MIB
    codes = n_tokens * TOPK * BYTES_PER_CODE / MIB

    forward_s = 2 * n_params * n_tokens / FLOPS[device]
    encode_s = 2 * d_model * d_sae * n_tokens / FLOPS[device]
    load_min = LOAD_MINUTES_PER_GPARAM * n_params / 1e9

    if stage == "variant":
        mem, seconds, loads = 2 * weights + activations + sae + codes, 2 * forward_s + encode_s, True
    elif stage == "fp_heldout":
        mem, seconds, loads = weights + activations, forward_s, True
    elif stage == "pruning_curve":
        mem, seconds, loads = 2 * weights, CURVE_STEPS * forward_s, True
    elif stage == "match_pruning":
        mem, seconds, loads = 2 * weights, MATCH_PRUNING_STEPS * forward_s, True
    else:  # train_sae
        mem, seconds, loads = activations + TRAIN_COPIES * sae, 6 * encode_s, False

    mem_mb = math.ceil(MEM_SAFETY * (OVERHEAD_MB + mem)) * attempt
    minutes = BASE_MINUTES + (load_min if loads else 0.0) + seconds / 60
    runtime = math.ceil(TIME_SAFETY * minutes) * attempt
    return {"mem_mb": int(mem_mb), "runtime": int(runtime)}
