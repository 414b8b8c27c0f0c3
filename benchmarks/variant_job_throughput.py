"""A whole variant job on a paper model's architecture against the plain forwards it needs, in one run.

The job is the `variant` rule's body (`featureaudit.variant.job.write_variant`, in process: the
GPU machine has no Snakemake): load the reference, build the variant (RTN W4), capture the
activations at the hook over the audit tokens and write their shards, encode them with the SAE
(sparse codes written), and the task metrics over the held-out tokens against the FP model's
stored summary. The plain loop is the same model loaded the same way, in a plain transformers
loop on the same device and dtype: the forward truncated after the hooked layer over the audit
tokens, and the full forward with logits over the held-out tokens, at the same batch sizes.

Random weights (Pythia-70M's or Gemma-2-2B's shapes, the real vocabularies), random token ids and
a random TopK SAE written in SAELens 6's folder format (the GPU machine has no SAELens): this
measures speed only, never survival. The set-up (model, reference record, tokens, SAE, the FP
held-out summary) is untimed; one plain pass warms the device up before anything is timed.

    python benchmarks/variant_job_throughput.py --arch pythia-70m --audit-tokens 16384 --heldout-tokens 4096  # CPU smoke
    python benchmarks/variant_job_throughput.py --arch gemma2-2b --layer 12 --audit-tokens 262144 \\
        --heldout-tokens 32768                                                                # GPU
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from featureaudit.config import CaptureSettings, EvaluationConfig, ModelRun, ModelSource
from featureaudit.device import resolve_device, resolve_dtype
from featureaudit.inputs.tokens import write_token_table
from featureaudit.model.reference import load_reference, write_reference
from featureaudit.variant.fp_heldout import write_fp_heldout
from featureaudit.variant.job import VariantInputs, VariantOutputs, write_variant
from capture_throughput import ARCHS as GEMMA2_SHAPES, sync
from random_sae import write_random_sae

ARCHS = {
    "pythia-70m": ("gpt_neox", dict(hidden_size=512, num_hidden_layers=6, intermediate_size=2048,
                                    num_attention_heads=8, vocab_size=50304, rotary_pct=0.25,
                                    max_position_embeddings=2048, use_parallel_residual=True)),
    "gemma2-2b": ("gemma2", GEMMA2_SHAPES["gemma2-2b"]),
    "gemma2-small": ("gemma2", GEMMA2_SHAPES["small"]),  # small enough for a CPU smoke run
}
VARIANT = "rtn-w4"


def random_model(arch: str, out: Path, device) -> int:
    """A random-weight model of the architecture, saved with a small tokenizer; its vocab size."""
    from tokenizers import Tokenizer, models
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    model_type, shape = ARCHS[arch]
    cfg = AutoConfig.for_model(model_type, **shape, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    with torch.device(device):  # Gemma-2-2B's init is minutes on a CPU, seconds on a GPU
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16 if device.type == "cuda" else torch.float32)
    model.save_pretrained(out)
    # The job never tokenizes (token ids are given), but the reference is recorded with one.
    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<unk>": 3}
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")),
                                  bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>")
    tok.save_pretrained(out)
    return cfg.vocab_size


def plain_loop(model, ids: dict, layer: int, audit_batch: int, eval_batch: int, device) -> tuple[float, float]:
    """Seconds of the truncated forward over ids["audit"] and the full forward over ids["heldout"]
    (default_overhead.py times its plain loop with this too)."""
    base = model.model if hasattr(model, "model") else model.gpt_neox
    layers = base.layers
    with torch.no_grad():
        sync(device)
        t0 = time.perf_counter()
        base.layers = layers[: layer + 1]  # the hooked layer is the last one that runs
        for s in range(0, len(ids["audit"]), audit_batch):
            base(input_ids=ids["audit"][s : s + audit_batch].to(device), use_cache=False)
        base.layers = layers
        sync(device)
        t1 = time.perf_counter()
        for s in range(0, len(ids["heldout"]), eval_batch):
            model(input_ids=ids["heldout"][s : s + eval_batch].to(device), use_cache=False).logits.float()
        sync(device)
        t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="pythia-70m", choices=ARCHS)
    ap.add_argument("--layer", type=int, default=3)
    ap.add_argument("--audit-tokens", type=int, default=16384)
    ap.add_argument("--heldout-tokens", type=int, default=4096)
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16, help="audit sequences per forward")
    ap.add_argument("--eval-batch", type=int, default=8, help="held-out sequences per forward")
    ap.add_argument("--d-sae", type=int, default=16384)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeat", type=int, default=1, help="time the job and the plain loop this many times each")
    args = ap.parse_args()

    device = resolve_device(args.device)
    dtype = resolve_dtype("auto", device)
    if device.type == "cpu":
        torch.set_num_threads(1)  # one core, like the workflow's variant job under --cores 1
    hook = f"blocks.{args.layer}.hook_resid_post"
    run = ModelRun(args.arch, "auto", args.device)
    capture = CaptureSettings(hook, args.batch, exclude_bos=True, center=False, prepend_bos=True)
    evaluation = EvaluationConfig(n_tokens=args.heldout_tokens, batch_size=args.eval_batch)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        vocab = random_model(args.arch, tmp / "model", device)
        write_reference(ModelSource(args.arch, "hf", str(tmp / "model")), tmp / "reference")
        rng = np.random.default_rng(0)
        ids = {s: rng.integers(4, vocab, (n // args.context, args.context))
               for s, n in (("audit", args.audit_tokens), ("heldout", args.heldout_tokens))}
        for seq in ids.values():
            seq[:, 0] = 1  # BOS, as the tokens stage prepends it
        write_token_table(ids, tmp / "tokens.parquet")
        model, _ = load_reference(tmp / "reference", run, tokenizer=False)
        d_model = model.config.hidden_size
        write_random_sae(d_model, args.d_sae, args.k, hook, args.context, tmp / "sae")
        write_fp_heldout(run, args.eval_batch, tmp / "tokens.parquet", tmp / "reference", tmp / "fp_heldout.safetensors")
        setup = time.perf_counter() - t0
        ids = {s: torch.from_numpy(v) for s, v in ids.items()}
        plain_loop(model, {s: v[: 2 * args.batch] for s, v in ids.items()}, args.layer, args.batch, args.eval_batch,
                   device)  # warm-up: kernels, allocator

        name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu, 1 thread"
        print(f"device {device} ({name}), dtype {dtype}, arch {args.arch} (random weights), hook {hook}, "
              f"audit {ids['audit'].numel()} tokens (batch {args.batch}x{args.context}), held-out "
              f"{ids['heldout'].numel()} tokens (batch {args.eval_batch}), SAE TopK {args.d_sae}/k{args.k}, "
              f"variant {VARIANT}; set-up {setup:.0f} s", flush=True)
        inputs = VariantInputs(str(tmp / "tokens.parquet"), str(tmp / "reference"), (str(tmp / "sae"),),
                               str(tmp / "fp_heldout.safetensors"))
        jobs, plains = [], []
        for r in range(args.repeat):
            out = tmp / f"job{r}"
            sync(device)
            t0 = time.perf_counter()
            write_variant(VARIANT, run, [capture], evaluation, True, "layer", inputs,
                          VariantOutputs(str(out / "activations"), str(out / "codes"), str(out / "metrics.json")))
            sync(device)
            jobs.append(time.perf_counter() - t0)
            audit_s, heldout_s = plain_loop(model, ids, args.layer, args.batch, args.eval_batch, device)
            plains.append(audit_s + heldout_s)
            print(f"plain loop: truncated forward {audit_s:.2f} s + full forward {heldout_s:.2f} s = {plains[-1]:.2f} s; "
                  f"variant job (load, build, capture + shards, encode + codes, metrics) {jobs[-1]:.2f} s", flush=True)
    job, plain = min(jobs), min(plains)
    tokens = ids["audit"].numel() + ids["heldout"].numel()
    print(f"variant job {tokens / job:,.0f} tokens/s, plain loop {tokens / plain:,.0f} tokens/s: "
          f"job / plain = {job / plain:.2f}" + (" (fastest of each)" if args.repeat > 1 else ""))


if __name__ == "__main__":
    main()
