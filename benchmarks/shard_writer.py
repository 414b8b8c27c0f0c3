"""Activation stage with shards written in background threads (featureaudit.model.capture) against
the same code writing each shard inline, measured in one run. The model is Gemma-2-shaped at
width 2304 with one cheap layer, so that writing the shards is a large share of the stage (as
on a GPU, where the forward is fast and the shard writes are CPU work). Runs on CUDA when
present (bf16 there, as the workflow's `dtype: auto`).

    python benchmarks/shard_writer.py
"""

from __future__ import annotations

import os
import tempfile
import time
from concurrent.futures import Future

import torch
from transformers import Gemma2Config, Gemma2ForCausalLM

from featureaudit.device import resolve_device, resolve_dtype
import featureaudit.model.capture as capture

TOKENS, CONTEXT, SHARD_TOKENS = 131072, 128, 32768


class InlineExecutor:
    """The writes done in the calling thread, one after another (no overlap)."""

    def __init__(self, workers):
        pass

    def submit(self, fn, *args):
        f = Future()
        f.set_result(fn(*args))
        return f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def run(model, ids) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        capture.write_activation_shards(model, ids, "blocks.0.hook_resid_post", f"{tmp}/acts", batch_size=64,
                                        shard_tokens=SHARD_TOKENS, exclude_bos=False, progress=False)
        return time.perf_counter() - t0


def main():
    torch.manual_seed(0)
    cfg = Gemma2Config(hidden_size=2304, num_hidden_layers=1, intermediate_size=64, num_attention_heads=1,
                       num_key_value_heads=1, head_dim=32, vocab_size=1000, attn_implementation="eager")
    device = resolve_device("auto")
    model = Gemma2ForCausalLM(cfg).to(device=device, dtype=resolve_dtype("auto", device)).eval()
    ids = torch.randint(0, cfg.vocab_size, (TOKENS // CONTEXT, CONTEXT))
    threaded = capture.ThreadPoolExecutor
    times = {"inline": [], "threaded": []}
    for _ in range(2):  # alternating, best of 2
        capture.ThreadPoolExecutor = InlineExecutor
        times["inline"].append(run(model, ids))
        capture.ThreadPoolExecutor = threaded
        times["threaded"].append(run(model, ids))
    print(f"{TOKENS} tokens x 2304, {TOKENS // SHARD_TOKENS} shards, SHARD_WRITERS={capture.SHARD_WRITERS}, "
          f"cpus={os.cpu_count()}, device {device}")
    for name, ts in times.items():
        print(f"  writes {name:8s}: {min(ts):6.2f} s  {TOKENS / min(ts):8.0f} tokens/s")
    print(f"threaded / inline throughput: {min(times['inline']) / min(times['threaded']):.2f}x")


if __name__ == "__main__":
    main()
