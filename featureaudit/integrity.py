"""Checksums for every output: written with it, checked by its readers, scanned at start-up.

A file output `x` gets a sidecar `.x.sha256` beside it; a directory output gets
`MANIFEST.sha256` inside it, one line per file, written last, so it is also the directory's
completion marker. Both are in `sha256sum` format: `sha256sum -c` checks them by hand too.

The sidecar or manifest is written before the output is renamed into place, from the bytes
that are renamed: a complete output always has one, and its files are never newer than it.
That gives a cheap check for start-up (`scan(results, full=False)`): only files modified
after their checksum was written are hashed. Pure Python: the Snakefile runs the cheap scan.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import AuditError

MANIFEST = "MANIFEST.sha256"

#: Output folder or file under results/<model>/ -> the rule that writes it.
PRODUCERS = {
    "tokens.parquet": "tokens", "reference": "reference_model", "sae": "sae",
    "checkpoints": "write_checkpoint", "activations": "variant", "codes": "variant", "metrics": "variant",
    "fp_heldout.safetensors": "fp_heldout", "fp_statistics.parquet": "fp_statistics", "survival": "survival",
    "predictability": "predictability", "curve.json": "pruning_curve", "matched": "match_pruning",
    "overlap": "overlap", "summary.csv": "summary", "fp_blocks.npz": "fp_statistics",
    "contexts.parquet": "fp_statistics", "bootstrap": "survival", "evidence": "survival", "browser.html": "browser",
    "causal": "causal",
    "figures": "figures",
}


def sha256_of(path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def sidecar(path) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.sha256")


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def seal_file(content, final) -> None:
    """Record the checksum of `content` (the temporary file about to become `final`)."""
    final = Path(final)
    _write_text_atomic(sidecar(final), f"{sha256_of(content)}  {final.name}\n")


def seal_dir(folder) -> None:
    """Write the manifest of every file under `folder` (the temporary directory about to be
    renamed into place)."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    lines = [f"{sha256_of(p)}  {p.relative_to(folder).as_posix()}\n" for p in files]
    _write_text_atomic(folder / MANIFEST, "".join(lines))


def _parse(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64:
            raise ValueError(line)
        out[name] = digest
    return out


def producer(path) -> str | None:
    """The rule that writes an output, from its place under results/<model>/."""
    for part in reversed(Path(path).parts):
        if part in PRODUCERS:
            return PRODUCERS[part]
    return None


def remedy(path) -> str:
    """The one-line fix for a damaged output. Removing it is enough: every reader checks its
    input, so what was computed from it was computed before the damage and stays valid, and
    Snakemake recomputes a missing file when a job needs it, or when named as a target."""
    rule = producer(path)
    made = f"written by rule {rule}; " if rule else ""
    return f"{made}remove it, then rerun with it as the target to recompute it: rm -r {path}"


# --------------------------------------------------------------------------- checks


def _recorded(listing: Path, absent: str) -> tuple[dict[str, str], int] | str:
    """(name -> digest, the listing's mtime) of a checksum file, or why it cannot be used."""
    try:
        return _parse(listing.read_text()), listing.stat().st_mtime_ns
    except FileNotFoundError:
        return absent
    except (OSError, ValueError):
        return f"has an unreadable checksum file {listing.name}"


def _mismatch(file: Path, digest: str, since_ns: int, full: bool) -> bool:
    """Whether `file` differs from `digest`; `full=False` trusts a file not modified since."""
    if not full and file.stat().st_mtime_ns <= since_ns:
        return False
    return sha256_of(file) != digest


def file_problem(path, full: bool = True) -> str | None:
    """Why a file output cannot be trusted, or None. `full=False` hashes only a file modified
    after its checksum was written."""
    path = Path(path)
    if not path.is_file():
        return "is missing"
    listing = _recorded(sidecar(path), "has no checksum (it was not written completely by this workflow)")
    if isinstance(listing, str):
        return listing
    recorded, since = listing
    if path.name not in recorded:
        return f"is not named in its checksum file {sidecar(path).name}"
    if _mismatch(path, recorded[path.name], since, full):
        return "is damaged (its checksum differs from the one recorded when it was written)"
    return None


def dir_problem(folder, full: bool = True) -> str | None:
    """Why a directory output cannot be trusted, or None."""
    folder = Path(folder)
    if not folder.is_dir():
        return "is missing"
    listing = _recorded(folder / MANIFEST, f"is incomplete (no {MANIFEST}: the job that wrote it did not finish)")
    if isinstance(listing, str):
        return listing
    recorded, since = listing
    for name, digest in recorded.items():
        if not (folder / name).is_file():
            return f"is damaged ({name} is missing)"
        if _mismatch(folder / name, digest, since, full):
            return f"is damaged ({name}: its checksum differs from the one recorded when it was written)"
    return None


# A job reads the same output more than once (the reference's record, then its weights):
# hash it once per process, unless it changed since.
_verified: dict[tuple, bool] = {}


def _stamp(path: Path) -> tuple:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def verify_file(path) -> Path:
    """`path`, after checking it against its checksum; a one-line AuditError if it fails."""
    path = Path(path)
    try:
        key = _stamp(path)
    except OSError:
        key = None
    if key is None or key not in _verified:
        problem = file_problem(path)
        if problem:
            raise AuditError(f"{path} {problem}; {remedy(path)}")
        if key is not None:
            _verified[key] = True
    return path


def verify_dir(folder) -> Path:
    """`folder`, after checking every file against its manifest; a one-line AuditError if not."""
    folder = Path(folder)
    manifest = folder / MANIFEST
    key = _stamp(manifest) if manifest.is_file() else None
    if key is None or key not in _verified:
        problem = dir_problem(folder)
        if problem:
            raise AuditError(f"{folder} {problem}; {remedy(folder)}")
        _verified[key] = True
    return folder


# --------------------------------------------------------------------------- whole results


@dataclass(frozen=True)
class Damage:
    path: Path
    problem: str

    def line(self) -> str:
        return f"{self.path} {self.problem}; {remedy(self.path)}"


def sealed_outputs(results) -> tuple[list[Path], list[Path]]:
    """(files, folders) under `results` that carry a checksum."""
    files, folders = [], []
    for root, dirs, names in os.walk(results):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # unfinished temporary outputs
        if MANIFEST in names:
            folders.append(Path(root))
            dirs[:] = []
            continue
        for n in names:
            if n.startswith(".") and n.endswith(".sha256"):
                target = Path(root) / n[1 : -len(".sha256")]
                if target.exists():  # a sidecar whose output was removed is left over, not damage
                    files.append(target)
    return sorted(files), sorted(folders)


def scan(results, full: bool = True) -> list[Damage]:
    """Every output under `results` that fails its checksum."""
    files, folders = sealed_outputs(results)
    found = [Damage(p, why) for p in files if (why := file_problem(p, full))]
    found += [Damage(p, why) for p in folders if (why := dir_problem(p, full))]
    return sorted(found, key=lambda d: str(d.path))
