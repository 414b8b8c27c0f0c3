"""The README is a manual a newcomer can follow: its own-model config runs (as a dry run, against
a model folder and a GGUF the test writes), and its quick-look table and the findings' tables are
the run they name (generated from the committed copy of that run's summary.csv)."""

from __future__ import annotations

import csv
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from test_workflow import job_counts
from tiny_models import build_tiny_model, write_tiny_gguf

sys.path.insert(0, str(REPO / "docs"))
import make_tables  # noqa: E402

README = (REPO / "README.md").read_text()


def own_model_block() -> str:
    """The yaml block right after the README's own-model marker."""
    after = README.split("<!-- own-model config", 1)[1]
    return re.search(r"```yaml\n(.*?)```", after, re.S)[1]


def own_model_dry_run_command() -> list[str]:
    """The README's `snakemake ... -n` line for that config, as a command list."""
    line = next(line for line in README.splitlines() if "--configfile my.yaml -n" in line)
    words = shlex.split(line.split("#")[0])
    assert words[0] == ".venv/bin/snakemake", line
    return [sys.executable, "-m", "snakemake", *words[1:]]


def dry_run(tmp_path: Path, block: str, files: dict[str, Path]) -> subprocess.CompletedProcess:
    """The block with its example paths replaced by the test's files, run as the README says."""
    for placeholder in sorted(files, key=len, reverse=True):  # longest first: they share prefixes
        assert placeholder in block, f"the README's config no longer names {placeholder}"
        block = block.replace(placeholder, str(files[placeholder]))
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    (work / "my.yaml").write_text(block)
    cmd = own_model_dry_run_command() + ["-s", str(REPO / "Snakefile"), "-d", str(work)]
    return subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def own_files(tmp_path_factory, tiny_models) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("own")
    model = tiny_models["llama"]
    gptq = shutil.copytree(model, root / "my-model-gptq")  # a plain safetensors folder: also a checkpoint
    text = root / "my-text.txt"
    text.write_text(("The quick brown fox jumps over the lazy dog, and the audit counts its features. " * 40 + "\n")
                    * 400)
    chats = root / "support-chats.txt"
    chats.write_text(("Hello, my order has not arrived yet. Could you check where it is, please? " * 30 + "\n") * 200)
    return {"/models/my-model.Q4_K_M.gguf": write_tiny_gguf(model, root / "my-model.gguf"),
            "/models/my-model-gptq-w4a16": gptq, "/models/my-model": model, "/data/my-text.txt": text,
            "/data/support-chats.txt": chats,
            # the tiny model has 4 layers: the example's layer 12 becomes its layer 2
            "blocks.12.": "blocks.2."}


@pytest.mark.slow
def test_own_model_config_runs_as_a_dry_run(tmp_path, own_files):
    proc = dry_run(tmp_path, own_model_block(), own_files)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    planned = job_counts(proc.stdout)
    # one variant job each: fp, three RTN widths, two formats, both checkpoints, and the pruning
    assert planned["variant"] >= 8, planned
    for variant in ("ckpt-q4_k_m", "ckpt-gptq", "rtn-w4", "gguf-q4_0"):
        assert f"variant={variant}" in proc.stdout, variant
    assert planned["summary"] == 1 and planned["browser"] == 1
    # the deployment's text: its own tokens, and every variant's job on it too
    assert planned["corpus_tokens"] == 1 and planned["domains"] == 1
    assert "corpora/support/activations/ckpt-q4_k_m" in proc.stdout


@pytest.mark.slow
def test_own_model_dry_run_reads_the_gguf_it_is_pointed_at(tmp_path, own_files):
    """The dry run is a real check: pointed at a GGUF of another width, it stops at start-up
    with one line naming the checkpoint."""
    other = build_tiny_model("llama", tmp_path / "narrow", hidden=32)
    files = dict(own_files, **{"/models/my-model.Q4_K_M.gguf": write_tiny_gguf(other, tmp_path / "narrow.gguf")})
    proc = dry_run(tmp_path, own_model_block(), files)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if "q4_k_m" in line]
    assert lines and "hidden_size 32 vs 64" in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_readme_is_a_manual():
    """At most 250 lines; no commit hash and no date but the quick-look table's provenance line."""
    assert len(README.splitlines()) <= 250
    summary, run = make_tables.snapshot()
    rest = README.replace(make_tables.provenance(run, make_tables.at_hook(summary, run)), "")
    assert not re.findall(r"\b20\d\d-\d\d-\d\d\b", rest)
    assert not re.findall(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b", rest)  # commit hashes


def test_quick_look_table_is_the_run_it_names():
    """Generated from the committed copy of the run's summary.csv, and read back against that
    file with the csv module (not with the script that wrote it)."""
    summary, run = make_tables.snapshot()
    table = make_tables.block(README, "quick-look")
    assert table == make_tables.quick_look(summary, run), "stale: python docs/make_tables.py"
    with open(REPO / "docs" / "results" / f"{make_tables.MODEL}.summary.csv", newline="") as f:
        # the rows of the hook the table shows (a summary of several hooks has a row per variant and hook)
        rows = {r["variant"]: r for r in csv.DictReader(f) if r.get("hook", run.get("hook")) == run.get("hook")}
    shown = {}
    for line in table.splitlines():
        m = re.match(r"\| `([^`]+)`[^|]*\| [^|]*\| ([\d.]+)[^|]*\| ([\d.]+)[^|]*\|", line)
        if m:
            shown[m[1]] = (float(m[2]), float(m[3]))
    assert set(shown) == set(rows)
    for variant, (survived, damaged) in shown.items():
        assert survived == round(100 * float(rows[variant]["frac_survived"]), 1), variant
        assert damaged == round(100 * float(rows[variant]["frac_damaged"]), 1), variant
    assert run["commit"] in table and run["date"] in table
    assert json.loads((REPO / "docs" / "results" / f"{make_tables.MODEL}.run.json").read_text()) == run


def test_findings_tables_are_generated_from_the_same_run():
    rendered = make_tables.render_all()
    for path, text in rendered.items():
        assert path.read_text() == text, f"{path.name} is stale: python docs/make_tables.py"
