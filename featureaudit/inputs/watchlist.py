"""The gate's watch-list: a text file of the SAE features a team relies on (safety monitors,
steering vectors), one per line, `#` starting a comment. A line is a feature id, or a hook and a
feature id (`blocks.15.hook_resid_post 1949`): where a model is audited at several hooks, each
hook has its own SAE, so an id means something only with its hook. Read at start-up (ids that do
not parse, name a hook that is not audited, or lie outside the SAE stop the run), by the causal
audit (always sampled) and by the gate (each must survive)."""

from __future__ import annotations

from pathlib import Path

from ..errors import AuditError
from ..hooks import parse_hook


def read_watchlist(path, key: str = "--watchlist") -> list[tuple[str | None, int]]:
    """(hook or None, feature id) per line, in file order; one AuditError line naming the file,
    the line and the fix."""
    if not Path(path).is_file():
        raise AuditError(f"{key} {path} does not exist; give a text file of feature ids, one per line")
    entries = []
    for n, line in enumerate(Path(path).read_text(errors="replace").splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        hook = None
        if len(words) == 2:
            hook, words = words[0], words[1:]
            try:
                parse_hook(hook)
            except AuditError:
                raise AuditError(f"{key}: {path}:{n}: {hook!r} is not a hook name (blocks.<layer>.hook_...); "
                                 "write '<hook> <feature id>' or '<feature id>'") from None
        try:
            if len(words) != 1:
                raise ValueError
            entries.append((hook, int(words[0])))
        except ValueError:
            raise AuditError(f"{key}: {path}:{n}: {line.split('#', 1)[0].strip()!r} is not a feature id; list one "
                             "integer per line, or a hook and an integer") from None
    if not entries:
        raise AuditError(f"{key}: {path} lists no feature ids; one integer per line")
    return entries


def check_hooks(entries: list[tuple[str | None, int]], hooks: list[str | None], path, key: str = "--watchlist") -> None:
    """Every entry names one of the audit's hooks, or is a bare id of an audit with one hook."""
    if len(hooks) > 1 and any(h is None for h, _ in entries):
        bare = next(i for h, i in entries if h is None)
        raise AuditError(f"{key}: {path}: feature {bare} names no hook, but the model is audited at {len(hooks)} "
                         f"hooks, each with its own SAE; write '<hook> {bare}'")
    unknown = sorted({h for h, _ in entries if h is not None and h not in hooks})
    if unknown:
        raise AuditError(f"{key}: {path}: {unknown[0]} is not a hook of this audit ({', '.join(map(str, hooks))})")


def ids_at(entries: list[tuple[str | None, int]], hook: str | None) -> list[int]:
    """The ids watched at `hook` (those naming it, and bare ids: check_hooks allows them only
    where the audit has one hook)."""
    return [i for h, i in entries if h in (None, hook)]


def check_ids(ids: list[int], d_sae: int, path, key: str = "--watchlist") -> None:
    """Every id names a feature of an SAE with `d_sae` features."""
    bad = [i for i in ids if not 0 <= i < d_sae]
    if bad:
        raise AuditError(f"{key}: {path}: feature {bad[0]} is out of range; the SAE has features 0 to {d_sae - 1}")
