"""The 2 x 2 behind docs/findings.md's "why survival moves between corpora": the SAE trained on
the main corpus (A, the audit's own SAE) or on an even mix of A and a further corpus (B), each
audited on A and on B, from a finished audit's stored activations.

    .venv/bin/python docs/domain_sae_2x2.py [--config config.yaml] [--model smollm2]
        [--hook blocks.15.hook_resid_post] [--corpus packages] [--out docs/results/smollm2.domain_2x2.csv]

With --token-control, only the control for B's fewer audit tokens: survival on A's first
audit tokens, exactly as many as B's audit has (the audit's own codes, cut).

The mix SAE is trained with the audit's own recipe (the hook's `train:` settings) on as many
tokens as the audit's SAE: half of A's SAE-training sequences, and as many sequences of B drawn
disjoint from every token table of the run (A's splits, the calibration tokens, B's audit
tokens). Both SAEs then encode the same stored FP and variant activations of each corpus's audit
tokens (no forward but the mix SAE's training capture); per cell: the SAE's FVU on the FP
activations, the FP-active features, and each variant's survived and damaged fractions. Writes a
CSV (one row per SAE, corpus and variant) and a JSON of its provenance beside it.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def first_tokens(codes_path, n_tokens: int, out_path) -> None:
    """The codes of the first `n_tokens` audit tokens only (whole sequences when n_tokens is a
    multiple of the tokens a sequence has), as a codes file of their own."""
    import pyarrow as pa

    from featureaudit.io import write_table
    from featureaudit.sae.codes import SCHEMA, Codes

    codes = Codes(codes_path)
    table = codes.file.read()
    keep = table.filter(pa.compute.less(table.column("token"), n_tokens))
    meta = {"d_sae": str(codes.d_sae), "n_tokens": str(n_tokens), "group_tokens": json.dumps([n_tokens])}
    write_table(keep.cast(SCHEMA).replace_schema_metadata(meta), out_path)  # with its checksum


def token_control(cfg, results: Path, hook: str, a: str, b: str, variants: list, out: Path) -> None:
    """Survival on A's first audit sequences, as many tokens as B's audit has: is B's lower
    survival only its fewer tokens?"""
    import pandas as pd

    from featureaudit.measure.survival import fractions, survival_table
    from featureaudit.sae.codes import Codes, hook_codes

    n = Codes(hook_codes(results / "corpora" / b / "codes" / "fp", hook)).n_tokens
    work = Path(tempfile.mkdtemp(prefix="domain_tokens-"))
    first_tokens(hook_codes(results / "codes" / "fp", hook), n, work / "fp.parquet")
    rows = []
    for v in variants:
        first_tokens(hook_codes(results / "codes" / v, hook), n, work / f"{v}.parquet")
        f = fractions(survival_table(work / "fp.parquet", work / f"{v}.parquet", cfg.survival))
        rows.append({"corpus": a, "tokens": n, "variant": v, "n_active": f["n_active"],
                     "frac_survived": f["frac_survived"], "frac_damaged": f["frac_damaged"]})
    pd.DataFrame(rows).to_csv(out, index=False, float_format="%.6g")
    print(pd.DataFrame(rows).to_string())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="config.yaml")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--hook", default="blocks.15.hook_resid_post")
    ap.add_argument("--corpus", default="packages", help="the further corpus (B)")
    ap.add_argument("--out", default="docs/results/smollm2.domain_2x2.csv")
    ap.add_argument("--seed-control", action="store_true",
                    help="instead of the mix SAE, an SAE on A's own training tokens with the next seed: how much "
                         "a retrained SAE alone moves survival (written beside --out as .seed.csv)")
    ap.add_argument("--token-control", action="store_true",
                    help="only the control: survival on A's first audit tokens, as many as B's audit has "
                         "(written beside --out as .tokens.csv)")
    args = ap.parse_args()

    import pandas as pd
    import torch

    from featureaudit.config import as_params, load_config
    from featureaudit.inputs.tokens import (audit_corpus_budget, corpus_text, draw_disjoint, read_tokens, token_rows)
    from featureaudit.measure.domains import activation_fvu
    from featureaudit.measure.survival import fractions, survival_table
    from featureaudit.model.capture import capture_matrix
    from featureaudit.model.reference import load_reference
    from featureaudit.progress import log
    from featureaudit.sae.codes import encode_activations, hook_codes
    from featureaudit.sae.encoder import load_encoder
    from featureaudit.sae.source import train_sae

    cfg = load_config(yaml.safe_load(Path(args.config).read_text()))
    results = Path(cfg.results) / args.model
    a, b = cfg.corpus.label, args.corpus
    folders = {a: results, b: results / "corpora" / b}
    variants = [v for v in cfg.corpus_variants(args.model, b) if v != "fp"]
    sae_cfg = cfg.models[args.model].saes[args.hook]
    capture = cfg.capture_settings(args.model, args.hook)
    run = cfg.model_run(args.model)
    started = time.time()
    if args.token_control:
        token_control(cfg, results, args.hook, a, b, variants, (ROOT / args.out).with_suffix(".tokens.csv"))
        return

    # the mix SAE's training tokens: half of A's SAE-training split, as many of B, disjoint
    train_a = read_tokens(results / "tokens.parquet", "sae_train")
    half = len(train_a) // 2
    taken = set().union(*(token_rows(p) for p in [results / "tokens.parquet", results / "calibration.parquet",
                                                   folders[b] / "tokens.parquet"] if p.exists()))
    extra = cfg.extra_corpus(b)
    budget = audit_corpus_budget(extra, cfg.corpus.context_length, cfg.corpus.prepend_bos)
    budget = type(budget)(budget.context_length, half * budget.context_length, 0, 0, budget.prepend_bos, extra.seed + 1)
    reference, tokenizer = load_reference(results / "reference", run)
    train_b = torch.from_numpy(draw_disjoint(corpus_text(extra, budget), tokenizer, budget, taken, b))
    mixed = torch.cat([train_a[:half], train_b])
    recipe = sae_cfg.train
    if args.seed_control:  # A's own training tokens, the next seed
        mixed, recipe = train_a, replace(recipe, seed=recipe.seed + 1)
        half, train_b = len(train_a), train_a[:0]
    name = f"{a} (seed {recipe.seed})" if args.seed_control else f"{a}+{b}"
    log(f"SAE {name}: {len(mixed) - len(train_b)} sequences of {a} and {len(train_b)} of {b}, at {args.hook}")
    acts = capture_matrix(reference, mixed, capture)
    del reference
    work = Path(tempfile.mkdtemp(prefix="domain_2x2-"))
    train_sae(acts, work / "sae_mix", args.hook, args.model, cfg.corpus.context_length, cfg.corpus.prepend_bos,
              recipe)
    saes = {a: results / args.hook / "sae", name: work / "sae_mix"}
    if args.seed_control:
        saes.pop(a)

    rows = []
    for trained_on, sae_dir in saes.items():
        sae = load_encoder(sae_dir)
        for corpus, folder in folders.items():
            fp_acts = folder / "activations" / "fp" / args.hook
            if trained_on == a:  # the audit's own codes
                fp_codes = hook_codes(folder / "codes" / "fp", args.hook)
            else:
                fp_codes = work / f"{corpus}-fp.parquet"
                encode_activations(sae, fp_acts, fp_codes, progress=False)
            fvu = activation_fvu(sae, fp_acts)
            for v in variants:
                if trained_on == a:
                    codes = hook_codes(folder / "codes" / v, args.hook)
                else:
                    codes = work / f"{corpus}-{v}.parquet"
                    encode_activations(sae, folder / "activations" / v / args.hook, codes, progress=False)
                f = fractions(survival_table(fp_codes, codes, cfg.survival))
                rows.append({"sae_trained_on": trained_on, "audited_on": corpus, "variant": v, "fvu": fvu,
                             "n_active": f["n_active"], "frac_survived": f["frac_survived"],
                             "frac_damaged": f["frac_damaged"]})
                log(f"SAE on {trained_on}, audited on {corpus}, {v}: FVU {fvu:.3f}, {f['n_active']} active, "
                    f"{100 * f['frac_survived']:.1f} % survived, {100 * f['frac_damaged']:.1f} % damaged")
    df = pd.DataFrame(rows)
    out = ROOT / args.out
    if args.seed_control:
        out = out.with_suffix(".seed.csv")
    df.to_csv(out, index=False, float_format="%.6g")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    provenance = {"commit": commit, "machine": cpu, "date": time.strftime("%Y-%m-%d"), "hook": args.hook,
                  "corpora": [a, b], "mix_sequences": {a: int(half), b: int(len(train_b))},
                  "sae_train": as_params(sae_cfg.train), "seconds": round(time.time() - started, 1),
                  "command": " ".join(["docs/domain_sae_2x2.py"] + sys.argv[1:])}
    out.with_suffix(".json").write_text(json.dumps(provenance, indent=1) + "\n")
    pivot = df.pivot_table(index="variant", columns=["sae_trained_on", "audited_on"], values="frac_survived")
    print(pivot.to_string(float_format=lambda x: f"{100 * x:.1f}"))


if __name__ == "__main__":
    main()
