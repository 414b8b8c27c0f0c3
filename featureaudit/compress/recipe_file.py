"""llama-quantize's `--tensor-type-file` syntax: whitespace-separated `pattern=type` tokens, each
pattern a regular expression searched (unanchored, lowercased) in the tensor name, the first
matching line winning. The workflow's own files name every tensor by an anchored, escaped full
name (`^blk\\.3\\.attn_q\\.weight$=q8_0`): a bare `blk.1.` would also catch `blk.10.`.

  recipe_lines    tensor -> type, as lines
  parse_recipe    the (pattern, type) pairs of a file
  check_recipe    start-up: every type exists, every pattern matches a tensor of the model
  recipe_types    tensor -> type a file gives it, as llama-quantize reads it
"""

from __future__ import annotations

import re

from ..errors import AuditError


def anchored(tensor: str) -> str:
    return f"^{re.escape(tensor)}$"


def recipe_lines(types: dict) -> list[str]:
    """tensor name -> type name, as recipe lines in tensor order."""
    return [f"{anchored(name)}={t}" for name, t in types.items()]


def parse_recipe(text: str) -> list[tuple[str, str]]:
    """(pattern, type) pairs; llama-quantize's own syntax: whitespace-separated tokens."""
    pairs = []
    for token in text.split():
        pattern, eq, t = token.rpartition("=")
        if not eq or not pattern or not t:
            raise AuditError(f"recipe entry {token!r} is not pattern=type")
        pairs.append((pattern, t))
    return pairs


def ggml_type_names() -> set[str]:
    from gguf import GGMLQuantizationType

    return {t.name.lower() for t in GGMLQuantizationType}


def check_recipe(text: str, tensor_names: list[str], where: str) -> list[str]:
    """One line per problem of a recipe: a type that does not exist, a pattern that is not a
    regular expression or matches no tensor of the model."""
    try:
        pairs = parse_recipe(text)
    except AuditError as e:
        return [f"{where}: {e}; write one pattern=type per line"]
    known = ggml_type_names()
    out = []
    for pattern, t in pairs:
        if t.lower() not in known:
            out.append(f"{where}: type {t!r} (for {pattern}) is not a GGUF type; use e.g. q4_0, q5_0, q8_0, q6_k")
            continue
        try:
            rx = re.compile(pattern.lower())
        except re.error as e:
            out.append(f"{where}: pattern {pattern!r} is not a regular expression ({e})")
            continue
        if not any(rx.search(name) for name in tensor_names):
            out.append(f"{where}: pattern {pattern!r} matches no tensor of the model (e.g. {tensor_names[0]}); "
                       "fix the name or drop the line")
    return out


def recipe_types(recipe_text: str, tensor_names: list[str]) -> dict:
    """tensor -> type the recipe gives it (first matching line, unanchored search, as llama-quantize)."""
    pairs = [(re.compile(p.lower()), t.lower()) for p, t in parse_recipe(recipe_text)]
    out = {}
    for name in tensor_names:
        for rx, t in pairs:
            if rx.search(name):
                out[name] = t
                break
    return out
