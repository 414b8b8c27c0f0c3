"""The gate's watch-list: a text file of SAE feature ids, one per line (`#` starts a comment),
the features a team relies on (safety monitors, steering vectors). Read at start-up (ids that
do not parse or lie outside the SAE stop the run), by the causal audit (always sampled) and by
the gate (each must survive)."""

from __future__ import annotations

from pathlib import Path

from ..errors import AuditError


def read_watchlist(path, key: str = "--watchlist") -> list[int]:
    """The ids, in file order; one AuditError line naming the file, the line and the fix."""
    if not Path(path).is_file():
        raise AuditError(f"{key} {path} does not exist; give a text file of feature ids, one per line")
    ids = []
    for n, line in enumerate(Path(path).read_text(errors="replace").splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            ids.append(int(text))
        except ValueError:
            raise AuditError(f"{key}: {path}:{n}: {text!r} is not a feature id; list one integer per line") from None
    if not ids:
        raise AuditError(f"{key}: {path} lists no feature ids; one integer per line")
    return ids


def check_ids(ids: list[int], d_sae: int, path, key: str = "--watchlist") -> None:
    """Every id names a feature of an SAE with `d_sae` features."""
    bad = [i for i in ids if not 0 <= i < d_sae]
    if bad:
        raise AuditError(f"{key}: {path}: feature {bad[0]} is out of range; the SAE has features 0 to {d_sae - 1}")
