"""The workflow's time per variant against the plain compute the audit cannot avoid, in one run.

Plain loop: the reference model (SmolLM2-135M, the embedded default) in a plain transformers
loop, one thread: the forward truncated after the hooked layer over the audit tokens (batch 16),
and the full forward with logits over the held-out tokens (batch 8). Nothing else: no variant
build, no SAE, no files.

Workflow: the same budgets (config.yaml's audit and held-out tokens), one RTN variant's outputs
(activations, codes, metrics) made by `snakemake --cores 1` after everything they depend on
exists: wall time, Snakemake's start included. One core, so the wall time is the core time a
variant costs when a full run keeps every core busy; its jobs run one thread each, like the
plain loop. With `--variants N`, one Snakemake run makes N RTN variants (rtn-w4, rtn-w5, ...)
and its wall time is divided by N: the workflow's time per variant when a run has several, as
the default's does, Snakemake's start shared among them (each job still starts its own Python
and imports torch and transformers).

The SAE is trained briefly on few tokens (its quality does not change the time to encode), and
the corpus is pydoc's topics (enough text for these budgets, and a source every version of the
workflow reads), so the script also measures older commits:

    python benchmarks/default_overhead.py                     # this checkout
    python benchmarks/default_overhead.py --repo /path/to/old/checkout
    python benchmarks/default_overhead.py --repeat 3     # the fastest of three of each
    python benchmarks/default_overhead.py --variants 4   # per variant, four made in one run
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
FIRST_BITS = 4  # the variants timed: rtn-w4, rtn-w5, ...


def bench_config(results: Path, n_variants: int = 1) -> dict:
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    audit, heldout = cfg["corpus"]["n_tokens"], cfg["evaluation"]["n_tokens"]
    model = cfg["models"]["smollm2"]
    model["checkpoints"] = {}
    model["sae"]["train"].update(steps=50)
    return {
        "results": str(results), "device": "cpu",
        "corpus": {"source": "pydoc", "n_tokens": audit, "sae_train_tokens": 8192, "context_length": 128,
                   "seed": 0},
        "models": {"smollm2": model},
        "quantization": {"bits": list(range(FIRST_BITS, FIRST_BITS + n_variants))},
        "pruning": {"sparsity": [], "match": False},
        "evaluation": {"n_tokens": heldout, "batch_size": cfg["evaluation"]["batch_size"]},
        "survival": cfg["survival"],
    }


def snakemake(repo: Path, workdir: Path, *targets: str) -> float:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "--cores", "1", *targets]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(repo)})
    if proc.returncode:
        sys.exit(f"snakemake failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def plain_loop(results: Path, hook_layer: int, audit_batch: int, eval_batch: int) -> dict:
    import numpy as np
    import pyarrow.parquet as pq
    import torch
    from transformers import AutoModelForCausalLM
    from variant_job_throughput import plain_loop as timed_forwards

    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(results / "reference" / "dequantized", dtype=torch.float32).eval()
    table = pq.read_table(results / "tokens.parquet").to_pandas()
    ids = {s: torch.tensor(np.stack(table[table.split == s].input_ids.to_numpy())) for s in ("audit", "heldout")}
    audit_s, heldout_s = timed_forwards(model, ids, hook_layer, audit_batch, eval_batch, torch.device("cpu"))
    return {"audit_s": audit_s, "heldout_s": heldout_s, "audit_tokens": ids["audit"].numel(),
            "heldout_tokens": ids["heldout"].numel()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", type=Path, default=REPO, help="the checkout whose workflow is timed")
    ap.add_argument("--repeat", type=int, default=1,
                    help="time the variant's job and the plain loop this many times, alternately, and compare "
                         "the fastest of each (a shared machine's noise is several seconds)")
    ap.add_argument("--variants", type=int, default=1,
                    help="RTN variants made in the one timed Snakemake run (its wall time is divided by this)")
    args = ap.parse_args()
    if not 1 <= args.variants <= 9 - FIRST_BITS:
        sys.exit(f"--variants must be 1 to {9 - FIRST_BITS} (rtn-w{FIRST_BITS} .. rtn-w8)")
    repo = args.repo.resolve()
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results = work / "results"
        cfg = bench_config(results, args.variants)
        (work / "config.yaml").write_text(yaml.safe_dump(cfg))
        m = f"{results}/smollm2"
        print(f"workflow at {repo} ({commit}); audit {cfg['corpus']['n_tokens']} tokens, "
              f"held-out {cfg['evaluation']['n_tokens']} tokens", flush=True)
        setup = snakemake(repo, work, f"{m}/codes/fp.parquet", f"{m}/metrics/fp.json")
        print(f"set-up (tokens, reference, SAE, fp): {setup:.0f} s", flush=True)
        layer = int(cfg["models"]["smollm2"]["hook"].split(".")[1])
        variants = [f"rtn-w{b}" for b in cfg["quantization"]["bits"]]
        targets = [f"{m}/{kind}/{v}.{ext}" for v in variants for kind, ext in (("codes", "parquet"), ("metrics", "json"))]
        outputs = [Path(t) for t in targets] + [Path(f"{m}/activations/{v}") for v in variants]
        workflow_runs, plain_runs = [], []
        for _ in range(args.repeat):
            for out in outputs:  # the job again, from the same inputs
                shutil.rmtree(out) if out.is_dir() else out.unlink(missing_ok=True)
            workflow_runs.append(snakemake(repo, work, *targets) / len(variants))
            plain = plain_loop(results / "smollm2", layer, cfg["models"]["smollm2"]["batch_size"],
                               cfg["evaluation"]["batch_size"])
            plain_runs.append(plain["audit_s"] + plain["heldout_s"])
            print(f"plain loop, 1 thread: truncated forward over {plain['audit_tokens']} audit tokens "
                  f"{plain['audit_s']:.1f} s, full forward over {plain['heldout_tokens']} held-out tokens "
                  f"{plain['heldout_s']:.1f} s, total {plain_runs[-1]:.1f} s", flush=True)
            made = variants[0] if len(variants) == 1 else f"{len(variants)} variants ({', '.join(variants)}), per variant"
            print(f"workflow, {made} (snakemake --cores 1): {workflow_runs[-1]:.1f} s", flush=True)
    workflow_s, plain_s = min(workflow_runs), min(plain_runs)
    best = " (fastest of each)" if args.repeat > 1 else ""
    print(f"ratio workflow / plain loop{best}: {workflow_s:.1f} / {plain_s:.1f} = {workflow_s / plain_s:.2f} "
          f"(target <= 1.2)")


if __name__ == "__main__":
    main()
