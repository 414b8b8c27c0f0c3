"""Activation shards on disk: what the capture stage writes and the codes stage reads.

Parquet files `shard-00000.parquet`, ... of up to `shard_tokens` rows each, columns `token`
(global index seq*T + pos) and `act` (fixed-size list of float32, width d); the file metadata
records the hook and the width. Pure numpy/pyarrow: reading shards needs no model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import AuditError
from ..integrity import verify_dir
from ..io import open_parquet


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.parquet"


def write_shard(path: Path, tok: np.ndarray, acts: np.ndarray, hook_name: str) -> None:
    d = acts.shape[1]
    table = pa.table({"token": tok, "act": pa.FixedSizeListArray.from_arrays(pa.array(acts.reshape(-1)), d)})
    table = table.replace_schema_metadata({"hook_name": hook_name, "d_in": str(d)})
    # Dense floats neither compress nor dictionary-encode (same file size); skipping both makes
    # writes 1.1-1.2x faster, reads unchanged (benchmarks/shard_format.py).
    pq.write_table(table, path, compression="none", use_dictionary=False, write_page_checksum=True)


def shard_paths(act_dir) -> list[Path]:
    verify_dir(act_dir)
    paths = sorted(Path(act_dir).glob("shard-*.parquet"))
    if not paths:
        raise AuditError(f"{act_dir} holds no activation shards; delete it and rerun to recompute it")
    return paths


def iter_activation_shards(act_dir) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yields (token_index (n,), activations (n, d) float32) per shard, in token order."""
    for path in shard_paths(act_dir):
        try:
            table = open_parquet(path, verify=False).read()  # a damaged page raises OSError here, not on open
            col = table.column("act").combine_chunks()
            d = col.type.list_size
            acts = col.values.to_numpy(zero_copy_only=False).reshape(-1, d)
            tok = table.column("token").to_numpy()
        except (KeyError, AttributeError, OSError, pa.ArrowException, ValueError) as e:
            cause = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise AuditError(f"activation shard {path} is corrupt ({cause}); delete {act_dir} and rerun") from None
        yield tok, acts
