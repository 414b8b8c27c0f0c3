"""Snakemake's lock after a hard kill. Snakemake locks its working directory while it runs and
unlocks on exit; `kill -9` (or a lost login node) skips the unlock, and the next run refuses to
start until someone finds `--unlock`. Clearing it is safe only when no Snakemake process, and
no job of one, is still at work in the directory: this module checks that and clears it.
Linux only (/proc); elsewhere the lock is left to Snakemake's own message."""

from __future__ import annotations

import os
from pathlib import Path

LOCKS = Path(".snakemake") / "locks"


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def busy_processes(workdir) -> list[tuple[int, str]]:
    """(pid, command line) of Snakemake processes, and jobs they started, working in
    `workdir`, other than this process and its parents."""
    here = os.path.realpath(workdir)
    mine = _ancestors()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            if os.path.realpath(entry / "cwd") != here:
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone, or another user's
            continue
        if "snakemake" in cmdline:  # snakemake itself, and job scripts under .snakemake/scripts
            found.append((int(entry.name), cmdline))
    return found


def held_locks(workdir=".") -> list[Path]:
    """Snakemake's lock files in `workdir` (none where there is no /proc to check them against)."""
    locks = Path(workdir) / LOCKS
    return sorted(locks.glob("*.lock")) if locks.is_dir() and Path("/proc/self").exists() else []


def run_in_progress(workdir=".") -> str | None:
    """One line saying which Snakemake process is at work in `workdir`, if one is: a run at
    work holds the lock, and a second run started beside it would race it for the same outputs."""
    busy = busy_processes(workdir) if held_locks(workdir) else []
    if not busy:
        return None
    pid, cmd = busy[0]
    return (f"another Snakemake run is at work in {os.path.realpath(workdir)} (pid {pid}: {cmd[:80]}); "
            "nothing was started or changed: wait for it to end, or stop it, then run this command again")


def clear_stale_lock(workdir=".") -> str | None:
    """Remove a lock no live process holds; returns a one-line note of what was done, or of
    why the lock stays (None when there is no lock)."""
    held = held_locks(workdir)
    if not held:
        return None
    busy = run_in_progress(workdir)
    if busy:
        return busy
    for f in held:
        f.unlink(missing_ok=True)
    return "cleared the lock a killed run left behind (no Snakemake process is at work here)"
