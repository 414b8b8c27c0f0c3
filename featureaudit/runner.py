"""Glue between a Snakemake `script:` and a step: log file, threads, one-line errors."""

from __future__ import annotations

import sys
import traceback


class _Tee:
    def __init__(self, *streams):
        self.streams = streams

    def write(self, s):
        for st in self.streams:
            st.write(s)
            st.flush()

    def flush(self):
        for st in self.streams:
            st.flush()


def run_step(snakemake, step, *args, **kwargs):
    """Run `step(cfg, *args)` with progress going to the rule's log and the console."""
    import torch

    from .config import load_config
    from .errors import AuditError

    torch.set_num_threads(max(1, int(snakemake.threads)))
    log = open(snakemake.log[0], "w") if snakemake.log else None
    if log:
        sys.stderr = _Tee(sys.__stderr__, log)
    try:
        cfg = load_config(snakemake.config)
        return step(cfg, *args, **kwargs)
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
