"""Is a file what its name says? Every model, checkpoint and SAE file the config names is opened
at start-up just far enough to know: a GGUF's magic, header and tensor table complete and every
tensor inside the file; a safetensors file's header complete and every tensor inside it; a
compressed-tensors config that parses. One line naming the file and what is wrong with it,
instead of a traceback from a format library an hour later.

Reading a whole GGUF header with gguf-py takes seconds (a 49 K-token vocabulary is thousands of
small arrays); this walks the same layout with `struct`, skipping values it does not need, and
uses gguf-py only for the block sizes of its tensor types. A file that passed is remembered by
path, size and modification time (`remembered`), so each start after the first costs a `stat`."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from ..errors import AuditError
from ..io import atomic_path

GGUF_MAGIC = b"GGUF"
#: Byte sizes of GGUF's scalar value types (gguf-py's GGUFValueType numbering): uint8, int8,
#: uint16, int16, uint32, int32, float32, bool, (8 string), (9 array), uint64, int64, float64.
_SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9


class _Truncated(Exception):
    pass


class _Cursor:
    """Reads little-endian values from an open file, failing on a short read (a cut-off file)."""

    def __init__(self, f, size: int):
        self.f, self.size = f, size

    def read(self, n: int) -> bytes:
        b = self.f.read(n)
        if len(b) != n:
            raise _Truncated
        return b

    def u32(self) -> int:
        return struct.unpack("<I", self.read(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.read(8))[0]

    def skip(self, n: int) -> None:
        if self.f.tell() + n > self.size:
            raise _Truncated
        self.f.seek(n, 1)

    def string(self) -> bytes:
        n = self.u64()
        if n > self.size:
            raise _Truncated
        return self.read(n)


def _skip_value(c: _Cursor, vtype: int) -> None:
    if vtype in _SCALAR:
        c.skip(_SCALAR[vtype])
    elif vtype == _STRING:
        c.skip(c.u64())
    elif vtype == _ARRAY:
        item, n = c.u32(), c.u64()
        if item in _SCALAR:
            c.skip(_SCALAR[item] * n)
        else:
            for _ in range(n):
                _skip_value(c, item)
    else:
        raise ValueError(f"unknown metadata value type {vtype}")


def check_gguf(path: str | os.PathLike, key: str) -> None:
    """`path` is a complete GGUF file: magic, version, metadata, tensor table, and every tensor's
    data inside the file (a download cut short fails here)."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(4)
        if head != GGUF_MAGIC:
            raise AuditError(f"{key}: {path} is not a GGUF file (it starts with {head!r}, not b'GGUF'); "
                             "point it at a .gguf file, or at a transformers folder")
        c = _Cursor(f, size)
        try:
            version = c.u32()
            if version not in (2, 3):
                raise AuditError(f"{key}: {path} is GGUF version {version}, which this reader does not know (2 or 3)")
            n_tensors, n_kv = c.u64(), c.u64()
            alignment = 32
            for _ in range(n_kv):
                name = c.string()
                vtype = c.u32()
                if name == b"general.alignment" and vtype == 4:
                    alignment = c.u32()
                else:
                    _skip_value(c, vtype)
            tensors = []
            for _ in range(n_tensors):
                name = c.string().decode(errors="replace")
                dims = [c.u64() for _ in range(c.u32())]
                ttype, offset = c.u32(), c.u64()
                tensors.append((name, dims, ttype, offset))
        except _Truncated:
            raise AuditError(f"{key}: {path} ends inside its GGUF header ({size} bytes); the file is incomplete: "
                             "download or write it again") from None
        except ValueError as e:
            raise AuditError(f"{key}: {path} has a damaged GGUF header ({e}); write it again") from None
        data_start = -(-f.tell() // alignment) * alignment
    for name, dims, ttype, offset in tensors:
        try:
            block, nbytes = GGML_QUANT_SIZES[GGMLQuantizationType(ttype)]
        except (ValueError, KeyError):
            raise AuditError(f"{key}: {path}: tensor {name} has an unknown type {ttype}; is this llama.cpp's GGUF?") from None
        n = 1
        for d in dims:
            n *= d
        end = data_start + offset + n // block * nbytes
        if end > size:
            raise AuditError(f"{key}: {path} is cut short: tensor {name} ends at byte {end}, the file has {size}; "
                             "the file is incomplete: download or write it again")


def check_safetensors_file(path: str | os.PathLike, key: str) -> None:
    """A complete safetensors file: its header's length, its JSON, and every tensor's byte range
    inside the file."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        n = struct.unpack("<Q", raw)[0] if len(raw) == 8 else None
        if n is None or n > size - 8:
            raise AuditError(f"{key}: {path} is not a complete safetensors file (its header says {n} bytes, the file "
                             f"has {size}); download or write it again")
        try:
            header = json.loads(f.read(n))
            ends = [int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"]
        except (ValueError, KeyError, TypeError, IndexError):
            raise AuditError(f"{key}: {path} has a damaged safetensors header; write it again") from None
    if ends and 8 + n + max(ends) > size:
        raise AuditError(f"{key}: {path} is cut short: its tensors need {8 + n + max(ends)} bytes, the file has "
                         f"{size}; download or write it again")


def check_model_folder(folder: str | os.PathLike, key: str) -> None:
    """A transformers folder: config.json parses, every safetensors file is complete, and a
    compressed-tensors `quantization_config` is one compressed-tensors itself accepts."""
    folder = Path(folder)
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise AuditError(f"{key}: {folder / 'config.json'} does not parse ({str(e).splitlines()[0]}); "
                         "is this a transformers folder?") from None
    for weights in sorted(folder.glob("*.safetensors")):
        check_safetensors_file(weights, key)
    quant = config.get("quantization_config") or {}
    if quant.get("quant_method") == "compressed-tensors":
        check_compressed_tensors(quant, folder / "config.json", key)


def check_compressed_tensors(quant: dict, where: Path, key: str) -> None:
    """The quantization_config parses with compressed-tensors' own model of it."""
    try:
        from compressed_tensors.quantization import QuantizationConfig
    except ImportError:  # pragma: no cover - a dependency of the audit's environment
        return
    try:
        QuantizationConfig.model_validate(quant)
    except Exception as e:  # pydantic's ValidationError, whatever its version calls it
        first = " ".join(str(e).split())[:160]
        raise AuditError(f"{key}: {where}: its compressed-tensors quantization_config does not parse ({first})") from None


def check_artifact(path: str | os.PathLike, key: str) -> None:
    """Whatever the config points at: a GGUF file, a transformers folder, a safetensors file."""
    p = Path(path)
    if p.is_file() and p.suffix == ".gguf":
        check_gguf(p, key)
    elif p.is_file() and p.suffix == ".safetensors":
        check_safetensors_file(p, key)
    elif p.is_dir() and (p / "config.json").is_file():
        check_model_folder(p, key)
    elif p.is_file():
        with open(p, "rb") as f:
            if f.read(4) == GGUF_MAGIC:
                check_gguf(p, key)


#: What start-up learnt from a file, remembered between starts below the working directory.
FILE_FACTS = Path(".snakemake") / "featureaudit" / "file_facts.json"


def remembered(kind: str, file: str, compute):
    """compute(), kept between starts and keyed by the file's path, size and modification time:
    reading a large file's header on every start (and on a cluster, in every job) costs seconds."""
    stat = os.stat(file)
    key = f"{kind}:{os.path.realpath(file)}:{stat.st_size}:{stat.st_mtime_ns}"
    try:
        facts = json.loads(FILE_FACTS.read_text())
    except (OSError, ValueError):
        facts = {}
    if key in facts:
        return facts[key]
    value = compute()
    try:
        FILE_FACTS.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(FILE_FACTS, seal=False) as tmp:
            tmp.write_text(json.dumps({**facts, key: value}, indent=1))
    except OSError:
        pass  # a read-only working directory: no memory, same answer
    return value


def check_artifact_once(path: str, key: str) -> None:
    """check_artifact, remembered for a file that passed (a folder is checked every time: cheap)."""
    if os.path.isfile(path):
        remembered("complete-v1", path, lambda: check_artifact(path, key) or True)
    else:
        check_artifact(path, key)
