"""Activation + codes throughput against a plain truncated forward, measured in one run.

The activation stage (forward hooks, early exit after the hooked layer, copy to CPU, parquet
shards written) and the codes stage (shards read back, encoded by an SAE on the same device,
sparse parquet written) are compared with `model(ids, output_hidden_states=True)` on a copy of
the model truncated to the same layer count, on the same tokens and device. The SAE is a
random TopK SAE of Gemma Scope's 16k width (benchmarks/random_sae.py). Random weights: this
measures speed only, never survival.

    python benchmarks/capture_throughput.py --arch gemma2-2b --layer 12 --tokens 1048576   # GPU
    python benchmarks/capture_throughput.py --arch gemma2-2b --layer 6 12 18 --tokens 1048576  # three hooks
    python benchmarks/capture_throughput.py --arch small --layer 2 --tokens 16384          # CPU smoke

With several layers, one forward captures every hook (the variant job's way) and each hook's
shards are encoded by an SAE of its own; the plain forward runs to the deepest layer.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch
from transformers import Gemma2Config, Gemma2ForCausalLM

from featureaudit.device import resolve_device, resolve_dtype
from featureaudit.model.architecture import decoder_layers
from featureaudit.model.capture import write_hook_shards
from featureaudit.sae.codes import encode_activations
from featureaudit.sae.encoder import load_encoder
from random_sae import write_random_sae

ARCHS = {
    # Gemma-2-2B's architecture (random weights).
    "gemma2-2b": dict(hidden_size=2304, num_hidden_layers=26, intermediate_size=9216, num_attention_heads=8,
                      num_key_value_heads=4, head_dim=256, vocab_size=256000),
    # Same shape family, small enough for a CPU.
    "small": dict(hidden_size=256, num_hidden_layers=6, intermediate_size=1024, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=64, vocab_size=32000),
}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="small", choices=ARCHS)
    ap.add_argument("--layer", type=int, nargs="+", default=[2], help="one or several layers (one forward for all)")
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--d-sae", type=int, default=16384)
    ap.add_argument("--k", type=int, default=64)
    args = ap.parse_args()

    device = resolve_device("auto")
    dtype = resolve_dtype("auto", device)
    torch.manual_seed(0)
    cfg = Gemma2Config(**ARCHS[args.arch], attn_implementation="sdpa" if device.type == "cuda" else "eager")
    model = Gemma2ForCausalLM(cfg).to(device=device, dtype=dtype).eval()
    n_seq = args.tokens // args.context
    ids = torch.randint(0, cfg.vocab_size, (n_seq, args.context))
    hooks = [f"blocks.{layer}.hook_resid_post" for layer in sorted(args.layer)]
    deepest = max(args.layer)

    truncated = copy.deepcopy(model)  # a real copy: truncating a shallow copy truncates the original
    layers = decoder_layers(truncated)
    del layers[deepest + 1 :]
    truncated.config.num_hidden_layers = deepest + 1

    def plain():
        with torch.no_grad():
            for s in range(0, n_seq, args.batch):
                out = truncated.model(input_ids=ids[s : s + args.batch].to(device), output_hidden_states=True,
                                      use_cache=False)
                out.hidden_states[deepest + 1].shape
        sync(device)

    sae_dir = tempfile.TemporaryDirectory()
    saes = {h: load_encoder(write_random_sae(cfg.hidden_size, args.d_sae, args.k, h, args.context,
                                             Path(sae_dir.name) / h), device, output=False) for h in hooks}

    def stage(tmp):
        write_hook_shards(model, ids, {h: f"{tmp}/acts/{h}" for h in hooks}, batch_size=args.batch, progress=False)
        sync(device)

    def codes(tmp):
        for h, sae in saes.items():
            encode_activations(sae, f"{tmp}/acts/{h}", f"{tmp}/{h}.parquet", progress=False)
        sync(device)

    plain()  # warm-up (kernels, allocator)
    t0 = time.perf_counter(); plain(); t_plain = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter(); stage(tmp); t_stage = time.perf_counter() - t0
        t0 = time.perf_counter(); codes(tmp); t_codes = time.perf_counter() - t0
    tokens = n_seq * args.context
    print(f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}), dtype {dtype}, "
          f"arch {args.arch}, hook {', '.join(hooks)}, {tokens} tokens, batch {args.batch}x{args.context}, "
          f"SAE TopK {args.d_sae}/k{args.k}")
    print(f"plain truncated forward      : {tokens / t_plain:12.0f} tokens/s")
    print(f"activation stage (+shards)   : {tokens / t_stage:12.0f} tokens/s   ratio {t_plain / t_stage:.2f}")
    print(f"codes stage (read+encode+pq) : {tokens / t_codes:12.0f} tokens/s")
    print(f"activation + codes           : {tokens / (t_stage + t_codes):12.0f} tokens/s   "
          f"ratio {t_plain / (t_stage + t_codes):.2f}  (target >= 0.5)")


if __name__ == "__main__":
    main()
