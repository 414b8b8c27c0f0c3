"""SAE codes stored sparse: one row per (token, feature) that fires, never a dense matrix.

One parquet file per variant and hook (codes/<variant>/<hook>.parquet: the variant's job
encodes every hook with that hook's SAE); row group i holds the codes of activation shard i, sorted by
(token, feature). Every variant encodes the same tokens in the same shards, so row group i of
two variants covers the same tokens: survival reads them pairwise, one group at a time.
File metadata: d_sae, n_tokens, and the token count of each group.
Written by the `variant` rule (variant/job.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import AuditError
from ..io import atomic_path, open_parquet
from ..model.shards import iter_activation_shards, shard_paths
from ..progress import progress_bar
from .frozen import check_width

SCHEMA = pa.schema([("token", pa.int64()), ("feature", pa.int32()), ("value", pa.float32())])


def encode_batch(d_sae: int, device) -> int:
    """Rows per encode. On a CPU, as many as keep the (rows, d_sae) pre-activations within a few
    MiB, so the bias, rescale and TopK passes over them run from cache: 0.3 s of 1.8 s on the
    default's 32 K tokens (d_sae 4 608: 455 rows), the codes bit-identical (measured). A GPU
    wants large batches."""
    if getattr(device, "type", str(device)) != "cpu":
        return 4096
    return max(64, (8 << 20) // (4 * d_sae))


def sparse_encode(sae, acts: np.ndarray, tokens: np.ndarray, batch: int | None = None):
    """Encode (n, d_in) activations; returns token, feature, value arrays of the nonzeros."""
    import torch  # here, not at the top: the table rules read codes files without torch

    device = next(sae.parameters()).device
    dtype = next(sae.parameters()).dtype
    batch = batch or encode_batch(int(sae.cfg.d_sae), device)
    out_t, out_f, out_v = [], [], []
    with torch.no_grad():
        for s in range(0, len(acts), batch):
            # torch.tensor copies: the activations come read-only from parquet buffers.
            x = torch.tensor(acts[s : s + batch], device=device, dtype=dtype)
            if hasattr(sae, "encode_sparse"):  # encoder.SaeEncoder
                rows, feats, values = sae.encode_sparse(x)
            else:  # an SAE that SAELens loads
                z = sae.encode(x)
                rows, feats = torch.nonzero(z, as_tuple=True)  # row-major: sorted by token, then feature
                values = z[rows, feats]
            out_t.append(tokens[s : s + batch][rows.cpu().numpy()])
            out_f.append(feats.cpu().numpy().astype(np.int32))
            out_v.append(values.float().cpu().numpy())
    cat = lambda xs, dt: np.concatenate(xs).astype(dt, copy=False) if xs else np.zeros(0, dt)
    return cat(out_t, np.int64), cat(out_f, np.int32), cat(out_v, np.float32)


def encode_activations(sae, act_dir, out_path, batch: int | None = None, progress: bool = True) -> int:
    """Encode every activation shard into one sparse parquet file; returns #nonzeros."""
    n_shards = len(shard_paths(act_dir))
    group_tokens, n_tokens, nnz = [], 0, 0
    d_sae = int(sae.cfg.d_sae)
    shards = progress_bar(iter_activation_shards(act_dir), total=n_shards, desc="encode", unit="shard",
                      enabled=progress)
    with atomic_path(out_path) as tmp:
        with pq.ParquetWriter(tmp, SCHEMA, write_page_checksum=True) as writer:
            for tok, acts in shards:
                check_width(sae.cfg.d_in, acts.shape[1], f"the activations in {act_dir}")
                t, f, v = sparse_encode(sae, acts, tok, batch)
                writer.write_table(pa.table({"token": t, "feature": f, "value": v}, schema=SCHEMA), row_group_size=max(len(t), 1))
                group_tokens.append(len(tok))
                n_tokens += len(tok)
                nnz += len(t)
            writer.add_key_value_metadata(
                {"d_sae": str(d_sae), "n_tokens": str(n_tokens), "group_tokens": json.dumps(group_tokens)}
            )
    return nnz


def hook_codes(codes_dir, hook: str) -> Path:
    """The codes file of one hook inside a variant's codes folder (the folder checked first)."""
    from ..integrity import verify_dir

    path = verify_dir(codes_dir) / f"{hook}.parquet"
    if not path.is_file():
        raise AuditError(f"{codes_dir} has no codes for {hook} (encoded before the hook was added?); "
                         f"delete {codes_dir} and rerun")
    return path


class Codes:
    """Read access to one variant's sparse codes."""

    def __init__(self, path):
        self.path = Path(path)
        self.file = open_parquet(path)
        meta = self.file.metadata.metadata or {}
        try:
            self.d_sae = int(meta[b"d_sae"])
            self.n_tokens = int(meta[b"n_tokens"])
            self.group_tokens = json.loads(meta[b"group_tokens"])
        except (KeyError, ValueError):
            raise AuditError(f"{path} is not a featureaudit codes file (metadata missing); delete it and rerun") from None
        if len(self.group_tokens) != self.file.num_row_groups:
            raise AuditError(f"{path} is truncated ({self.file.num_row_groups} of {len(self.group_tokens)} groups); delete it and rerun")

    def groups(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yields (token, feature, value) arrays one row group at a time."""
        for i in range(self.file.num_row_groups):
            try:
                t = self.file.read_row_group(i)
                yield t.column("token").to_numpy(), t.column("feature").to_numpy(), t.column("value").to_numpy()
            except (OSError, pa.ArrowException) as e:
                raise AuditError(f"{self.path} is corrupt ({str(e).splitlines()[0]}); delete it and rerun") from None


def check_aligned(a: Codes, b: Codes) -> None:
    if a.d_sae != b.d_sae or a.group_tokens != b.group_tokens:
        raise AuditError(
            f"{a.path} and {b.path} were not encoded on the same tokens with the same SAE; "
            "delete the stale one and rerun"
        )


def matching(kx: np.ndarray, ky: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions (ix, iy) with kx[ix] == ky[iy], iy ascending; keys are unique within each array.

    Codes row groups are sorted by (token, feature), so kx is normally sorted already and a
    binary search of ky in it replaces np.intersect1d's argsort of both arrays together (the
    same pairs; ~15% faster, ~40% of the temporary memory). Unsorted kx is sorted first.
    """
    if len(kx) == 0 or len(ky) == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    order = None
    if not (kx[1:] > kx[:-1]).all():
        order = np.argsort(kx, kind="stable")
        kx = kx[order]
    pos = np.searchsorted(kx, ky)
    np.minimum(pos, len(kx) - 1, out=pos)
    iy = np.flatnonzero(kx[pos] == ky)
    ix = pos[iy]
    return (ix if order is None else order[ix]), iy
