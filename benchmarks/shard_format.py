"""Activation shard encoding: parquet defaults (snappy, dictionary) against plain pages, on a
65536 x 2304 fp32 shard (Gemma-2-2B's width), write and read-back times measured in one run
(median of 3, alternating). Backs the choice in featureaudit.model.shards.write_shard.

    python benchmarks/shard_format.py
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

N, D, REPS = 65536, 2304, 7
FORMATS = {"default (snappy, dictionary)": {}, "plain (no compression, no dictionary)":
           dict(compression="none", use_dictionary=False)}


def main():
    acts = (np.random.default_rng(0).standard_normal((N, D)) * 3).astype(np.float32)
    tok = np.arange(N, dtype=np.int64)
    times = {name: [] for name in FORMATS}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(REPS):
            for name, kw in FORMATS.items():
                path = os.path.join(tmp, "shard.parquet")
                t0 = time.perf_counter()
                table = pa.table({"token": tok, "act": pa.FixedSizeListArray.from_arrays(pa.array(acts.reshape(-1)), D)})
                pq.write_table(table, path, write_page_checksum=True, **kw)
                t_write = time.perf_counter() - t0
                os.sync()
                t0 = time.perf_counter()
                back = pq.read_table(path).column("act").combine_chunks().values.to_numpy(zero_copy_only=False)
                t_read = time.perf_counter() - t0
                assert np.array_equal(back.reshape(N, D), acts)
                times[name].append((t_write, t_read, os.path.getsize(path)))
                os.remove(path)
    print(f"shard {N} x {D} fp32 ({acts.nbytes / 1e6:.0f} MB), median of {REPS}, cpus={os.cpu_count()}")
    med = {name: np.median(np.array(v), axis=0) for name, v in times.items()}
    for name, (w, r, size) in med.items():
        print(f"  {name:40s} write {w:5.2f} s  read {r:5.2f} s  file {size / 1e6:.0f} MB")
    (w0, r0, _), (w1, r1, _) = med.values()
    print(f"plain vs default: write {w0 / w1:.2f}x, read {r0 / r1:.2f}x faster")


if __name__ == "__main__":
    main()
