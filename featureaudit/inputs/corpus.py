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
