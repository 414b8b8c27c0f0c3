"""Glue between a Snakemake `script:` and a stage: threads, the rule's log, one-line errors.

Each script in workflow/scripts reads its settings from `snakemake.params` (nothing from the
global config: a setting a rule uses is then always one of its rerun triggers) and calls

    run_step(snakemake, stage_function, arg, ...)
"""

from __future__ import annotations

import sys
import traceback


class _LogStream:
    """Writes to the console and the rule's log; progress redraws (carriage returns) become
    lines of their own, since neither a log file nor Snakemake's shared console is a terminal."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, s):
        s = s.replace("\r", "\n").replace("\n\n", "\n")
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
    import torch

    from .errors import AuditError

    torch.set_num_threads(max(1, int(snakemake.threads)))
    log = open(snakemake.log[0], "w") if snakemake.log else None
    if log:
        sys.stderr = _LogStream(sys.__stderr__, log)
    try:
        return step(*args, **kwargs)
    except AuditError as e:
        print(f"featureaudit: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception:
        traceback.print_exc(file=sys.stderr)
        raise
    finally:
        if log:
            sys.stderr = sys.__stderr__
            log.close()

