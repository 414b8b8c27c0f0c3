"""Every input is checked before the first job, and no traceback reaches a user: one test per
class of mistake, each through a real start of the workflow (not a dry run), checking the one
line each mistake prints, that no traceback frame reaches the console, and that no job started.
The format libraries themselves (gguf-py, safetensors, compressed-tensors) confirm that each
damaged file is damaged; the hub classes use an empty cache and a closed port, not the network."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FRAME, REPO, TinyProject
from test_reliability import kill_project
from tiny_models import write_tiny_gguf


def project(tmp_path: Path, tiny_models, **model) -> TinyProject:
    """The reliability tests' smallest whole audit, with `model` keys added to its model."""
    p = kill_project(tmp_path / "work", tiny_models)
    p.config["models"]["tiny"].update(model)
    p.write()
    return p


def start(p: TinyProject, env: dict | None = None) -> subprocess.CompletedProcess:
    """The run command itself (jobs would run if the checks let them)."""
    p.write()
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(p.workdir),
           "--configfile", str(p.config_path), "--cores", "2"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


def assert_stopped_at_start(proc, p: TinyProject, wanted: list[str]) -> list[str]:
    """Exit non-zero; one featureaudit line per wanted piece, each in exactly one line; no
    traceback; no job started, nothing written."""
    console = proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("featureaudit:")]
    assert proc.returncode != 0, console[-3000:]
    for w in wanted:
        assert sum(w in line for line in lines) == 1, (w, lines)
    assert len(lines) == len(wanted), lines
    assert "Traceback" not in console and not FRAME.search(console), console[-3000:]
    assert not re.search(r"^(local)?rule \w+:", console, re.M), "a job started"
    assert not (p.workdir / "results").exists()
    return lines


def test_cross_key_constraints_stop_the_start(tmp_path, tiny_models):
    """Settings each valid alone that cannot work together: a producer's group size against the
    model's widths, a variant named that the sweep lacks (with the closest name), a split's
    budget the corpus cannot supply, a threshold no feature can meet with the audit's tokens."""
    p = project(tmp_path, tiny_models, checkpoints={"gptq": {"llm_compressor": "gptq-w4a16", "group_size": 48}})
    c = p.config
    c["causal"] = {"variants": ["rtn-w5"]}
    c["calibration"] = {"n_tokens": 4_000_000}
    c["survival"]["active_min_tokens"] = 5000
    lines = assert_stopped_at_start(start(p), p, [
        "models.tiny.checkpoints.gptq.group_size: 48 does not divide the model's 64-wide matrices",
        "causal.variants: rtn-w5 is not a variant of this sweep (did you mean rtn-w8",
        "+ calibration.n_tokens)",
        "survival.active_min_tokens (5000) is more than the 992 audit tokens",
    ])
    assert "use 32 or 64" in next(line for line in lines if "group_size" in line)


def test_files_the_config_names_are_read_at_start_up(tmp_path, tiny_models):
    """The watch-list's ids that do not parse or lie outside the SAE (they used to pass until the
    gate read them), and a corpus file that is not text (it would be tokenized as replacement
    characters)."""
    p = project(tmp_path, tiny_models)
    watch = tmp_path / "watch.txt"
    p.config["gate"] = {"watchlist": str(watch)}
    watch.write_text("3  # a feature\nfeature-7\n")
    archive = tmp_path / "corpus.txt"
    archive.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4096)
    p.config["corpus"] = {**p.config["corpus"], "source": "text_files", "paths": [str(archive)]}
    assert_stopped_at_start(start(p), p, [f"gate.watchlist: {watch}:2: 'feature-7' is not a feature id",
                                          f"corpus.paths[0]: {archive} is not UTF-8 text"])
    p.config["corpus"]["source"] = "pydoc"
    watch.write_text("3\n128\n")  # the SAE has 128 features: 0 to 127
    assert_stopped_at_start(start(p), p, [f"{watch}: feature 128 is out of range; the SAE has features 0 to 127"])


def _safetensors_of(folder: Path) -> Path:
    return next(folder.glob("*.safetensors"))


def test_damaged_or_mislabelled_files_are_named_at_start_up(tmp_path, tiny_models):
    """A truncated GGUF, a zip named .gguf, a transformers folder whose weights are cut short, and
    a compressed-tensors config that does not parse: one line each, naming the file. An intact
    GGUF beside them passes."""
    model = tiny_models["llama"]
    good = write_tiny_gguf(model, tmp_path / "good.gguf")
    cut = tmp_path / "cut.gguf"
    shutil.copy(good, cut)
    os.truncate(cut, cut.stat().st_size * 2 // 3)
    zipped = tmp_path / "zipped.gguf"
    zipped.write_bytes(b"PK\x03\x04" + b"\0" * 4096)
    short = shutil.copytree(model, tmp_path / "short")
    os.truncate(_safetensors_of(short), _safetensors_of(short).stat().st_size - 100)
    ct = shutil.copytree(model, tmp_path / "ct")
    config = json.loads((ct / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "compressed-tensors",
                                     "config_groups": {"group_0": {"targets": ["Linear"], "weights": {"num_bits": "four"}}}}
    (ct / "config.json").write_text(json.dumps(config))

    # the format libraries agree that each is broken (and that the intact file is not)
    import gguf
    from safetensors import safe_open

    gguf.GGUFReader(str(good))
    for broken in (cut, zipped):
        with pytest.raises(Exception):
            gguf.GGUFReader(str(broken))
    with pytest.raises(Exception):
        with safe_open(str(_safetensors_of(short)), "pt") as f:
            [f.get_tensor(k) for k in f.keys()]

    p = project(tmp_path, tiny_models, checkpoints={k: {"path": str(v)} for k, v in
                                                    {"good": good, "cut": cut, "zipped": zipped, "short": short,
                                                     "ct": ct}.items()})
    assert_stopped_at_start(start(p), p, [
        f"models.tiny.checkpoints.cut.path: {cut} is cut short: tensor",
        f"models.tiny.checkpoints.zipped.path: {zipped} is not a GGUF file (it starts with b'PK\\x03\\x04'",
        f"models.tiny.checkpoints.short.path: {_safetensors_of(short)} is cut short",
        f"models.tiny.checkpoints.ct.path: {ct / 'config.json'}: its compressed-tensors quantization_config does not parse",
    ])


def test_what_the_hub_would_have_to_supply_is_said_at_start_up(tmp_path, tiny_models):
    """A hub model id, a SAELens pretrained SAE and a streamed dataset, with nothing cached: one
    line each naming the key and the local alternative, whether the hub is switched off or just
    unreachable; a plan (-n) says the same as notes and still plans."""
    p = project(tmp_path, tiny_models)
    p.config["models"]["hub"] = {"source": "hf", "path": "EleutherAI/pythia-70m-deduped",
                                 "hook": "blocks.3.hook_resid_post",
                                 "sae": {"source": "saelens", "release": "pythia-70m-deduped-res-sm",
                                         "id": "blocks.3.hook_resid_post"}}
    p.config["corpus"] = {**p.config["corpus"], "source": "hf_dataset", "name": "monology/pile-uncopyrighted"}
    cache = tmp_path / "empty-cache"
    cache.mkdir()
    wanted = ["models.hub.path: EleutherAI/pythia-70m-deduped would be downloaded",
              "models.hub.sae: ctigges/pythia-70m-deduped__res-sm_processed would be downloaded",
              "corpus.name: monology/pile-uncopyrighted would be downloaded"]
    offline = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    lines = assert_stopped_at_start(start(p, offline), p, wanted)
    assert all("HF_HUB_OFFLINE is set" in line and "point " in line for line in lines)
    unreachable = {"HF_HUB_OFFLINE": "", "HF_HUB_CACHE": str(cache), "HF_ENDPOINT": "http://127.0.0.1:9"}
    lines = assert_stopped_at_start(start(p, unreachable), p, wanted)
    assert all("cannot be reached" in line for line in lines)
    # cached files are used as they are: that line goes
    (cache / "models--EleutherAI--pythia-70m-deduped" / "snapshots" / "abc").mkdir(parents=True)
    (cache / "models--EleutherAI--pythia-70m-deduped" / "snapshots" / "abc" / "config.json").write_text("{}")
    lines = assert_stopped_at_start(start(p, offline), p, wanted[1:])
    plan = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-s", str(REPO / "Snakefile"), "-d",
                           str(p.workdir), "--configfile", str(p.config_path)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **offline})
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert sum("featureaudit: note: " in line for line in plan.stderr.splitlines()) == 2


def test_an_unexpected_error_in_a_step_is_one_line_naming_rule_input_and_log(tmp_path, tiny_models):
    """An exception nobody anticipated, raised while a step reads its input: the console gets
    one line naming the rule, that input and the log; the traceback is in the log."""
    root = tmp_path / "workflow-copy"
    root.mkdir()
    for part in ("Snakefile", "workflow", "featureaudit", "envs", "profiles"):
        src = REPO / part
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, root / part, **(
            {"ignore": shutil.ignore_patterns("__pycache__")} if src.is_dir() else {}))
    (root / "workflow" / "scripts" / "sae.py").write_text(
        "# a step that fails while reading its input, as a bug would\n"
        "import pyarrow.parquet as pq\n"
        "from featureaudit.pipeline.run_step import run_step\n\n\n"
        "def read_splits(path):\n"
        "    return pq.read_table(path).column('no such column')\n\n\n"
        "run_step(snakemake, read_splits, snakemake.input.tokens)\n")
    p = project(tmp_path, tiny_models)
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(root / "Snakefile"), "-d", str(p.workdir),
                           "--configfile", str(p.config_path), "--cores", "2"], capture_output=True, text=True,
                          timeout=600)
    console = proc.stdout + proc.stderr
    assert proc.returncode != 0
    ours = [line for line in proc.stderr.splitlines() if line.startswith("featureaudit: rule sae failed")]
    assert len(ours) == 1, console[-3000:]
    hook = p.config["models"]["tiny"]["hook"]
    assert "while reading results/tiny/tokens.parquet: KeyError" in ours[0] and f"logs/tiny/{hook}/sae.log" in ours[0]
    assert "Traceback" not in console and not FRAME.search(console), console[-3000:]
    log = (p.workdir / "logs" / "tiny" / hook / "sae.log").read_text()
    assert "Traceback" in log and "read_splits" in log
    assert not (p.workdir / "results" / "tiny" / hook / "sae").exists()
