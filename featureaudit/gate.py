"""Deployment gate: exit 0 if a variant keeps enough SAE features, 1 if not, 2 on bad input.

    featureaudit-gate results/smollm2/summary.csv --variant rtn-w6 --min-survived 0.5 --max-damaged 0.2
"""

from __future__ import annotations

import argparse
import math
import sys

import pandas as pd

from .errors import AuditError
from .integrity import sidecar, verify_file


REQUIRED = ("variant", "n_active", "frac_survived", "frac_damaged", "perplexity")


def check(summary: pd.DataFrame, variant: str, min_survived: float, max_damaged: float) -> tuple[bool, str]:
    missing = [c for c in REQUIRED if c not in summary.columns]
    if missing:
        raise KeyError(f"the summary has no column {', '.join(missing)}; is it a featureaudit summary.csv?")
    rows = summary[summary.variant == variant]
    if rows.empty:
        raise KeyError(f"variant {variant!r} is not in the summary; it has {', '.join(summary.variant)}")
    row = rows.iloc[0]
    survived, damaged = float(row.frac_survived), float(row.frac_damaged)
    ok = not math.isnan(survived) and survived >= min_survived and damaged <= max_damaged
    verdict = "PASS" if ok else "FAIL"
    msg = (f"{verdict} {variant}: {survived:.1%} of {int(row.n_active)} FP-active features survived (need >= {min_survived:.0%}), "
           f"{damaged:.1%} damaged (allowed <= {max_damaged:.0%}); perplexity {row.perplexity:.3f}")
    return ok, msg


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("summary", help="results/<model>/summary.csv")
    ap.add_argument("--variant", required=True, help="e.g. rtn-w6")
    ap.add_argument("--min-survived", type=float, default=0.5)
    ap.add_argument("--max-damaged", type=float, default=0.2)
    args = ap.parse_args(argv)
    try:
        if sidecar(args.summary).exists():  # the workflow's own summary: check it was not damaged
            verify_file(args.summary)
        ok, msg = check(pd.read_csv(args.summary), args.variant, args.min_survived, args.max_damaged)
    except (AuditError, OSError, KeyError, ValueError) as e:  # ValueError: pandas' ParserError, EmptyDataError; non-numbers
        print(f"featureaudit-gate: {e}", file=sys.stderr)
        return 2
    print(msg)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
