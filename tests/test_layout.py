"""The package's folders are the pipeline's stages, and imports run one way: a module imports only
from its own stage, an earlier one, or the shared modules at the top. Read from the real imports
(every `import` statement, function bodies included), resolved with the standard library's
`importlib.util.resolve_name`; circles found by `graphlib` (not by the package's own closure)."""

from __future__ import annotations

import ast
import graphlib
import importlib.util
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "featureaudit"
#: Stages in the order data flows through them; the shared vocabulary sits below all of them.
STAGES = ("model", "inputs", "sae", "compress", "variant", "measure", "repair", "report", "pipeline")
SHARED = {"config", "variants", "hooks", "paths", "io", "integrity", "errors", "progress", "device", "figure_names"}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "__pycache__" not in p.parts}


def imports_of(path: Path, known: set[str], name: str | None = None) -> set[str]:
    """Package modules `path` (the module `name`) imports: the most specific known name of each."""
    name = name or module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level \
                else node.module
            # `from pkg import name`: name is a submodule where one exists, else an attribute of base
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def stage(module: str) -> int:
    """0 for the shared modules and the package itself, 1.. for the stages in data-flow order."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in SHARED:
        return 0
    return 1 + STAGES.index(parts[1])


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports_of(p, set(mods)) for m, p in mods.items()}


def test_every_module_sits_in_a_stage_or_is_shared():
    """A new module goes into a stage folder, or is named shared here on purpose."""
    for m in modules():
        parts = m.split(".")
        assert len(parts) == 1 or parts[1] in SHARED or parts[1] in STAGES, f"{m}: not in a stage folder"
        if len(parts) == 2 and parts[1] in SHARED:
            assert (PACKAGE / f"{parts[1]}.py").is_file(), f"{m}: named shared but not a module"
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(STAGES)


def test_stage_packages_are_empty():
    """The rerun closure counts each package's __init__ as code every module under it runs: a
    re-exporting __init__ would rerun a whole stage on any edit of one module."""
    for s in STAGES:
        assert (PACKAGE / s / "__init__.py").read_text() == "", s


def test_no_module_imports_from_a_later_stage():
    upward = [f"{a} -> {b}" for a, deps in graph().items() for b in deps if stage(b) > stage(a)]
    assert not upward, "imports from a later stage:\n" + "\n".join(sorted(upward))


def test_the_package_has_no_import_circle():
    try:
        tuple(graphlib.TopologicalSorter(graph()).static_order())
    except graphlib.CycleError as e:
        pytest.fail(f"import circle: {' -> '.join(e.args[1])}")


def test_the_checks_can_fail(tmp_path):
    """The two checks above catch what they are for: an upward import and a circle, planted in a
    scratch copy of two real modules' import graph."""
    g = graph()
    g["featureaudit.model.reference"] = g["featureaudit.model.reference"] | {"featureaudit.report.summary"}
    assert any(stage(b) > stage("featureaudit.model.reference") for b in g["featureaudit.model.reference"])
    g["featureaudit.measure.survival"] = g["featureaudit.measure.survival"] | {"featureaudit.measure.predictability"}
    with pytest.raises(graphlib.CycleError):
        tuple(graphlib.TopologicalSorter(g).static_order())
    # and the reader sees a lazy import inside a function body, relative at any depth
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from ..report import summary\n    from .. import paths\n    from . import evidence\n")
    assert imports_of(probe, set(modules()), name="featureaudit.measure.probe") == {
        "featureaudit.report.summary", "featureaudit.paths", "featureaudit.measure.evidence"}
