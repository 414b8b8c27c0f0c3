"""The reliability contract: everything knowable fails at start-up (all problems at once, one
line each, before any job); a hard kill at any point is recovered by running the same command
again, with results byte-identical to an uninterrupted run; damaged files are found, never
trusted; pickled weights are never unpickled."""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import FRAME, REPO, TinyProject, base_config
from test_workflow import job_counts
from featureaudit.config import load_config
from featureaudit.errors import AuditError
from featureaudit.integrity import MANIFEST, scan, sidecar
from featureaudit.io import atomic_dir, atomic_path, read_table, write_table
from featureaudit.pipeline.preflight import gpu_visible, preflight

SAE_TRAIN = {"d_sae": 128, "k": 8, "steps": 60, "batch_size": 256, "lr": 0.001}


def startup_lines(proc) -> list[str]:
    return [l for l in proc.stderr.splitlines() if l.startswith("featureaudit:")]


# --------------------------------------------------------------------------- start-up checks


def _text_file(tmp_path, text):
    p = tmp_path / "corpus.txt"
    p.write_text(text)
    return {"source": "text_files", "paths": [str(p)]}


def _pickled_model(tmp_path, tiny_models):
    """The tiny Llama with its weights as pytorch_model.bin (a pickle) instead of safetensors."""
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_models["llama"], folder)
    for f in folder.glob("*.safetensors"):
        f.unlink()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"not": "weights"}))
    return str(folder)


# (what is broken, how, a piece of the one line that must name it)
STARTUP_CASES = {
    "corpus file missing": (lambda c, t, m: c["corpus"].update(source="text_files", paths=[str(t / "nope.txt")]),
                            "corpus.paths[0]: "),
    "corpus file empty": (lambda c, t, m: c["corpus"].update(_text_file(t, "")), "is empty"),
    "corpus too short": (lambda c, t, m: c["corpus"].update(_text_file(t, "word " * 40)),
                         "corpus: the text has 200 bytes, fewer than the"),
    "sae k not below d_sae": (lambda c, t, m: c["models"]["tiny"]["sae"]["train"].update(k=128),
                              "k (128) must be below d_sae (128)"),
    "sae batch beyond its tokens": (lambda c, t, m: c["models"]["tiny"]["sae"]["train"].update(batch_size=4096),
                                    "sae.train.batch_size (4096) is more than"),
    "stride longer than window": (lambda c, t, m: c["evaluation"].update(window=16, stride=32),
                                  "evaluation.stride (32)"),
    "match budget beyond held-out": (lambda c, t, m: c["pruning"].update(match=True, match_tokens=512),
                                     "pruning.match_tokens (512)"),
    "context beyond the model": (lambda c, t, m: (c["corpus"].update(context_length=512),
                                                  c["evaluation"].update(n_tokens=512)),
                                 "corpus.context_length (512) is longer than models.tiny can attend to"),
    "results is a file": (lambda c, t, m: ((t / "afile").write_text("x"), c.update(results=str(t / "afile" / "r"))),
                          "results: "),
    "pickled weights": (lambda c, t, m: c["models"]["tiny"].update(path=_pickled_model(t, m)),
                        "no .safetensors weights"),
    "model folder missing": (lambda c, t, m: c["models"]["tiny"].update(path=str(t / "no_model")),
                             "models.tiny.path: "),
    "sae folder missing": (lambda c, t, m: c["models"]["tiny"].update(sae={"source": "disk", "path": str(t / "no_sae")}),
                           "models.tiny.sae.path: "),
}
if not gpu_visible():
    STARTUP_CASES["cuda without a GPU"] = (lambda c, t, m: c.update(device="cuda"), "device: cuda, but this machine")


@pytest.mark.parametrize("case", sorted(STARTUP_CASES))
def test_each_class_of_broken_input_fails_at_start_up_in_one_line(tiny_project, tiny_models, tmp_path, case):
    """What the Snakefile runs at start-up (load_config, then preflight), in this process: one
    Snakemake start per case would add minutes to the suite. The tests below and
    tests/test_workflow.py run the same checks through Snakemake itself."""
    mutate, expected = STARTUP_CASES[case]
    mutate(tiny_project.config, tmp_path, tiny_models)
    with pytest.raises(AuditError) as err:
        preflight(load_config(tiny_project.config), local=True)
    lines = str(err.value).splitlines()
    assert len(lines) == 1 and expected in lines[0], lines
    assert not (tiny_project.workdir / "results").exists()


def test_a_config_with_many_mistakes_reports_them_all_at_once(tiny_project, tmp_path):
    c = tiny_project.config
    c["corpus"].update(source="text_files", paths=[str(tmp_path / "nope.txt")])
    c["models"]["tiny"]["sae"]["train"].update(k=200)
    c["models"]["tiny"]["path"] = str(tmp_path / "no_model")
    c["evaluation"].update(window=16, stride=32)
    c["pruning"].update(match=True, match_tokens=512)
    tiny_project.write()
    proc = tiny_project.snakemake("-n", check=False, timeout=120)
    lines = startup_lines(proc)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    wanted = ["corpus.paths[0]", "k (200)", "models.tiny.path", "evaluation.stride", "pruning.match_tokens"]
    assert len(lines) == len(wanted), lines
    for w in wanted:
        assert sum(w in l for l in lines) == 1, (w, lines)


def test_schema_mistakes_are_reported_together(tiny_project):
    c = tiny_project.config
    c["bogus"] = 1
    c["quantization"]["bits"] = ["4"]
    c["survival"]["survived"] = 0.9
    tiny_project.write()
    proc = tiny_project.snakemake("-n", check=False, timeout=120)
    lines = startup_lines(proc)
    assert proc.returncode != 0 and len(lines) == 3, proc.stderr[-2000:]
    for w in ("bogus", "quantization.bits", "survival.survived"):
        assert sum(w in l for l in lines) == 1, (w, lines)


# --------------------------------------------------------------------------- untrusted files


def test_a_pickle_payload_is_never_unpickled(tmp_path, tiny_models):
    from featureaudit.model.reference import load_model

    marker = tmp_path / "payload_ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    folder = tmp_path / "evil"
    shutil.copytree(tiny_models["llama"], folder)
    for f in folder.glob("*.safetensors"):
        f.unlink()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"model.embed_tokens.weight": Payload()}))
    with pytest.raises(AuditError) as err:
        load_model("hf", str(folder))
    assert "\n" not in str(err.value) and str(folder) in str(err.value)
    assert not marker.exists()
    # The payload is live: plain unpickling runs it (so the assertion above can fail).
    subprocess.run([sys.executable, "-c", f"import pickle; pickle.load(open({str(folder / 'pytorch_model.bin')!r}, 'rb'))"],
                   check=True)
    assert marker.exists()


def test_no_module_reaches_pickle():
    """torch.load, pickle, joblib and numpy's pickled arrays appear nowhere in the package."""
    for path in (REPO / "featureaudit").rglob("*.py"):
        text = path.read_text()
        for banned in ("torch.load(", "import pickle", "joblib", "allow_pickle=True", "weights_only=False"):
            assert banned not in text, f"{path.name}: {banned}"


# --------------------------------------------------------------------------- checksums


def sha256sum_check(folder: Path, listing: str) -> subprocess.CompletedProcess:
    """coreutils' own check of a checksum file: the independent reference for its format."""
    return subprocess.run(["sha256sum", "--check", "--strict", listing], cwd=folder, capture_output=True, text=True)


def test_file_checksums_agree_with_sha256sum_and_catch_what_parquet_does_not(tmp_path):
    path = tmp_path / "survival" / "rtn-w4.parquet"
    table = pa.table({"feature": [1, 2, 3]}).replace_schema_metadata({"note": "aaaa"})
    write_table(table, path)
    assert sha256sum_check(path.parent, sidecar(path).name).returncode == 0
    assert read_table(path).equals(table)
    # A flipped byte in the footer's metadata: parquet's own page checksums do not cover it.
    data = path.read_bytes()
    path.write_bytes(data.replace(b"aaaa", b"aaab"))
    pq.read_table(path, page_checksum_verification=True)  # reads without complaint...
    assert pq.read_metadata(path).metadata[b"note"] == b"aaab"  # ...though the footer changed
    assert sha256sum_check(path.parent, sidecar(path).name).returncode != 0
    with pytest.raises(AuditError) as err:
        read_table(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "rule survival" in msg and f"rm -r {path}" in msg


def test_directory_manifest_agrees_with_sha256sum_and_marks_completion(tmp_path):
    out = tmp_path / "activations" / "fp"
    with atomic_dir(out) as tmp:
        (tmp / "shard-00000.parquet").write_bytes(b"x" * 100)
        (tmp / "shard-00001.parquet").write_bytes(b"y" * 100)
    assert sha256sum_check(out, MANIFEST).returncode == 0
    assert scan(tmp_path) == []
    # A job killed inside the block leaves no directory behind, and none is half there.
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(tmp_path / "activations" / "rtn-w4") as tmp:
            (tmp / "shard-00000.parquet").write_bytes(b"z")
            raise KeyboardInterrupt
    assert sorted(p.name for p in (tmp_path / "activations").iterdir()) == ["fp"]
    (out / "shard-00001.parquet").unlink()
    assert sha256sum_check(out, MANIFEST).returncode != 0
    [damage] = scan(tmp_path)
    assert damage.path == out and "shard-00001.parquet is missing" in damage.line() and "rule variant" in damage.line()


def test_start_up_scan_hashes_only_files_changed_since_written(tmp_path):
    path = tmp_path / "codes" / "fp.parquet"
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"0123456789")
    side = sidecar(path)
    os.utime(path, ns=(side.stat().st_mtime_ns - 10**9,) * 2)
    recorded = side.read_text()
    side.write_text("0" * 64 + recorded[64:])  # a wrong checksum the cheap scan does not look at...
    assert scan(tmp_path, full=False) == [] and len(scan(tmp_path, full=True)) == 1  # ...the full one does
    side.write_text(recorded)
    os.utime(side, ns=(path.stat().st_mtime_ns,) * 2)  # written back as it was, at its time
    with open(path, "r+b") as f:  # an edit in place moves the file's time past its checksum's
        f.write(b"X")
    assert [d.path for d in scan(tmp_path, full=False)] == [path]


# --------------------------------------------------------------------------- whole runs

KILL_CONFIG_BITS = [8]


def kill_project(workdir: Path, tiny_models) -> TinyProject:
    """The smallest whole audit (FP and one RTN variant), results at a path relative to the
    working directory so that two runs in two folders can be compared byte for byte."""
    cfg = base_config(Path("results"))
    cfg["results"] = "results"
    cfg["quantization"]["bits"] = KILL_CONFIG_BITS
    cfg["models"]["tiny"] = {"source": "hf", "path": str(tiny_models["llama"]), "hook": "blocks.2.hook_resid_post",
                             "sae": {"source": "train", "train": dict(SAE_TRAIN)}}
    workdir.mkdir(parents=True, exist_ok=True)
    project = TinyProject(workdir, cfg)
    project.write()
    return project


def tree(results: Path) -> dict[str, bytes]:
    """Every file under results (checksum sidecars included), by relative path."""
    return {str(p.relative_to(results)): p.read_bytes() for p in sorted(results.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_models) -> TinyProject:
    project = kill_project(tmp_path_factory.mktemp("uninterrupted"), tiny_models)
    project.snakemake()
    return project


def run_until(project: TinyProject, rule: str, writing: str | None, written: str | None, log: Path) -> str:
    """Start the README's run command in its own process group and SIGKILL the whole group (a
    lost node) once `rule` has started and, if given, a temporary file matching `writing`
    exists (the job is writing its output), or, should the write be too quick to see, once
    `written` exists (the output has just been renamed into place). Returns where it landed."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(project.workdir),
           "--configfile", str(project.config_path), "--cores", "2"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline, where = time.time() + 600, None
    try:
        while where is None and time.time() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"the run ended before the kill point {rule}:\n{log.read_text()[-3000:]}")
            if f"rule {rule}:" in log.read_text():
                if writing is None:
                    where = f"{rule} starting"
                elif list(project.workdir.glob(writing)):
                    where = f"{rule} writing {writing}"
                elif list(project.workdir.glob(written)):
                    where = f"{rule} just written ({written})"
            time.sleep(0.002)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert where, f"never reached {rule}"
    return where


def test_hard_kills_resume_to_byte_identical_results(uninterrupted, tiny_models, tmp_path):
    project = kill_project(tmp_path / "killed", tiny_models)
    results = project.workdir / "results"
    kills = [("variant", "results/tiny/activations/.*.tmp", "results/tiny/activations/*/MANIFEST.sha256"),
             ("variant", "results/tiny/codes/.*.tmp", "results/tiny/codes/*/MANIFEST.sha256"),
             ("summary", None, None)]
    landed = []
    for k, (rule, writing, written) in enumerate(kills):
        landed.append(run_until(project, rule, writing, written, tmp_path / f"{k}-{rule}.log"))
        assert list((project.workdir / ".snakemake" / "locks").glob("*.lock")), "the kill left no lock to clear"
        assert not (results / "tiny" / "summary.csv").exists()
    print("kill points:", "; ".join(landed))
    proc = project.snakemake()  # the same command, once more
    assert "cleared the lock a killed run left behind" in proc.stderr
    want, got = tree(uninterrupted.workdir / "results"), tree(results)
    assert sorted(got) == sorted(want)
    differ = [name for name in want if got[name] != want[name]]
    assert not differ, differ


def test_damaged_outputs_are_found_and_named_one_line_each(uninterrupted, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(uninterrupted.workdir, copy, symlinks=True)
    project = TinyProject(copy, yaml.safe_load((copy / "config.yaml").read_text()))
    results = copy / "results" / "tiny"
    hook = project.config["models"]["tiny"]["hook"]
    shard = results / "activations" / "fp" / hook / "shard-00000.parquet"
    codes = results / "codes" / "rtn-w8" / f"{hook}.parquet"
    sae_weights = next((results / hook / "sae").glob("*.safetensors"))
    with open(shard, "r+b") as f:
        f.truncate(shard.stat().st_size // 2)
    data = bytearray(codes.read_bytes())
    data[len(data) // 2] ^= 0xFF
    codes.write_bytes(bytes(data))
    sae_weights.unlink()
    damaged = {results / "activations" / "fp": "rule variant", codes.parent: "rule variant",
               results / hook / "sae": "rule sae"}
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file() and not str(p).startswith(str(copy / ".snakemake"))}

    proc = project.snakemake("-n", check=False, timeout=120)
    lines = startup_lines(proc)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert len(lines) == 3, lines
    for path, rule in damaged.items():
        named = path.relative_to(copy)  # as the config names it: results is relative
        [line] = [l for l in lines if l.startswith(f"featureaudit: {named} ")]
        assert rule in line and line.endswith(f"rm -r {named}"), line
    after = {p: p.read_bytes() for p in before if p.exists()}
    assert after == before  # the check itself changes nothing

    verify = [sys.executable, "-m", "featureaudit.pipeline.verify", str(copy / "results")]
    out = subprocess.run(verify, capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 1 and len(out.stdout.splitlines()) == 3, out.stdout + out.stderr
    out = subprocess.run(verify + ["--remove"], capture_output=True, text=True, cwd=REPO)
    gone = {p for p in before if not p.exists()}
    assert gone == {p for p in before if any(p in (d, sidecar(d)) or d in p.parents for d in damaged)}
    assert subprocess.run(verify, capture_output=True, cwd=REPO).returncode == 0
    # What was computed from them was checked when read, so the audit stays complete...
    assert "Nothing to be done" in project.snakemake("-n").stdout
    # ...and naming them as targets recomputes them: the SAE, and fp's and rtn-w8's variant jobs.
    proc = project.snakemake("-n", *(str(d.relative_to(copy)) for d in damaged))
    counts = job_counts(proc.stdout)
    assert counts == {"sae": 1, "variant": 2}, counts


# --------------------------------------------------------------------------- a full disk, a second run


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk_stops_in_one_line_and_the_same_command_finishes_after(uninterrupted, tiny_models, tmp_path):
    """Results on a tmpfs too small for them: one line naming the output and what it needed, no
    traceback, nothing half-written (every file left verifies, no temporaries); after the disk is
    enlarged the same command finishes, byte-identical to an uninterrupted run."""
    want = tree(uninterrupted.workdir / "results")
    project = kill_project(tmp_path / "full", tiny_models)
    results = project.workdir / "results"
    results.mkdir()
    size_kib = sum(len(b) for b in want.values()) // 2 // 1024  # half of what the audit writes
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(results)],
                           capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip()}")
    try:
        proc = project.snakemake(check=False)
        console = proc.stdout + proc.stderr
        full = [line for line in proc.stderr.splitlines() if "the disk is full" in line]
        assert proc.returncode != 0 and len(full) == 1, console[-3000:]
        print(full[0])
        assert full[0].startswith("featureaudit: results/tiny/") and "needs more than the" in full[0], full
        assert "Traceback" not in console and not FRAME.search(console), console[-3000:]
        assert not [p for p in results.rglob("*.tmp")], "a temporary was left behind"
        assert scan(str(results), full=True) == [], "a half-written output was left where a run would trust it"
        left = tree(results)
        assert all(want[name] == data for name, data in left.items()), "a kept output differs from a clean run's"
        subprocess.run(["mount", "-o", "remount,size=512m", str(results)], check=True)
        project.snakemake()  # the same command, once more
        got = tree(results)
        assert sorted(got) == sorted(want)
        assert not [name for name in want if got[name] != want[name]]
    finally:
        subprocess.run(["umount", "-l", str(results)], capture_output=True)


def test_a_second_run_beside_one_at_work_says_so_and_changes_nothing(uninterrupted, tiny_models, tmp_path):
    """The same command started while a run is at work in the folder: one line naming the
    process that holds it, nothing started or changed (the first run is paused meanwhile, so
    that any change would be the second run's); the first then finishes as if alone."""
    project = kill_project(tmp_path / "busy", tiny_models)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(project.workdir),
           "--configfile", str(project.config_path), "--cores", "2"]
    log = tmp_path / "first.log"
    with open(log, "w") as out:
        first = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 300
        while "rule variant:" not in log.read_text():
            assert first.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGSTOP)
        before = {p: (p.read_bytes() if p.is_file() else None) for p in project.workdir.rglob("*")
                  if ".snakemake" not in p.parts and "logs" not in p.parts}
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        after = {p: (p.read_bytes() if p.is_file() else None) for p in project.workdir.rglob("*")
                 if ".snakemake" not in p.parts and "logs" not in p.parts}
        os.killpg(first.pid, signal.SIGCONT)
        lines = [line for line in second.stderr.splitlines() if line.startswith("featureaudit:")]
        assert second.returncode != 0 and len(lines) == 1, second.stderr[-3000:]
        assert f"another Snakemake run is at work in {project.workdir.resolve()} (pid " in lines[0]
        assert "Traceback" not in second.stderr + second.stdout and not re.search(r"^(local)?rule \w+:", second.stdout, re.M)
        assert after == before, "the second run changed something"
        assert first.wait(timeout=900) == 0, log.read_text()[-3000:]
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    want, got = tree(uninterrupted.workdir / "results"), tree(project.workdir / "results")
    assert sorted(got) == sorted(want) and not [name for name in want if got[name] != want[name]]
