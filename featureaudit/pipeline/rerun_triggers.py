"""Rerun triggers from the real import graph: which package modules a workflow script runs.

Snakemake reruns a `script:` rule when its script changes, not when a module the script
imports changes. Each rule therefore carries a `code` param: a hash of the code of every
`featureaudit` module in its script's *import closure*, read from the source with `ast` (no
import, no torch). Editing a module reruns exactly the rules whose closure contains it, and
Snakemake reruns their descendants because their inputs change.

What counts as an edit: the module's syntax tree, not its bytes. Comments, blank lines, line
breaks and docstrings are not code, so editing them reruns nothing; a docstring the module
reads at run time (it names `__doc__`, e.g. as a command's help) does count. The tree is
written out field by field, leaving out empty fields, so the hash does not depend on the
Python version's `ast.dump` format; a new kind of syntax node would still rerun once.

What counts as an import: every `import` / `from ... import` statement anywhere in a module
(function bodies included: a lazy import is still code the rule runs), resolved relative to
the package; importing `featureaudit.a.b` also runs `featureaudit/__init__.py` and
`featureaudit/a/__init__.py`. Modules outside the package (torch, numpy) are left out: their
versions are the environment's business (Snakemake's software-env trigger). Not seen:
imports by string (`importlib.import_module(name)`); the package uses none.

Pure Python: the Snakefile computes every rule's hash on each start.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=None)
def _imports(path: Path, package: str, package_dir: Path) -> tuple[str, ...]:
    """Dotted names of the package modules and packages that `path` imports, directly."""
    tree = _parse(path)
    here = _module_name(path, package, package_dir)  # None for a file outside the package
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, here, path)
            if base is None:
                continue
            found.add(base)
            # `from pkg import name`: name may be a submodule (a file) or an attribute.
            found.update(f"{base}.{alias.name}" for alias in node.names)
    inside = set()
    for name in found:
        parts = name.split(".")
        if parts[0] != package:
            continue
        # every prefix runs on import: featureaudit.x.y runs featureaudit/__init__ and x/__init__
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if _module_file(prefix, package, package_dir) is not None:
                inside.add(prefix)
    return tuple(sorted(inside))


def _absolute(node: ast.ImportFrom, here: str | None, path: Path) -> str | None:
    if node.level == 0:
        return node.module
    if here is None:
        raise ValueError(f"{path}: relative import outside the package")
    # Within a package's __init__, level 1 is the package itself; in a module, its parent.
    parts = here.split(".") if path.name == "__init__.py" else here.split(".")[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def _module_name(path: Path, package: str, package_dir: Path) -> str | None:
    try:
        rel = path.resolve().relative_to(package_dir.resolve())
    except ValueError:
        return None
    parts = [package, *rel.with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_file(name: str, package: str, package_dir: Path) -> Path | None:
    """The file a dotted package name runs (`a/__init__.py` or `a.py`), None if it names none."""
    rel = Path(*name.split(".")[1:])
    if not rel.parts:
        return package_dir / "__init__.py"
    for candidate in (package_dir / rel / "__init__.py", package_dir / rel.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def module_closure(script: str | Path, package_dir: str | Path, package: str = "featureaudit") -> list[str]:
    """Sorted dotted names of every package module `script` runs, following imports."""
    package_dir = Path(package_dir)
    seen: set[str] = set()
    todo = list(_imports(Path(script), package, package_dir))
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(_imports(_module_file(name, package, package_dir), package, package_dir))
    return sorted(seen)


def closure_hash(script: str | Path, package_dir: str | Path, package: str = "featureaudit") -> str:
    """A short hash of the code (`code_text`) of every module in the script's closure."""
    package_dir = Path(package_dir)
    h = hashlib.sha256()
    for name in module_closure(script, package_dir, package):
        h.update(name.encode() + b"\0" + code_text(_module_file(name, package, package_dir)).encode() + b"\0")
    return h.hexdigest()[:16]


@lru_cache(maxsize=None)
def code_text(path: Path) -> str:
    """The module's syntax tree as text, without docstrings unless the module reads `__doc__`."""
    tree = _parse(path)
    reads_doc = b"__doc__" in _source(path) and any(  # the byte test spares most modules the walk
        isinstance(n, ast.Name) and n.id == "__doc__" or isinstance(n, ast.Attribute) and n.attr == "__doc__"
        for n in ast.walk(tree))
    return _text(tree, drop_docstrings=not reads_doc)


def _text(node, drop_docstrings: bool) -> str:
    if isinstance(node, list):
        return "[" + ", ".join(_text(n, drop_docstrings) for n in node) + "]"
    if not isinstance(node, ast.AST):
        return repr(node)
    fields = []
    for key, value in ast.iter_fields(node):
        if value is None or value == []:
            continue
        if key == "body" and drop_docstrings and isinstance(node, _HAS_DOCSTRING) and _is_docstring(value[0]):
            value = value[1:]
        fields.append(f"{key}={_text(value, drop_docstrings)}")
    return f"{type(node).__name__}({', '.join(fields)})"


_HAS_DOCSTRING = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


@lru_cache(maxsize=None)
def _source(path: Path) -> bytes:
    return path.read_bytes()


@lru_cache(maxsize=None)
def _parse(path: Path) -> ast.Module:
    return ast.parse(_source(path), filename=str(path))


def main(argv=None) -> None:
    """Print each workflow script's closure: `python -m featureaudit.pipeline.rerun_triggers [workflow/scripts]`."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    scripts = Path(args[0] if args else Path(__file__).resolve().parent.parent / "workflow" / "scripts")
    package_dir = Path(__file__).resolve().parent
    for script in sorted(scripts.glob("*.py")):
        names = [n.split(".", 1)[1] if "." in n else "__init__" for n in module_closure(script, package_dir)]
        print(f"{script.stem:16s} {closure_hash(script, package_dir)}  {' '.join(names)}")


if __name__ == "__main__":
    main()
