"""Glue between a Snakemake `script:` and a stage: threads, the rule's log, one-line errors.

Each script in workflow/scripts reads its settings from `snakemake.params` (nothing from the
global config: a setting a rule uses is then always one of its rerun triggers) and calls

    run_step(snakemake, stage_function, arg, ...)
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import traceback

#: Seconds between two lines of the same progress bar in a log.
PROGRESS_INTERVAL_S = 15.0
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class _LogStream:
    """Writes to the console and the rule's log. Neither a log file nor Snakemake's shared
    console is a terminal, so a progress bar's redraws (carriage returns, cursor moves: ours
    and the libraries' tqdm bars alike) become one line per bar every PROGRESS_INTERVAL_S,
    plus its last."""

    def __init__(self, *streams):
        self.streams = streams
        self.last: dict[str, float] = {}

    def write(self, s):
        if "\r" in s or "\x1b" in s:
            line = _ANSI.sub("", s).replace("\r", "").strip()
            if not line:
                return
            bar = line.split(":")[0][:60]
            now = time.monotonic()
            if "100%" not in line and now - self.last.get(bar, -PROGRESS_INTERVAL_S) < PROGRESS_INTERVAL_S:
                return
            self.last[bar] = now
            s = line + "\n"
        for st in self.streams:
            st.write(s)
            st.flush()

    def flush(self):
        for st in self.streams:
            st.flush()

    def isatty(self):
        return False


def run_step(snakemake, step, *args, **kwargs):
    """Run `step(*args, **kwargs)` with the rule's threads, its output going to the rule's log
    and the console; an AuditError ends the job with its one line, no traceback."""
    from ..errors import AuditError

    threads = max(1, int(snakemake.threads))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    else:  # not imported yet (table stages may never need it): it reads this when it is
        os.environ["OMP_NUM_THREADS"] = str(threads)
    # torchao (imported by transformers when installed) warns on every start that its CUDA
    # kernels do not load on a CPU build: harmless, and noise in every log.
    logging.getLogger("torchao").setLevel(logging.ERROR)
    log = open(snakemake.log[0], "w") if snakemake.log else None
    if log:
        sys.stderr = _LogStream(sys.__stderr__, log)
    try:
        return step(*args, **kwargs)
    except AuditError as e:
        print(f"featureaudit: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:
        # Not anticipated (a bug, or the environment): the traceback is for whoever debugs it,
        # in the log; the console gets one line saying which rule, reading what, and where to look.
        if log:
            traceback.print_exc(file=log)
        else:
            traceback.print_exc(file=sys.__stderr__)
        print(failure_line(snakemake, e), file=sys.stderr)
        sys.exit(1)
    finally:
        if log:
            sys.stderr = sys.__stderr__
            log.close()


def failure_line(snakemake, e: BaseException) -> str:
    reading = input_being_read(e, [str(v) for v in snakemake.input])
    first = (str(e).strip().splitlines() or [""])[0][:200]
    where = f" while reading {reading}" if reading else ""
    log = f"; the traceback is in {snakemake.log[0]}" if snakemake.log else ""
    return f"featureaudit: rule {snakemake.rule} failed{where}: {type(e).__name__}: {first}{log}"


def input_being_read(e: BaseException, inputs: list[str]) -> str | None:
    """The rule's input (or a file inside an input folder) that the innermost frame of the
    traceback holding one was working on: the file the step was reading when it failed."""
    roots = {os.path.abspath(p) for p in inputs}
    frames = []
    tb = e.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for value in frame.f_locals.values():
            if isinstance(value, (str, os.PathLike)) and not isinstance(value, bytes):
                try:
                    p = os.path.abspath(os.fspath(value))
                except (TypeError, ValueError):
                    continue
                if p in roots or any(p.startswith(r + os.sep) for r in roots):
                    return os.fspath(value)
    return None
