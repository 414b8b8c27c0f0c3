"""The additivity check of a finished run's Q4_0 scan, again with every recorded column (the
independent-loss prediction, the groups of each subset), for docs/findings.md's table:

    .venv/bin/python docs/repair_additivity.py results/smollm2 --commit abc1234 \
        --machine "AMD EPYC (AVX2), 2 cores" --date 2026-12-06

It loads what the scan rule loaded (the reference, each hook's SAE, the scan split), runs the
FP pass, and measures the same subsets (featureaudit.repair.scan.additivity_rows) against the
run's scan.csv; writes docs/results/smollm2.repair.additivity.csv and its provenance (.json).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch

from featureaudit.config import ModelRun, Thresholds
from featureaudit.inputs.tokens import read_tokens
from featureaudit.model.reference import load_reference
from featureaudit.repair.groups import model_groups
from featureaudit.repair.scan import Scanner, additivity_rows
from featureaudit.sae.encoder import load_encoder
from featureaudit.sae.frozen import saved_sae_metadata, wants_centering

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", help="results/<model> of a run with repair: targets [q4_0]")
    ap.add_argument("--target", default="q4_0")
    ap.add_argument("--commit", required=True)
    ap.add_argument("--machine", required=True)
    ap.add_argument("--date", required=True)
    a = ap.parse_args()
    torch.set_num_threads(2)
    res = Path(a.results)
    scan = pd.read_csv(res / "repair" / a.target / "scan.csv")
    hooks = list(dict.fromkeys(scan.sort_values("hook_layer").hook))
    model, _ = load_reference(res / "reference", ModelRun(res.name, "auto", "cpu"), tokenizer=False)
    saes = {h: load_encoder(res / h / "sae") for h in hooks}
    centers = {h: wants_centering(saved_sae_metadata(res / h / "sae")) for h in hooks}
    tokens = read_tokens(res / "repair" / "scan_tokens.parquet", "audit")
    start = time.time()
    scanner = Scanner(model, saes, centers, tokens, True, Thresholds(), 16)
    rows = additivity_rows(scanner, scan, model_groups(model), a.target)
    out = ROOT / "docs" / "results" / f"{res.name}.repair.additivity.csv"
    rows.to_csv(out, index=False, float_format="%.6g")
    meta = {"what": "docs/repair_additivity.py on the repair run's scan", "commit": a.commit, "machine": a.machine,
            "date": a.date, "scan_tokens": int(tokens.numel()), "seconds": round(time.time() - start, 1),
            "active": ", ".join(f"{n} at layer {h.split('.')[1]}" for h, n in scanner.fp_active.items())}
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {out.relative_to(ROOT)} ({meta['seconds']} s)")


if __name__ == "__main__":
    main()
