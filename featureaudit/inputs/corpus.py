"""English text that ships with CPython, for the embedded default (no download): the pydoc
help topics, and the standard library's docstrings. Pure Python (no torch): start-up checks
count its bytes."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Iterator


def pydoc_text() -> str:
    """English prose shipped with CPython: the help topics of the `pydoc` module."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))


#: Standard-library folders left out of the docstring corpus: tests, demos, vendored code.
STDLIB_SKIP = frozenset({"test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages", "tkinter",
                         "turtledemo", "ensurepip", "venv", "__pycache__"})
#: Shorter docstrings are mostly signatures and one-liners, not prose.
MIN_DOCSTRING_CHARS = 200


def stdlib_files_unsorted() -> Iterator[Path]:
    """The standard library's source files that hold corpus text, in the file system's order."""
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    return (f for f in root.rglob("*.py") if not STDLIB_SKIP & set(f.relative_to(root).parts))


def stdlib_files() -> list[Path]:
    return sorted(stdlib_files_unsorted())


@lru_cache(maxsize=1)
def stdlib_docstrings() -> str:
    """English prose from the standard library's own source: module, class and function
    docstrings of at least MIN_DOCSTRING_CHARS characters, in file order (no module is imported)."""
    import ast

    parts = []
    for f in stdlib_files():
        try:
            tree = ast.parse(f.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        nodes = [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
        parts += [d for n in nodes if (d := ast.get_docstring(n)) and len(d) >= MIN_DOCSTRING_CHARS]
    return "\n\n".join(parts)


def cpython_text() -> str:
    """Everything English CPython ships: the pydoc help topics, then the standard library's
    docstrings (pydoc's ~113 K SmolLM2 tokens alone are fewer than the default budget needs)."""
    return pydoc_text() + "\n\n" + stdlib_docstrings()


def package_distributions() -> list:
    """The Python distributions installed in this environment's own site-packages (not the
    user's site or the system's), by name and version: the pinned environment makes them the
    same on every machine."""
    import importlib.metadata
    import sysconfig

    roots = sorted({sysconfig.get_paths()[k] for k in ("purelib", "platlib")})
    dists = importlib.metadata.distributions(path=roots)
    return sorted(dists, key=lambda d: ((d.metadata["Name"] or "").lower().replace("_", "-"), d.version or ""))


def _licence_file(path) -> bool:
    parts = [p.lower() for p in path.parts]
    return "licenses" in parts or path.name.upper().startswith(("LICENSE", "LICENCE", "COPYING", "NOTICE"))


def package_text_files() -> list[Path]:
    """Each distribution's METADATA and licence files: the bytes `packages_text` reads from
    (start-up checks bound its size by theirs)."""
    out = []
    for d in package_distributions():
        files = (Path(str(d.locate_file(f))) for f in (d.files or []) if f.name == "METADATA" or _licence_file(f))
        out += [f for f in files if f.is_file()]
    return out


def packages_text() -> str:
    """English prose every Python environment carries, and far from CPython's documentation:
    the long descriptions (README files: installation, usage, changelogs) and the licence texts
    of the installed packages, in name order."""
    parts = []
    for d in package_distributions():
        description = d.metadata.get_payload() or d.metadata.get("Description") or ""
        if description.strip():
            parts.append(description.strip())
        for f in sorted((f for f in (d.files or []) if _licence_file(f)), key=str):
            try:
                parts.append(Path(str(d.locate_file(f))).read_text(encoding="utf-8").strip())
            except (OSError, UnicodeDecodeError):
                continue
    return "\n\n".join(p for p in parts if p)
