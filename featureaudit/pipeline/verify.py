"""Check every output of an audit against the checksum recorded when it was written.

    featureaudit-verify [results]            list what is damaged and how to recompute it
    featureaudit-verify [results] --remove   also remove the damaged outputs, so that the
                                             README's run command recomputes them

Exit 0 if everything checks, 1 if something is damaged, 2 on bad input. Hashes every file
(about 1 GB/s); the workflow's start-up check hashes only files modified after they were
written, which is what catches damage in practice.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from ..integrity import scan, sealed_outputs, sidecar


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="?", default="results", help="the config's results folder (default: results)")
    ap.add_argument("--remove", action="store_true", help="remove the damaged outputs (only those)")
    args = ap.parse_args(argv)
    root = Path(args.results)
    if not root.is_dir():
        print(f"featureaudit-verify: {root} is not a folder; pass the config's results folder", file=sys.stderr)
        return 2
    files, folders = sealed_outputs(root)
    damaged = scan(root, full=True)
    for d in damaged:
        print(d.line())
        if args.remove:
            shutil.rmtree(d.path) if d.path.is_dir() else d.path.unlink(missing_ok=True)
            sidecar(d.path).unlink(missing_ok=True)
    n = len(files) + len(folders)
    tail = ""
    if args.remove and damaged:
        tail = ("; removed the damaged ones (what was computed from them was checked when read, and stays). "
                f"To recompute them, rerun the audit with them as targets: snakemake <your options> "
                + " ".join(str(d.path) for d in damaged))
    print(f"{n - len(damaged)} of {n} outputs under {root} match their checksums{tail}", file=sys.stderr)
    return 1 if damaged else 0


if __name__ == "__main__":
    sys.exit(main())
