"""Only changed nodes recompute: a module edit reruns exactly the rules that run it.

The reference is independent of featureaudit/pipeline/rerun_triggers.py: which package modules a rule's script
runs comes from the standard library's `modulefinder` (bytecode scan, imports in function
bodies included), which rules a Snakefile rule maps to which script from the .smk text, and
what "those rules and everything downstream" means from Snakemake itself
(`snakemake -n --forcerun <rules>`).
"""

from __future__ import annotations

import ast
import io
import modulefinder
import re
import shutil
import subprocess
import sys
import tokenize
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import pytest

from conftest import REPO
from featureaudit.pipeline.rerun_triggers import code_text, module_closure
from test_workflow import job_counts

SCRIPTS = REPO / "workflow" / "scripts"
PACKAGE = REPO / "featureaudit"


def modulefinder_closure(script: Path, root: Path = REPO) -> set[str]:
    """Package modules `script` imports, by the standard library's ModuleFinder; its search
    path is the repository alone, so torch & co are noted as missing, not scanned."""
    finder = modulefinder.ModuleFinder(path=[str(root)])
    finder.run_script(str(script))
    return {m for m in finder.modules if m.split(".")[0] == "featureaudit"}


def rule_scripts(root: Path = REPO) -> dict[str, Path]:
    """rule name -> the file it runs, from the `rule X:` / `script: "../scripts/Y.py"` text (or
    a shell rule's `python -m featureaudit.Y`, run in another environment)."""
    out = {}
    for smk in sorted((root / "workflow" / "rules").glob("*.smk")):
        for m in re.finditer(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", smk.read_text(), re.S | re.M):
            script = re.search(r'script:\s*\n\s*"\.\./scripts/(\w+)\.py"', m[2])
            module = re.search(r"-m (featureaudit(?:\.\w+)+)", m[2])
            if script:
                out[m[1]] = SCRIPTS / f"{script[1]}.py"
            elif module:
                out[m[1]] = module_path(module[1], root)
    return out


def package_files(root: Path = REPO) -> list[Path]:
    """Every module and package `__init__` of the package, at any depth."""
    return sorted(p for p in (root / "featureaudit").rglob("*.py") if "__pycache__" not in p.parts)


def module_name(path: Path, root: Path = REPO) -> str:
    """featureaudit/measure/survival.py -> featureaudit.measure.survival; an __init__ names its package."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_path(name: str, root: Path = REPO) -> Path:
    """The file a dotted module name runs: its `.py`, or its package's `__init__.py`."""
    base = root.joinpath(*name.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def package_modules(root: Path = REPO) -> list[str]:
    return sorted(module_name(p, root) for p in package_files(root))


@pytest.mark.parametrize("script", sorted(p.stem for p in SCRIPTS.glob("*.py")))
def test_closure_equals_modulefinder(script):
    assert set(module_closure(SCRIPTS / f"{script}.py", PACKAGE)) == modulefinder_closure(SCRIPTS / f"{script}.py")


def test_every_rule_hashes_its_own_script():
    """Each rule's `code` param is the closure of the script it runs (a copy-paste slip would
    make a rule rerun on another rule's code)."""
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for m in re.finditer(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", smk.read_text(), re.S | re.M):
            script = re.search(r'script:\s*\n\s*"\.\./scripts/(\w+)\.py"', m[2])
            module = re.search(r"-m featureaudit\.([\w.]+)", m[2])
            if script:
                assert f'code=script_code("{script[1]}")' in m[2], m[1]
            elif module:
                assert f'code=module_code("{module[1]}")' in m[2], m[1]


def test_closures_are_cut_small():
    closures = {rule: set(module_closure(s, PACKAGE)) for rule, s in rule_scripts().items()}
    for rule in ("variant", "fp_heldout", "pruning_curve", "match_pruning", "sae", "tokens", "reference_model"):
        assert not {"featureaudit.report.figures", "featureaudit.measure.survival", "featureaudit.report.summary"} & closures[rule], rule
    assert "featureaudit.device" in closures["variant"] and "featureaudit.device" in closures["fp_heldout"]
    assert closures["figures"] <= {"featureaudit", "featureaudit.report", "featureaudit.report.figures",
                                   "featureaudit.io", "featureaudit.errors", "featureaudit.figure_names",
                                   "featureaudit.pipeline", "featureaudit.pipeline.run_step", "featureaudit.integrity",
                                   "featureaudit.report.method_groups", "featureaudit.report.corpus_rows"}


def _bytecode(code) -> tuple:
    """What a code object runs, without its line numbers and file name."""
    return (code.co_code, code.co_names, code.co_varnames,
            tuple(_bytecode(c) if hasattr(c, "co_code") else c for c in code.co_consts))


@pytest.mark.parametrize("module", package_modules())
def test_code_text_counts_what_runs(module, tmp_path):
    """Against the compiler (docstrings stripped, as `python -OO` does): an edit of comments,
    docstrings and line breaks leaves the bytecode and the code hash as they were; a new
    statement changes both. A module that reads its `__doc__` counts its docstrings."""
    source = module_path(module).read_text()
    reads_doc = "__doc__" in {getattr(n, "id", getattr(n, "attr", None)) for n in ast.walk(ast.parse(source))}
    files = {}
    for name, text in {"as is": source, "edited": edit_without_behaviour(source),
                       "statement": EDITS["statement"](source)}.items():
        files[name] = tmp_path / f"{name.replace(' ', '_')}.py"
        files[name].write_text(text)
    runs = {name: _bytecode(compile(f.read_text(), module, "exec", optimize=2)) for name, f in files.items()}
    texts = {name: code_text(f) for name, f in files.items()}
    assert runs["edited"] == runs["as is"] != runs["statement"]
    assert texts["statement"] != texts["as is"]
    assert (texts["edited"] != texts["as is"]) == reads_doc


@pytest.mark.slow
def test_a_module_edit_plans_exactly_the_rules_that_run_it(arch_project, tmp_path):
    """For one package module of each distinct set of rules that import it (every module's set
    is the modulefinder closure, checked for all of them above): append a statement in a scratch
    copy of the workflow and dry-run the completed tiny audit with it. Planned = the rules whose
    script imports the module and their descendants (Snakemake's own --forcerun); an edit of a
    test or the README plans nothing, and neither do comments, docstrings and line breaks, except
    a docstring the module reads (`gate.py`'s is its command's help)."""
    scripts = rule_scripts()
    imports = {rule: modulefinder_closure(s) for rule, s in scripts.items()}

    def copy_of_workflow(name: str) -> Path:
        root = tmp_path / name
        root.mkdir()
        for part in ("Snakefile", "workflow", "featureaudit", "profiles", "tests", "README.md"):
            src = REPO / part
            (shutil.copytree if src.is_dir() else shutil.copy2)(
                src, root / part, **({"ignore": shutil.ignore_patterns("__pycache__")} if src.is_dir() else {}))
        return root

    def dry_run(root: Path, *args) -> dict[str, int]:
        cmd = [sys.executable, "-m", "snakemake", "-s", str(root / "Snakefile"), "-d", str(arch_project.workdir),
               "--configfile", str(arch_project.config_path), "--cores", "2", "-n", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return job_counts(proc.stdout)

    pristine = copy_of_workflow("pristine")
    assert dry_run(pristine) == {}, "the completed audit must be up to date before any edit"

    @lru_cache(maxsize=None)
    def expected(rules: frozenset) -> tuple:
        if not rules:
            return ()
        return tuple(sorted(dry_run(pristine, "--forcerun", *sorted(rules)).items()))

    def check(case: tuple[str, str]) -> tuple[str, dict, dict]:
        target, edit = case
        root = copy_of_workflow(f"{target}_{edit}".replace("/", "_"))
        path = root / target
        path.write_text(EDITS[edit](path.read_text()))
        got = dry_run(root)
        if target.startswith("featureaudit/") and edit in ("statement", "read docstring"):
            module = module_name(path, root)
            rules = frozenset(rule for rule, mods in imports.items() if module in mods)
        else:
            rules = frozenset()
        return f"{target} ({edit})", got, dict(expected(rules))

    by_rules: dict[frozenset, list[str]] = {}
    for m in package_modules():
        by_rules.setdefault(frozenset(r for r, mods in imports.items() if m in mods), []).append(m)
    named = {"featureaudit.report.figures", "featureaudit.measure.survival", "featureaudit.device"}  # checked by name below
    modules = sorted({ms[0] for ms in by_rules.values()} | named)
    cases = [(str(module_path(m).relative_to(REPO)), "statement") for m in modules]
    cases += [("tests/test_gate.py", "statement"), ("README.md", "statement"),
              ("featureaudit/variant/metrics.py", "comment, docstring, line break"), ("featureaudit/report/gate.py", "read docstring")]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(check, cases))
    wrong = {t: (got, want) for t, got, want in results if got != want}
    assert not wrong, "\n".join(f"{t}: planned {got}, expected {want}" for t, (got, want) in wrong.items())
    # the promise in words, on this DAG
    plans = {t: got for t, got, _ in results}
    assert set(plans["featureaudit/report/figures.py (statement)"]) == {"figures", "depth_figure", "all"}
    assert not {"variant", "fp_heldout", "pruning_curve", "match_pruning"} & set(
        plans["featureaudit/measure/survival.py (statement)"])
    assert plans["featureaudit/device.py (statement)"].get("variant")
    # gate.py's docstring is its command's help, so it counts in its hash; no rule runs the
    # gate's CLI (the watch-list reader is inputs/watchlist.py), so editing it plans nothing
    assert plans["featureaudit/report/gate.py (read docstring)"] == {}


def _docstrings(source: str) -> list[ast.Constant]:
    return [node.body[0].value for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and ast.get_docstring(node, clean=False) is not None]


def _replace(source: str, node: ast.AST, text: str) -> str:
    """`source` with `node`'s span replaced (ast's offsets are UTF-8 bytes)."""
    lines = source.encode().splitlines(keepends=True)
    start = sum(map(len, lines[: node.lineno - 1])) + node.col_offset
    end = sum(map(len, lines[: node.end_lineno - 1])) + node.end_col_offset
    raw = source.encode()
    return (raw[:start] + text.encode() + raw[end:]).decode()


def edit_without_behaviour(source: str) -> str:
    """Every docstring rewritten over two lines, a comment after every logical line that has
    none, a comment and blank lines on top (every line number moves): the module runs the same."""
    for doc in sorted(_docstrings(source), key=lambda d: (d.lineno, d.col_offset), reverse=True):
        source = _replace(source, doc, '"""An edited docstring,\n    over two lines."""')
    ends = {tok.start[0] for tok in tokenize.generate_tokens(io.StringIO(source).readline)
            if tok.type == tokenize.NEWLINE}
    lines = [line.rstrip("\n") + ("  # edited" if i in ends and "#" not in line else "") + "\n"
             for i, line in enumerate(source.splitlines(keepends=True), 1)]
    return "# an edited module\n\n\n" + "".join(lines)


def edit_module_docstring(source: str) -> str:
    return _replace(source, _docstrings(source)[0], '"""An edited first line.\n\nAnd more."""')


EDITS = {
    "statement": lambda source: source + "\n_RERUN_PROBE = 1  # an edit that changes behaviour\n",
    "comment, docstring, line break": edit_without_behaviour,
    "read docstring": edit_module_docstring,
}
