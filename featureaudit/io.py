"""Atomic writes and checked reads: a crash never leaves a half-written result behind."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import AuditError
from .integrity import seal_dir, seal_file, verify_file


def remove_leftovers(path: Path) -> None:
    """Temporaries of an earlier write of `path` that was killed (SIGKILL skips the cleanup
    below). Snakemake runs one job per output at a time, so none of them is still in use."""
    for pattern in (f".{path.name}.*.tmp", f"..{path.name}.sha256.*.tmp"):
        for old in path.parent.glob(pattern):
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)


def disk_full(e: BaseException) -> bool:
    """The write failed for want of space: an OSError saying so, or a library's own error
    wrapping one (safetensors' StorageFull, pyarrow's IOError text)."""
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(e)
    return any(s in text for s in ("No space left on device", "StorageFull", "Disk quota exceeded"))


def _size(p: Path) -> int:
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size if p.exists() else 0


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def no_space(path: Path, tmp: Path) -> AuditError:
    """One line naming the output, what it had taken when the disk filled, and what is free."""
    free = shutil.disk_usage(path.parent).free
    return AuditError(f"{path}: the disk is full ({_mib(free)} free); this output needs more than the {_mib(_size(tmp))} "
                      "written before it stopped, and was not kept: free space (or set results to a larger disk), "
                      "then run the same command again")


@contextmanager
def atomic_path(path: str | os.PathLike, seal: bool = True):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.
    `seal` records its checksum first (integrity.py): what every result file carries. A full
    disk ends in one AuditError line, the temporary removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if seal:
            seal_file(tmp, path)
        os.replace(tmp, path)
    except Exception as e:
        if disk_full(e):
            raise no_space(path, Path(tmp)) from None
        raise
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a temporary directory beside `path`; it replaces `path` only if the block succeeds,
    with a manifest of its files' checksums written last (its completion marker)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        seal_dir(tmp)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except Exception as e:
        if disk_full(e):
            raise no_space(path, tmp) from None
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_json(obj, path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_plain) + "\n")


def write_csv(frame, path) -> None:
    """A pandas table as CSV, six significant digits (what the tables people open read)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def _plain(x):
    if hasattr(x, "item"):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def read_json(path, verify: bool = True) -> dict:
    """A JSON output, checked against its checksum (`verify=False` for a file inside a
    directory output the caller has verified as a whole)."""
    if verify:
        verify_file(path)
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise AuditError(f"{path} is unreadable ({_first_line(e)}); delete it and rerun to recompute it") from None


# pyarrow is imported where it is used: the Snakefile imports this module (through
# preflight) on every start, and needs none of it.
def write_table(table, path) -> None:
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, write_page_checksum=True)


def read_table(path, columns=None):
    import pyarrow as pa
    import pyarrow.parquet as pq

    verify_file(path)
    try:
        # ParquetFile rather than pq.read_table: the same table from one file, without importing
        # pyarrow.dataset (0.5 s of every job that reads a table)
        with pq.ParquetFile(path, page_checksum_verification=True) as f:
            return f.read(columns=columns)
    except (OSError, pa.ArrowException) as e:
        raise AuditError(f"{path} is corrupt or unreadable ({_first_line(e)}); delete it and rerun to recompute it") from None


def open_parquet(path, verify: bool = True):
    import pyarrow as pa
    import pyarrow.parquet as pq

    if verify:
        verify_file(path)
    try:
        return pq.ParquetFile(path, page_checksum_verification=True)
    except (OSError, pa.ArrowException) as e:
        raise AuditError(f"{path} is corrupt or unreadable ({_first_line(e)}); delete it and rerun to recompute it") from None


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
