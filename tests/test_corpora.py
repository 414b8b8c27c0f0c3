"""Several audit corpora in one run. A further corpus's tokens are disjoint from every other
token table (checked from the tables); adding corpora to a finished audit plans only their own
jobs and the aggregates, and leaves the main corpus's files as they were (so they are the
single-corpus audit's, byte for byte); a corpus's tables do not depend on which other corpora
run beside it; its codes are SAELens's encode of the hook's activations on its tokens; the
summary, the domains table (against SAELens's decode and the survival tables) and the gate read
every corpus; and each class of corpus mistake stops the start in one line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from conftest import REPO, TinyProject, base_config, save_saelens_sae
from test_startup import assert_stopped_at_start, start
from test_workflow import job_counts
from tiny_models import assert_codes_equal_saelens

HOOKS = ("blocks.0.hook_resid_post", "blocks.3.hook_resid_post")
HIDDEN = 64


# --------------------------------------------------------------------------- drawing tokens


class CharTokenizer:
    """One token per character (BOS 0): a text whose sequences are known in advance."""

    bos_token_id = 0

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}


def test_a_corpus_skips_every_sequence_another_table_holds():
    from featureaudit.config import TokenBudget
    from featureaudit.errors import AuditError
    from featureaudit.inputs.tokens import draw_disjoint

    text = "".join(chr(65 + i) * 7 for i in range(10))  # ten 7-token bodies: AAAAAAA, BBBBBBB, ...
    every = {(0,) + (65 + i,) * 7 for i in range(10)}
    taken = {(0,) + (65 + i,) * 7 for i in (1, 4, 5, 8)}
    budget = TokenBudget(context_length=8, audit_tokens=6 * 8, heldout_tokens=0, sae_train_tokens=0, seed=3)
    got = draw_disjoint(text, CharTokenizer(), budget, taken, "letters")
    rows = {tuple(r) for r in got.tolist()}
    assert len(got) == 6 and rows == every - taken  # all the free ones, none taken
    more = TokenBudget(context_length=8, audit_tokens=7 * 8, heldout_tokens=0, sae_train_tokens=0, seed=3)
    with pytest.raises(AuditError, match="letters gives 6 sequences .* fewer than the 7"):
        draw_disjoint(text, CharTokenizer(), more, taken, "letters")


def test_the_packages_text_is_every_installed_description_in_name_order():
    import importlib.metadata

    from featureaudit.inputs.corpus import package_distributions, packages_text

    dists = package_distributions()
    names = [(d.metadata["Name"] or "").lower().replace("_", "-") for d in dists]
    assert names == sorted(names) and "numpy" in names
    text = packages_text()
    numpy_description = importlib.metadata.metadata("numpy").get_payload().strip()
    assert numpy_description and numpy_description in text
    assert packages_text() == text  # read twice, the same text


# --------------------------------------------------------------------------- through the workflow


def corpora_project(root: Path, tiny_models, saes: dict, corpora: list | None = None) -> TinyProject:
    cfg = base_config(Path("results"))
    cfg["results"] = "results"
    cfg["quantization"]["bits"] = [4]
    cfg["corpus"]["label"] = "docs"
    cfg["models"]["tiny"] = {"source": "hf", "path": str(tiny_models["llama"]),
                             "hooks": {h: {"source": "disk", "path": str(saes[h])} for h in HOOKS}}
    if corpora:
        cfg["corpora"] = corpora
    root.mkdir(parents=True, exist_ok=True)
    p = TinyProject(root, cfg)
    p.write()
    return p


PACKAGES = {"label": "packages", "source": "packages", "n_tokens": 512}


@pytest.fixture(scope="module")
def corpora_runs(tmp_path_factory, tiny_models):
    """One single-corpus audit run whole; then, in copies of it, the packages corpus added alone,
    and the packages corpus with a text-file corpus after it (the dry runs' counts first)."""
    root = tmp_path_factory.mktemp("corpora")
    saes = {h: save_saelens_sae(root / "saes" / h, HIDDEN, h, d_sae=128, k=8, seed=i) for i, h in enumerate(HOOKS)}
    single = corpora_project(root / "single", tiny_models, saes)
    single.snakemake()
    notes = root / "notes.txt"
    notes.write_text((REPO / "README.md").read_text() * 2, encoding="utf-8")
    runs, plans = {"single": single}, {}
    for name, corpora in (("packages", [PACKAGES]),
                          ("both", [PACKAGES, {"label": "notes", "source": "text_files", "paths": [str(notes)],
                                               "n_tokens": 256, "variants": ["rtn-w4"]}])):
        shutil.copytree(single.workdir, root / name, symlinks=True)  # copy2: modification times kept
        p = corpora_project(root / name, tiny_models, saes, corpora)
        plans[name] = job_counts(p.snakemake("-n").stdout)
        p.snakemake()
        runs[name] = p
    return runs, plans, saes


def results_of(p: TinyProject) -> Path:
    return p.workdir / "results" / "tiny"


def token_rows(path: Path) -> set:
    return {tuple(r) for r in pq.read_table(path).column("input_ids").to_pylist()}


@pytest.mark.slow
def test_adding_corpora_plans_only_their_jobs_and_the_aggregates(corpora_runs):
    _, plans, _ = corpora_runs
    print("adding the packages corpus plans", plans["packages"])
    print("adding two corpora plans", plans["both"])
    p = plans["packages"]
    # its tokens, FP's metric states, fp's and rtn-w4's one forward, per hook FP statistics and
    # two variants' tables; then the aggregates. No SAE, no main-corpus capture or table.
    assert p["corpus_tokens"] == 1 and p["fp_heldout"] == 1 and p["variant"] == 2
    assert p["fp_statistics"] == 2 and p["survival"] == 4 and p["predictability"] == 4
    assert {"summary", "domains", "corpus_figure"} <= set(p)
    # the main corpus's figures and browser read the summary, which gains rows: drawn again
    assert not {"sae", "tokens", "reference_model", "method_overlap"} & set(p)
    b = plans["both"]  # the notes corpus audits fp and rtn-w4 too: twice the corpus work
    assert b["corpus_tokens"] == 2 and b["variant"] == 4 and b["survival"] == 8 and "sae" not in b


@pytest.mark.slow
def test_the_main_corpus_files_stay_those_of_the_single_corpus_audit(corpora_runs):
    runs, _, _ = corpora_runs
    single = results_of(runs["single"])
    for name in ("packages", "both"):
        here = results_of(runs[name])
        for part in ["tokens.parquet", "metrics/rtn-w4.json", "codes/rtn-w4/" + f"{HOOKS[1]}.parquet"] + [
                f"{h}/{t}/rtn-w4.{e}" for h in HOOKS for t, e in (("survival", "parquet"), ("bootstrap", "npz"))]:
            a, b = single / part, here / part
            assert a.read_bytes() == b.read_bytes(), (name, part)
            assert a.stat().st_mtime == b.stat().st_mtime, (name, part)  # not even rewritten


@pytest.mark.slow
def test_a_corpus_does_not_depend_on_the_corpora_beside_it(corpora_runs):
    runs, _, _ = corpora_runs
    alone, beside = results_of(runs["packages"]) / "corpora" / "packages", results_of(runs["both"]) / "corpora" / "packages"
    for part in ["tokens.parquet", "metrics/rtn-w4.json"] + [
            f"{h}/{t}/{v}.{e}" for h in HOOKS for v in ("fp", "rtn-w4")
            for t, e in (("survival", "parquet"), ("bootstrap", "npz"))] + [f"codes/rtn-w4/{h}.parquet" for h in HOOKS]:
        assert (alone / part).read_bytes() == (beside / part).read_bytes(), part


@pytest.mark.slow
def test_corpora_tokens_are_disjoint_from_each_other_and_every_split(corpora_runs):
    runs, _, _ = corpora_runs
    r = results_of(runs["both"])
    main = pq.read_table(r / "tokens.parquet").to_pandas()
    tables = {"main " + s: {tuple(x) for x in main[main.split == s].input_ids} for s in set(main.split)}
    tables |= {c: token_rows(r / "corpora" / c / "tokens.parquet") for c in ("packages", "notes")}
    assert len(tables["packages"]) == 512 // 32 and len(tables["notes"]) == 256 // 32
    names = list(tables)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not tables[a] & tables[b], (a, b)
    meta = pq.read_schema(r / "corpora" / "notes" / "tokens.parquet").metadata
    assert meta[b"corpus"] == b"notes" and len(meta[b"text_sha256"]) == 64


@pytest.mark.slow
def test_a_corpus_codes_equal_saelens_encode_on_its_tokens(corpora_runs, tiny_models):
    from transformers import AutoModelForCausalLM

    runs, _, saes = corpora_runs
    folder = results_of(runs["both"]) / "corpora" / "notes"
    ids = torch.tensor(pq.read_table(folder / "tokens.parquet").column("input_ids").to_pylist())
    llama = AutoModelForCausalLM.from_pretrained(tiny_models["llama"], dtype=torch.float32).eval()
    for h in HOOKS:
        assert_codes_equal_saelens(tiny_models["llama"], llama, ids, folder / "codes" / "fp" / f"{h}.parquet", saes[h], h)


@pytest.mark.slow
def test_summary_domains_and_gate_read_every_corpus(corpora_runs, capsys):
    from sae_lens import SAE

    from featureaudit.report.gate import main as gate

    runs, _, saes = corpora_runs
    r = results_of(runs["both"])
    summary = pd.read_csv(r / "summary.csv")
    assert list(summary.corpus) == ["docs"] * 4 + ["packages"] * 4 + ["notes"] * 4
    for corpus, folder in (("docs", r), ("packages", r / "corpora" / "packages"), ("notes", r / "corpora" / "notes")):
        metrics = json.loads((folder / "metrics" / "rtn-w4.json").read_text())
        for h in HOOKS:
            row = summary[(summary.corpus == corpus) & (summary.hook == h) & (summary.variant == "rtn-w4")].iloc[0]
            s = pd.read_parquet(folder / h / "survival" / "rtn-w4.parquet")
            active = s.status != "inactive"
            assert row.n_active == active.sum()
            assert row.frac_survived == pytest.approx((s.status == "survived").sum() / active.sum(), abs=1e-6)
            assert row.kl_to_fp == pytest.approx(metrics["kl_to_fp"], rel=1e-5)
    domains = pd.read_csv(r / "domains.csv")
    for h in HOOKS:
        fp = {c: pd.read_parquet(f / h / "survival" / "fp.parquet")
              for c, f in (("docs", r), ("notes", r / "corpora" / "notes"))}
        on = {c: set(t.feature[t.status != "inactive"]) for c, t in fp.items()}
        shared = sorted(on["docs"] & on["notes"])
        v = pd.read_parquet(r / "corpora" / "notes" / h / "survival" / "rtn-w4.parquet").set_index("feature")
        row = domains[(domains.hook == h) & (domains.corpus == "notes") & (domains.variant == "rtn-w4")].iloc[0]
        assert row.versus == "docs" and row.n_shared == len(shared)
        assert row.active_jaccard == pytest.approx(len(shared) / len(on["docs"] | on["notes"]), abs=1e-6)
        assert row.frac_survived_shared == pytest.approx((v.loc[shared, "status"] == "survived").mean(), abs=1e-6)
        # the SAE's FVU on the corpus's FP activations, from SAELens's own encode and decode
        acts = np.concatenate([pq.read_table(p).column("act").combine_chunks().values.to_numpy().reshape(-1, HIDDEN)
                               for p in sorted((r / "corpora" / "notes" / "activations" / "fp" / h).glob("shard-*"))])
        x = torch.from_numpy(acts).double()
        sae = SAE.load_from_disk(str(saes[h]))
        with torch.no_grad():
            rec = sae.decode(sae.encode(x.float())).double()
        expected = float(((rec - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())
        assert row.fvu == pytest.approx(expected, rel=1e-4)
    assert (r / "figures" / "survival_by_corpus.png").stat().st_size > 10_000
    # the gate: every corpus by default (the worst decides), or the one named
    args = [str(r / "summary.csv"), "--variant", "rtn-w4", "--min-survived", "0", "--max-damaged", "1"]
    assert gate(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out] == [f"PASS rtn-w4 at {h} on {c}" for c in ("docs", "packages", "notes")
                                                    for h in HOOKS]
    worst = summary[summary.variant == "rtn-w4"].sort_values("frac_survived").iloc[0]
    best_elsewhere = summary[(summary.variant == "rtn-w4") & (summary.corpus != worst.corpus)].frac_survived.min()
    between = (worst.frac_survived + best_elsewhere) / 2  # fails on the worst corpus only
    if worst.frac_survived < best_elsewhere:
        assert gate(args[:3] + ["--min-survived", str(between), "--max-damaged", "1"]) == 1
        others = [c for c in ("docs", "packages", "notes") if c != worst.corpus]
        names = [x for c in others for x in ("--corpus", c)]
        assert gate(args[:3] + ["--min-survived", str(between), "--max-damaged", "1", *names]) == 0
    capsys.readouterr()
    assert gate(args + ["--corpus", "legal"]) == 2
    assert "corpus 'legal' is not in the summary" in capsys.readouterr().err


def test_corpus_mistakes_stop_the_start_in_one_line_each(tmp_path, tiny_models):
    """A text_files corpus whose file does not exist, two corpora with one name, a corpus
    too small for its budget: each named in one line, before any job."""
    from test_startup import project

    p = project(tmp_path, tiny_models)
    small = tmp_path / "small.txt"
    small.write_text("A short text.\n")
    p.config["corpora"] = [
        {"label": "chat", "source": "text_files", "paths": [str(tmp_path / "missing.txt")]},
        {"label": "chat", "source": "packages", "n_tokens": 256},
        {"label": "legal", "source": "text_files", "paths": [str(small)], "n_tokens": 4096},
    ]
    lines = assert_stopped_at_start(start(p), p, [
        f"corpora[0].paths[0]: {tmp_path / 'missing.txt'} does not exist",
        "corpora[1].label: chat is already the name of corpora[0]",
        "corpora[2] (legal): the text has 14 bytes, fewer than the",
    ])
    print("\n".join(lines))
