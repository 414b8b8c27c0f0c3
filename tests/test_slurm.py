"""Cluster submission through the Snakemake profile, against a real (single-node) SLURM.

``test_workflow_through_slurm`` drives the real Snakefile on a tiny model (the
``tiny_project`` fixture of tests/conftest.py) through ``profiles/slurm``:

1. ``snakemake --profile profiles/slurm`` completes, and every job of the plan went through
   ``sbatch``: a wrapper ``sbatch`` first on PATH records each call; the jobs named in the
   calls (``--target-jobs``) equal, rule by rule, the jobs Snakemake planned ("Job stats"),
   and SLURM itself reports each of those SLURM jobs COMPLETED. Only rules without an
   action (``all``) may run on the submit host.
2. The profile's groups batch jobs: the table rules, summary and figures of a model share one
   submission; a variant (one job) is one submission of its own.
3. Adding a bit-width and submitting again submits only the new variant's jobs and the
   aggregates (fewer sbatch calls than the first run).
4. A stand-in workflow (tests/slurm/demo) whose job fails on its first attempt: it is
   resubmitted with more memory (``retries`` and ``mem_mb`` growing with ``attempt``), and
   its 64 threads are capped to the node's CPUs.
5. The results, built in two submissions, equal a local run's from scratch
   (``--profile profiles/default``, in a copy of the project with its own results folder).

The stand-in and the local run go on beside the two real submissions: a SLURM run here
spends most of its time waiting for the next status check.

Needs root (it starts munged/slurmctld/slurmd, via tests/slurm/up.sh, and stops exactly
those PIDs afterwards) and either an installed SLURM or apt-get to install one; skipped
otherwise, or when FEATUREAUDIT_SKIP_SLURM=1. Each SLURM job costs a few seconds of
polling, so the status-check intervals are tuned down here.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SLURM_DIR = ROOT / "tests" / "slurm"
DEMO_DIR = SLURM_DIR / "demo"
SLURM_PROFILE = ROOT / "profiles" / "slurm"
LOCAL_PROFILE = ROOT / "profiles" / "default"
NCPUS = os.cpu_count() or 1
# The plugin checks job states this many seconds after a check that saw a job finish, and 10 s
# later each time one saw none finish. A job here takes 10-13 s from sbatch to end (two
# Snakemake starts and the script), so 5 s catches most at the second check (15 s).
STATUS_CHECK_S = 5
RUN_TIMEOUT_S = 1500


def _skip_reason() -> str | None:
    if os.environ.get("FEATUREAUDIT_SKIP_SLURM") == "1":
        return "FEATUREAUDIT_SKIP_SLURM=1"
    if not sys.platform.startswith("linux"):
        return "the SLURM test needs Linux"
    if os.geteuid() != 0:
        return "the SLURM test needs root to start munged/slurmctld/slurmd (CI runs as root)"
    if all(shutil.which(t) for t in ("slurmctld", "slurmd", "sbatch", "munged")):
        return None
    if shutil.which("apt-get"):
        return None
    return "SLURM is not installed and apt-get is not available to install it"


SKIP_REASON = _skip_reason()


# --------------------------------------------------------------------------- projects
@dataclass
class Project:
    """A workflow to submit: where it runs, how to grow its config, what to expect."""

    name: str
    workdir: Path
    snakefile: Path
    results: Path  # folder of outputs compared with the local run
    # the real workflow only: growing its config, and what a new variant may resubmit
    bits: list = field(default_factory=list)  # current bit-widths
    add_bits: object = None  # callable(int) -> None, rewrites the config in workdir
    aggregate_rules: set = field(default_factory=set)  # rules whose jobs rerun for a new variant
    new_variant_job: object = None  # callable(rule, wildcards: dict, bits) -> bool
    local_rules: set = field(default_factory=lambda: {"all"})
    expect_retry: dict = field(default_factory=dict)  # rule -> attempts (demo only)


def demo_project(tmp_path: Path) -> Project:
    """The stand-in workflow, set up so that ``fail_once`` fails unless it gets more memory
    than its first attempt asks for."""
    from featureaudit.pipeline.resources import estimate_resources

    workdir = tmp_path / "demo"
    workdir.mkdir()
    first = estimate_resources(70_000_000, 512, 4096, "variant", 1)["mem_mb"]
    (workdir / "config.yaml").write_text(yaml.safe_dump({"fail_below_mem_mb": first + 1}))
    return Project(
        name="demo workflow (tests/slurm/demo)",
        workdir=workdir,
        snakefile=DEMO_DIR / "Snakefile",
        results=workdir / "results",
        expect_retry={"fail_once": 2},
    )


def real_project(tiny) -> Project:
    workdir = Path(tiny.workdir)
    cfg = yaml.safe_load((workdir / "config.yaml").read_text())
    results = Path(cfg.get("results", "results"))
    return Project(
        name="real workflow (tiny_project)",
        workdir=workdir,
        snakefile=ROOT / "Snakefile",
        results=results if results.is_absolute() else workdir / results,
        bits=list(cfg.get("quantization", {}).get("bits", [])),
        add_bits=tiny.add_bits,
        aggregate_rules={"summary", "figures", "depth_figure", "browser", "method_overlap"},
        # variants rtn-w<b>, match-rtn-w<b> (wildcards variant / quantized)
        new_variant_job=lambda rule, wc, b: any(
            re.search(rf"(^|-)w{b}($|-)", str(v)) for v in wc.values()
        ),
    )


# --------------------------------------------------------------------------- SLURM
@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A single-node SLURM for this module; its daemons are stopped by PID afterwards."""
    state = tmp_path_factory.mktemp("slurm-state")
    env = {**os.environ, "SLURM_STATE_DIR": str(state)}
    t0 = time.monotonic()
    try:
        up = subprocess.run(
            ["bash", str(SLURM_DIR / "up.sh")], env=env, capture_output=True, text=True, timeout=900
        )
        if up.returncode != 0:
            pytest.fail(f"tests/slurm/up.sh failed ({up.returncode}):\n{up.stdout}\n{up.stderr}")
        print(f"\nSLURM up in {time.monotonic() - t0:.1f} s")
        yield state
    finally:
        subprocess.run(["bash", str(SLURM_DIR / "down.sh")], env=env, timeout=60)


def _sbatch_wrapper(bindir: Path, log: Path) -> Path:
    """An ``sbatch`` that appends its argv, exit code and output to ``log`` (JSON lines),
    then behaves exactly like the real one."""
    real = shutil.which("sbatch")
    assert real, "sbatch not found after up.sh"
    bindir.mkdir(parents=True, exist_ok=True)
    wrapper = bindir / "sbatch"
    wrapper.write_text(
        f"#!{sys.executable}\n"
        "import json, subprocess, sys\n"
        f"r = subprocess.run([{real!r}, *sys.argv[1:]], capture_output=True, text=True)\n"
        f"with open({str(log)!r}, 'a') as f:\n"
        "    f.write(json.dumps({'argv': sys.argv[1:], 'rc': r.returncode,\n"
        "                        'stdout': r.stdout, 'stderr': r.stderr}) + '\\n')\n"
        "sys.stdout.write(r.stdout); sys.stderr.write(r.stderr)\n"
        "sys.exit(r.returncode)\n"
    )
    wrapper.chmod(0o755)
    return wrapper


@dataclass
class Submission:
    slurm_id: str
    attempt: int
    mem: int | None
    jobs: list  # [(rule, frozenset(wildcards.items()))]
    group: bool
    cpus: int | None = None  # --cpus-per-task


@dataclass
class Run:
    log: str
    seconds: float
    submissions: list

    def jobs(self) -> set:
        return {j for s in self.submissions for j in s.jobs}


def _parse_call(call: dict) -> Submission:
    argv = call["argv"]
    assert call["rc"] == 0, f"sbatch failed: {call['stderr']}"
    wrap = next(a[len("--wrap="):] for a in argv if a.startswith("--wrap="))
    tokens = shlex.split(wrap)
    jobs, i = [], tokens.index("--target-jobs") + 1
    while i < len(tokens) and not tokens[i].startswith("--"):
        rule, _, wcs = tokens[i].partition(":")
        wc = dict(kv.split("=", 1) for kv in wcs.split(",") if kv)
        jobs.append((rule, frozenset(wc.items())))
        i += 1
    mem = argv[argv.index("--mem") + 1] if "--mem" in argv else None
    cpus = next((int(a.split("=", 1)[1]) for a in argv if a.startswith("--cpus-per-task=")), None)
    return Submission(
        slurm_id=call["stdout"].strip().split(";")[0],
        attempt=int(tokens[tokens.index("--attempt") + 1]),
        mem=int(mem) if mem else None,
        jobs=jobs,
        group="--local-groupid" in tokens,
        cpus=cpus,
    )


def _planned(log: str) -> Counter:
    """The first "Job stats" table of a Snakemake log: jobs per rule."""
    m = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\ntotal\s+\d+", log, re.S)
    assert m, "no Job stats table in the Snakemake log"
    return Counter({r: int(n) for r, n in re.findall(r"^(\S+)\s+(\d+)$", m.group(1), re.M)})


def _slurm_states() -> dict:
    out = subprocess.run(
        ["squeue", "--states=all", "--noheader", "--format=%i|%T"],
        capture_output=True, text=True, check=True,
    ).stdout
    return dict(line.split("|", 1) for line in out.split())


@dataclass
class Pending:
    """A Snakemake run started in the background; ``finish()`` waits and fails the test on
    a non-zero exit with the log tail and the SLURM queue."""

    proc: subprocess.Popen
    log_path: Path
    args: list
    t0: float
    calls: Path | None = None  # the sbatch wrapper's record, for SLURM runs
    tag: str = ""

    def finish(self) -> tuple[str, float]:
        try:
            rc = self.proc.wait(timeout=max(1.0, RUN_TIMEOUT_S - (time.monotonic() - self.t0)))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = "timeout"
        seconds = time.monotonic() - self.t0
        text = self.log_path.read_text()
        if rc != 0:
            squeue = subprocess.run(["squeue", "--states=all"], capture_output=True, text=True).stdout
            pytest.fail(f"snakemake {' '.join(self.args)} -> {rc} after {seconds:.0f} s\n"
                        f"--- log tail ---\n{text[-6000:]}\n--- squeue ---\n{squeue}")
        return text, seconds

    def run(self) -> Run:
        log, seconds = self.finish()
        subs = [_parse_call(json.loads(line)) for line in self.calls.read_text().splitlines()] \
            if self.calls.exists() else []
        print(f"{self.tag}: {len(subs)} sbatch calls, {sum(len(s.jobs) for s in subs)} jobs, "
              f"{seconds:.1f} s")
        return Run(log=log, seconds=seconds, submissions=subs)


def _start(project: Project, args: list, env: dict, log_path: Path) -> Pending:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(project.snakefile),
           "--configfile", "config.yaml", *args]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=project.workdir, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    return Pending(proc, log_path, args, time.monotonic())


def _start_submit(project: Project, tmp_path: Path, tag: str) -> Pending:
    """``snakemake --profile profiles/slurm`` in the background, with every sbatch call
    recorded (a wrapper per run, so that runs may overlap)."""
    calls = tmp_path / f"sbatch-{tag}.jsonl"
    bindir = tmp_path / f"bin-{tag}"
    _sbatch_wrapper(bindir, calls)
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    args = [
        "--profile", str(SLURM_PROFILE),
        "--workflow-profile", "none",
        # this node's CPUs; the shipped profile's values are for a real cluster
        "--cores", str(NCPUS), "--max-threads", str(NCPUS),
        "--slurm-init-seconds-before-status-checks", str(STATUS_CHECK_S),
        "--seconds-between-status-checks", str(STATUS_CHECK_S),
    ]
    pending = _start(project, args, env, tmp_path / f"snakemake-{tag}.log")
    pending.calls, pending.tag = calls, tag
    return pending


def _start_local_reference(project: Project, bits: list, tmp_path: Path) -> tuple[Pending, Path]:
    """The same audit with ``bits`` run from scratch on this machine, in a copy of the project
    (its own results folder), with the local profile. One core: it runs beside the SLURM jobs."""
    workdir = tmp_path / "local"
    workdir.mkdir()
    cfg = yaml.safe_load((project.workdir / "config.yaml").read_text())
    cfg["results"] = str(workdir / "results")
    cfg["quantization"]["bits"] = list(bits)
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))
    local = Project(name="local reference", workdir=workdir, snakefile=project.snakefile,
                    results=workdir / "results")
    args = ["--profile", str(LOCAL_PROFILE), "--cores", "1"]
    return _start(local, args, dict(os.environ), tmp_path / "snakemake-local.log"), local.results


def _check_all_through_sbatch(run: Run, project: Project):
    planned = _planned(run.log)
    local = set(re.findall(r"^localrule (\S+):", run.log, re.M))
    assert local <= project.local_rules, f"jobs ran on the submit host, not via sbatch: {local}"
    # every planned job of a rule with an action was submitted (retries: several times)
    submitted = Counter(rule for rule, _ in run.jobs())
    expected = Counter({r: n for r, n in planned.items() if r not in local})
    assert submitted == expected, f"submitted {dict(submitted)} != planned {dict(expected)}"
    # ... and SLURM ran it: the last attempt of each job COMPLETED
    states = _slurm_states()
    last = {}
    for s in run.submissions:
        for j in s.jobs:
            if j not in last or s.attempt > last[j].attempt:
                last[j] = s
    for j, s in last.items():
        assert states.get(s.slurm_id) == "COMPLETED", (j, s.slurm_id, states.get(s.slurm_id))
    # retries: resubmitted with more memory; otherwise each job is submitted once
    per_job = {}
    for s in run.submissions:
        for j in s.jobs:
            per_job.setdefault(j, []).append(s)
    for (rule, wc), subs in per_job.items():
        n = project.expect_retry.get(rule, 1)
        assert [s.attempt for s in subs] == list(range(1, n + 1)), (rule, dict(wc), subs)
        mems = [s.mem for s in subs]
        assert mems == sorted(set(mems)), f"memory must grow with attempt: {rule} {mems}"
        for s in subs[:-1]:
            assert states.get(s.slurm_id) == "FAILED", (rule, s.slurm_id, states.get(s.slurm_id))
    return planned


REPORT_RULES = {"fp_statistics", "survival", "predictability", "overlap", "method_overlap", "summary", "figures",
                "depth_figure", "browser"}


def _check_groups(run: Run):
    """The profile's groups: a variant's job alone in its submission; a model's table rules,
    summary and figures in one."""
    for s in run.submissions:
        rules = {r for r, _ in s.jobs}
        if "variant" in rules:
            assert len(s.jobs) == 1, s.jobs  # one variant, one job, one submission
        if rules & REPORT_RULES:
            assert s.group and rules <= REPORT_RULES, s.jobs
    reports = [s for s in run.submissions if {r for r, _ in s.jobs} & REPORT_RULES]
    assert len(reports) == 1 and {"summary", "figures"} <= {r for r, _ in reports[0].jobs}, reports


# --------------------------------------------------------------------------- comparison
_SKIP_CONTENT = {".png", ".svg", ".pdf", ".html", ".pt", ".pth", ".bin", ".log"}


def _close(a, b, path, rtol=1e-5, atol=1e-8):
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, (int, float)) or isinstance(b, float) and isinstance(a, int):
        assert (math.isnan(a) and math.isnan(b)) or math.isclose(
            a, b, rel_tol=rtol, abs_tol=atol), (path, a, b)
    else:
        assert a == b, (path, a, b)


def _frames_close(a, b, rel):
    """pandas frames equal up to float noise; list/array cells compared as arrays."""
    import numpy as np
    import pandas as pd

    assert list(a.columns) == list(b.columns) and len(a) == len(b), rel
    for col in a.columns:
        x, y = a[col], b[col]
        if x.dtype == object and len(x) and isinstance(x.iloc[0], (np.ndarray, list)):
            # cells may differ in length (context windows): same lengths, then same values
            assert [len(v) for v in x] == [len(v) for v in y], f"{rel}:{col}"
            np.testing.assert_allclose(np.concatenate([np.asarray(v, float) for v in x]),
                                       np.concatenate([np.asarray(v, float) for v in y]),
                                       rtol=1e-5, atol=1e-8, err_msg=f"{rel}:{col}")
        else:
            pd.testing.assert_series_equal(x, y, check_exact=False, rtol=1e-5, atol=1e-8,
                                           obj=f"{rel}:{col}")


def _compare_trees(expected: Path, actual: Path):
    """Same files; tables, JSON and arrays equal up to float noise; text byte-equal; other
    binaries (figures, pickles) only present."""
    import numpy as np
    import pandas as pd

    def files(d):
        return {p.relative_to(d) for p in d.rglob("*") if p.is_file()}

    fe, fa = files(expected), files(actual)
    assert fe == fa, f"only in SLURM run: {sorted(fe - fa)}; only in local run: {sorted(fa - fe)}"
    assert fe, "no results to compare"
    for rel in sorted(fe):
        a, b, suf = expected / rel, actual / rel, rel.suffix.lower()
        if suf in _SKIP_CONTENT:
            continue
        if suf in (".csv", ".tsv", ".parquet"):
            read = pd.read_parquet if suf == ".parquet" else (
                lambda p: pd.read_csv(p, sep="\t" if suf == ".tsv" else ","))
            _frames_close(read(a), read(b), str(rel))
        elif suf == ".json":
            _close(json.loads(a.read_text()), json.loads(b.read_text()), str(rel))
        elif suf == ".npy":
            np.testing.assert_allclose(np.load(a), np.load(b), rtol=1e-5, err_msg=str(rel))
        elif suf == ".npz":
            za, zb = np.load(a), np.load(b)
            assert set(za.files) == set(zb.files), rel
            for k in za.files:
                np.testing.assert_allclose(za[k], zb[k], rtol=1e-5, err_msg=f"{rel}:{k}")
        elif suf == ".safetensors":
            from safetensors.numpy import load_file

            ta, tb = load_file(a), load_file(b)
            assert ta.keys() == tb.keys(), rel
            for k in ta:
                np.testing.assert_allclose(ta[k], tb[k], rtol=1e-5, err_msg=f"{rel}:{k}")
        else:
            assert a.read_bytes() == b.read_bytes(), f"{rel} differs"


# --------------------------------------------------------------------------- tests
def test_profiles_parse(tiny_project):
    """Both profiles are valid for this Snakemake and the real Snakefile: a dry run with each
    (no SLURM needed) plans the whole workflow, the SLURM one with the profile's groups."""
    project = real_project(tiny_project)
    base = [sys.executable, "-m", "snakemake", "--snakefile", str(project.snakefile),
            "--configfile", "config.yaml", "--dry-run", "--workflow-profile", "none"]
    for extra in (["--profile", str(LOCAL_PROFILE)], ["--profile", str(SLURM_PROFILE)]):
        p = subprocess.run(base + extra, cwd=project.workdir, capture_output=True, text=True,
                           timeout=120)
        out = p.stdout + p.stderr
        assert p.returncode == 0, out
        assert _planned(out)["variant"] == 2, out
        slurm = extra[1] == str(SLURM_PROFILE)
        assert ("Group job report" in out) == slurm, out


@pytest.mark.slow
@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
def test_workflow_through_slurm(slurm, tiny_project, tmp_path):
    """The real workflow through SLURM (checks 1-5 of the module docstring), with the
    stand-in's retry check and the local reference run going on beside it: most of a SLURM
    run's time is spent waiting for the next status check, not computing."""
    t0 = time.monotonic()
    project = real_project(tiny_project)
    new = next(b for b in (3, 2, 5, 6, 7, 4, 8) if b not in project.bits)
    print(f"\nproject: {project.name} in {project.workdir}")
    local, local_results = _start_local_reference(project, project.bits + [new], tmp_path)
    demo = demo_project(tmp_path)
    retry = _start_submit(demo, tmp_path, "retry")

    # 1, 2. everything through sbatch, batched by the profile's groups
    run1 = _start_submit(project, tmp_path, "run1").run()
    _check_all_through_sbatch(run1, project)
    _check_groups(run1)

    # 3. one more bit-width: only the new variant's jobs and the aggregates are submitted
    project.add_bits(new)
    run2 = _start_submit(project, tmp_path, "run2").run()
    planned2 = _check_all_through_sbatch(run2, project)
    _check_groups(run2)
    jobs1, jobs2 = run1.jobs(), run2.jobs()
    for rule, wc in jobs2:
        assert rule in project.aggregate_rules or project.new_variant_job(rule, dict(wc), new), (
            f"run 2 resubmitted {rule} {dict(wc)}, which is not of the new bit-width {new}")
    assert {r for r, _ in jobs2} >= project.aggregate_rules & set(planned2), "aggregates missing"
    assert {j for j in jobs2 if j in jobs1} <= {j for j in jobs1 if j[0] in project.aggregate_rules}
    assert any(r not in project.aggregate_rules for r, _ in jobs2), "new variant not submitted"
    assert len(run2.submissions) < len(run1.submissions)

    # 4. a job that fails on its first attempt is resubmitted with more memory and succeeds;
    # its 64 threads are capped to the node's CPUs (else it would pend forever)
    rrun = retry.run()
    _check_all_through_sbatch(rrun, demo)
    subs = [s for s in rrun.submissions if s.jobs[0][0] == "fail_once"]
    assert [s.attempt for s in subs] == [1, 2], subs
    assert all(s.cpus is not None and s.cpus <= NCPUS for s in subs), subs  # not 64
    assert (demo.workdir / "results" / "fail_once.txt").read_text().split() == [
        str(2 * i) for i in range(1, 101)]

    # 5. the results (built in two submissions) equal a local run's from scratch
    _, local_s = local.finish()
    print(f"local run (alongside): {local_s:.1f} s")
    _compare_trees(project.results, local_results)
    print(f"total {time.monotonic() - t0:.1f} s")
