"""Peak memory and time of the survival pass as the number of audit tokens grows.

Synthetic sparse SAE codes (d_sae features, ~`active` nonzeros per token, row groups of
`group` tokens, the file format of featureaudit.sae.codes) are written streaming -- one row group
at a time, never a dense matrix -- for an FP file and a perturbed variant file (90% of the FP
codes kept with 10% multiplicative noise, 10% dropped, ~10% new ones). `survival_table` is then
run on the pair, each measurement in a fresh subprocess so it starts clean:

  rss     ru_maxrss after the pass minus ru_maxrss before it (imports done), plus the peak of
          pyarrow's memory pool, and the wall time of the pass
  traced  tracemalloc's peak during the pass (numpy and Python allocations; not arrow's pool)

The survival pass keeps O(d_sae) sums plus one row group of each file, so the peak should
not grow with the number of tokens: the ratio peak(largest N)/peak(smallest N) should be ~1.

    python benchmarks/survival_memory.py                       # N = 1e5 and 1e6 (several minutes)
    python benchmarks/survival_memory.py --tokens 20000 70000  # smoke run
    python benchmarks/survival_memory.py --profile             # + cProfile of the largest pass
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_pair(fp_path: Path, var_path: Path, n_tokens: int, d_sae: int, active: int, group: int, seed: int = 0) -> dict:
    """Stream FP and variant codes, one row group (`group` tokens) at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from featureaudit.sae.codes import SCHEMA

    rng = np.random.default_rng(seed)
    rows = {"fp": 0, "variant": 0}
    group_tokens = []
    with pq.ParquetWriter(fp_path, SCHEMA, write_page_checksum=True) as wf, \
         pq.ParquetWriter(var_path, SCHEMA, write_page_checksum=True) as wv:
        for start in range(0, n_tokens, group):
            n = min(group, n_tokens - start)
            # FP: `active` draws per token, duplicates dropped -> sorted unique (token, feature) keys
            key = np.unique(np.arange(n, dtype=np.int64).repeat(active) * d_sae
                            + rng.integers(0, d_sae, n * active))
            val = rng.exponential(1.0, len(key)).astype(np.float32) + np.float32(0.01)
            # variant: keep 90% with 10% noise, add ~active/10 new codes per token
            keep = rng.random(len(key)) < 0.9
            new = np.arange(n, dtype=np.int64).repeat(active // 10) * d_sae + rng.integers(0, d_sae, n * (active // 10))
            vkey = np.concatenate([key[keep], new])
            vval = np.concatenate([val[keep] * (1 + 0.1 * rng.standard_normal(int(keep.sum()))).astype(np.float32),
                                   rng.exponential(1.0, len(new)).astype(np.float32) + np.float32(0.01)])
            vkey, first = np.unique(vkey, return_index=True)  # kept FP codes win over new duplicates
            vval = vval[first]
            for writer, k, v, name in ((wf, key, val, "fp"), (wv, vkey, vval, "variant")):
                table = pa.table({"token": start + k // d_sae, "feature": (k % d_sae).astype(np.int32), "value": v},
                                 schema=SCHEMA)
                writer.write_table(table, row_group_size=max(len(k), 1))
                rows[name] += len(k)
            group_tokens.append(n)
            del key, val, vkey, vval, keep, new, first
        meta = {"d_sae": str(d_sae), "n_tokens": str(n_tokens), "group_tokens": json.dumps(group_tokens)}
        wf.add_key_value_metadata(meta)
        wv.add_key_value_metadata(meta)
    return rows


def measure(fp: str, var: str, mode: str) -> dict:
    """Run in a fresh subprocess: one survival pass, measured one way."""
    import pyarrow as pa

    from featureaudit.measure.survival import fractions, survival_table

    pool = pa.default_memory_pool()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    out = {"mode": mode, "rss_before_mib": before / 1024}
    if mode == "traced":
        import tracemalloc

        tracemalloc.start()
        t0 = time.perf_counter()
        table = survival_table(fp, var)
        out["seconds"] = time.perf_counter() - t0
        out["traced_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    elif mode == "profile":
        import cProfile
        import io
        import pstats

        prof = cProfile.Profile()
        t0 = time.perf_counter()
        table = prof.runcall(survival_table, fp, var)
        out["seconds"] = time.perf_counter() - t0
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(12)
        out["profile"] = s.getvalue()
    else:
        t0 = time.perf_counter()
        table = survival_table(fp, var)
        out["seconds"] = time.perf_counter() - t0
        out["rss_delta_mib"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        out["arrow_pool_peak_mib"] = pool.max_memory() / 2**20
    fr = fractions(table)
    out["n_active"], out["frac_survived"] = fr["n_active"], fr["frac_survived"]
    return out


def child(fp: Path, var: Path, mode: str) -> dict:
    r = subprocess.run([sys.executable, __file__, "--measure", str(fp), str(var), mode],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--d-sae", type=int, default=16_384)
    ap.add_argument("--active", type=int, default=50)
    ap.add_argument("--group", type=int, default=65_536)
    ap.add_argument("--tmp", default=None, help="where the codes files go (default: a new folder under /tmp)")
    ap.add_argument("--profile", action="store_true", help="also cProfile the pass on the largest N")
    ap.add_argument("--measure", nargs=3, metavar=("FP", "VAR", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return

    root = Path(tempfile.mkdtemp(prefix="survival-memory-", dir=args.tmp or "/tmp"))
    results = []
    print(f"survival pass memory: d_sae={args.d_sae}, ~{args.active} active/token, row groups of {args.group} tokens; "
          f"cpus={os.cpu_count()}; files under {root}", flush=True)
    try:
        for n in args.tokens:
            fp, var = root / f"fp-{n}.parquet", root / f"var-{n}.parquet"
            t0 = time.perf_counter()
            rows = write_pair(fp, var, n, args.d_sae, args.active, args.group)
            gen_s = time.perf_counter() - t0
            mb = (fp.stat().st_size + var.stat().st_size) / 2**20
            print(f"N={n}: wrote {rows['fp']:,} + {rows['variant']:,} rows ({mb:.0f} MiB) in {gen_s:.1f} s", flush=True)
            rss = child(fp, var, "rss")
            traced = child(fp, var, "traced")
            res = {"tokens": n, "rows_fp": rows["fp"], "rows_variant": rows["variant"], "files_mib": mb, "gen_s": gen_s,
                   "seconds": rss["seconds"], "rss_delta_mib": rss["rss_delta_mib"],
                   "arrow_pool_peak_mib": rss["arrow_pool_peak_mib"], "traced_peak_mib": traced["traced_peak_mib"],
                   "traced_seconds": traced["seconds"], "n_active": rss["n_active"], "frac_survived": rss["frac_survived"]}
            results.append(res)
            print(f"  pass {res['seconds']:.1f} s, {n / res['seconds'] / 1e3:.0f} K tokens/s; ru_maxrss delta "
                  f"{res['rss_delta_mib']:.0f} MiB; arrow pool peak {res['arrow_pool_peak_mib']:.0f} MiB; tracemalloc peak "
                  f"{res['traced_peak_mib']:.0f} MiB; {res['n_active']} active features, "
                  f"{100 * res['frac_survived']:.1f}% survived", flush=True)
            if args.profile and n == max(args.tokens):
                print(child(fp, var, "profile")["profile"], flush=True)
            fp.unlink()
            var.unlink()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print()
    hdr = f"{'tokens':>10} {'rows/file':>12} {'files MiB':>10} {'pass s':>8} {'tok/s':>10} {'maxrss Δ MiB':>13} " \
          f"{'arrow MiB':>10} {'traced MiB':>11}"
    print(hdr)
    print("-" * len(hdr))
    for r in results:
        print(f"{r['tokens']:>10,} {r['rows_fp']:>12,} {r['files_mib']:>10.0f} {r['seconds']:>8.1f} "
              f"{r['tokens'] / r['seconds']:>10,.0f} {r['rss_delta_mib']:>13.0f} {r['arrow_pool_peak_mib']:>10.0f} "
              f"{r['traced_peak_mib']:>11.0f}")
    if len(results) > 1:
        a, b = results[0], results[-1]
        print(f"\npeak({b['tokens']:,}) / peak({a['tokens']:,}) over {b['tokens'] / a['tokens']:.0f}x the tokens: "
              f"ru_maxrss delta {b['rss_delta_mib'] / a['rss_delta_mib']:.2f}, "
              f"tracemalloc {b['traced_peak_mib'] / a['traced_peak_mib']:.2f}, "
              f"arrow pool {b['arrow_pool_peak_mib'] / a['arrow_pool_peak_mib']:.2f}; "
              f"time {b['seconds'] / a['seconds']:.1f}x")


if __name__ == "__main__":
    main()
