"""Feature browser at the Gemma Scope SAE width: file size and load time in headless Chromium.

    .venv/bin/python benchmarks/browser_size.py [--features 16384] [--variants 21] [--top-k 8]

Builds the page from synthetic tables of that shape (every feature FP-active, k contexts of 15
tokens each, the default's 21 variants, activations as sparse as the default's: 15 % of a context's
tokens), then loads it in headless Chromium three times, table only and with a card open. The
page records when its script starts (the file read and parsed, since navigation), when the table
is on screen and when the card is. The headless wall time adds Chromium's start and the dump of
the whole DOM (the 24 MB data script included) to stdout, which a person opening the file does
not wait for. Prints one line per measurement; the output is committed beside it.
"""

from __future__ import annotations

import argparse
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from featureaudit.report.browser import build_payload, render  # noqa: E402
from headless import chromium  # noqa: E402


def sparse_codes(rng, shape, density=0.15):
    """Activations on context windows: the embedded default's features fire on 15 % of the
    tokens of their own top contexts (measured on results/smollm2/evidence)."""
    return np.where(rng.random(shape) < density, rng.gamma(1, 1, shape), 0).astype(np.float32)


def synthetic(n_features: int, n_variants: int, k: int, width: int = 15, seed: int = 0):
    rng = np.random.default_rng(seed)
    feats = np.arange(n_features)
    variants = ["fp"] + [f"rtn-w{8 - (i % 5)}" if i < 5 else f"v{i}" for i in range(n_variants - 1)]
    stats = pd.DataFrame({"feature": feats, "fp_active_tokens": rng.integers(10, 5000, n_features),
                          "peak_activation": rng.gamma(3, 3, n_features), "firing_frequency": rng.random(n_features) / 50,
                          "mean_active_activation": rng.gamma(2, 2, n_features)})
    survival, risk, evidence = {}, {}, {}
    n_ctx = n_features * k
    contexts = pd.DataFrame({"feature": np.repeat(feats, k), "rank": np.tile(np.arange(k), n_features),
                             "center": 10, "start": 0, "stop": width,
                             "token_ids": list(rng.zipf(1.3, (n_ctx, width)) % 49152),  # text: a few tokens are common
                             "fp": list(sparse_codes(rng, (n_ctx, width)))})
    for v in variants:
        r = np.clip(1 - rng.gamma(1, 0.05, n_features), -1, 1)
        status = np.where(r >= 0.9, "survived", np.where(r >= 0.5, "blurred", "damaged"))
        survival[v] = stats.assign(r=r, status=status)
        risk[v] = pd.DataFrame({"feature": feats, "risk": rng.random(n_features)})
        evidence[v] = pd.DataFrame({"values": list(sparse_codes(rng, (n_ctx, width)))})
    summary = pd.DataFrame({"variant": variants, "family": "rtn", "bits_per_weight": np.linspace(8, 4, len(variants)),
                            "verdict": "PASS", "frac_survived": 0.9})
    words = {i: f" w{i}" for i in range(49152)}
    return build_payload("synthetic", "blocks.12.hook_resid_post", ["blocks.12.hook_resid_post"], variants, survival, risk, contexts, evidence, summary, words,
                         {"survived_r": 0.9, "blurred_r": 0.5, "active_min_tokens": 10})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", type=int, default=16384)
    ap.add_argument("--variants", type=int, default=21)
    ap.add_argument("--top-k", type=int, default=8)
    args = ap.parse_args()
    t = time.perf_counter()
    html = render(synthetic(args.features, args.variants, args.top_k))
    build_s = time.perf_counter() - t
    out = Path(tempfile.mkdtemp()) / "browser.html"
    out.write_text(html, encoding="utf-8")
    print(f"# {platform.processor() or platform.machine()}, {platform.system()}; "
          f"{subprocess.run([chromium(), '--version'], capture_output=True, text=True).stdout.strip()}")
    print(f"features {args.features}, variants {args.variants}, contexts per feature {args.top_k}, 15 tokens each")
    print(f"file size {out.stat().st_size / 1e6:.1f} MB; payload built and rendered in {build_s:.1f} s")
    for label, frag in (("table", "#rows=50"), ("table + card", "#f=123")):
        for trial in range(3):
            t = time.perf_counter()
            proc = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                                   "--virtual-time-budget=10000",
                                   out.as_uri() + frag], capture_output=True, text=True, timeout=300)
            wall = time.perf_counter() - t
            ms = re.search(r'data-load-ms="([0-9.]+)"', proc.stdout)
            start = re.search(r'data-script-start-ms="([0-9.]+)"', proc.stdout)
            card = re.search(r'data-card-ms="([0-9.]+)"', proc.stdout)
            extra = f", card {float(card.group(1)) / 1000:.2f} s after the script started" if card else ""
            print(f"{label:13s} trial {trial}: page read and parsed {float(start.group(1)) / 1000:.2f} s after navigation; "
                  f"table shown {float(ms.group(1)) / 1000:.2f} s later{extra}; headless wall {wall:.2f} s (Chromium start included)")


if __name__ == "__main__":
    main()
