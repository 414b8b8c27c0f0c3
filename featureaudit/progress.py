"""What long work tells the user: progress of loops and one-line messages, readable on a
terminal and in a log file alike.

On a terminal, a live tqdm bar. In a log file (a rule's log, a SLURM job's output) a bar
redrawn with carriage returns becomes one unreadable line, so there updates are rarer and the
job runner (`pipeline/run_step.py`) turns each redraw into a line of its own.
"""

from __future__ import annotations

import sys

#: Seconds between updates written to a file: a few lines a minute, not thousands.
FILE_INTERVAL_S = 15.0


def progress_bar(iterable=None, *, total: int | None = None, desc: str = "", unit: str = "it", enabled: bool = True):
    """tqdm over `iterable` on stderr; `enabled=False` returns a silent bar."""
    from tqdm import tqdm

    interactive = sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, disable=not enabled,
                mininterval=0.5 if interactive else FILE_INTERVAL_S, ascii=not interactive,
                dynamic_ncols=interactive, ncols=None if interactive else 100)


def log(msg: str) -> None:
    """One line of a job's story (what it read, what it found) on stderr."""
    print(f"[featureaudit] {msg}", file=sys.stderr, flush=True)
