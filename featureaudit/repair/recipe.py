"""Recipe files: per-tensor types in llama-quantize's `--tensor-type-file` syntax, one
`pattern=type` per line. The workflow's own recipes name every tensor by an anchored, escaped
full name (`^blk\\.3\\.attn_q\\.weight$=q8_0`): llama-quantize searches each pattern unanchored
and takes the first line that matches, so a bare `blk.1.` would also catch `blk.10.`.

  write_recipe     the `recipe` rule: an allocation over the scan, written as a recipe file
  check_recipe     start-up: every type exists, every pattern matches a tensor of the model
  write_mix        the `llama_quantize` rule for a recipe: llama-quantize, then the file read
                   back with gguf-py and checked against the recipe
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pandas as pd

from ..compress import llama_cpp
from ..errors import AuditError
from ..io import atomic_path, write_json
from ..model.storage import checkpoint_bits_per_weight
from ..progress import log
from .allocate import allocate
from .groups import gguf_groups, type_bits

#: What the embedding is stored as in every mix: what Q4_K_M stores on the default model (its
#: rows are 576 wide, so llama.cpp's K-type falls back to Q8_0). Outside the block matrices the
#: budget counts.
EMBEDDING_TYPE = "q8_0"


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


def budget_bits(budget, reference_gguf, threads: int = 2) -> float:
    """A budget in bits per weight: a number as it is, a preset's name as what that preset
    stores on this model (llama-quantize run once, read back)."""
    if isinstance(budget, (int, float)):
        return float(budget)
    with tempfile.TemporaryDirectory() as tmp:
        made = Path(tmp) / "budget.gguf"
        llama_cpp.quantize(reference_gguf, made, str(budget).upper(), threads=threads)
        bits = checkpoint_bits_per_weight(made)
    log(f"budget {budget}: {bits:.4f} bits per weight over the block matrices, as llama-quantize stores it here")
    return bits


def mix_types(groups, high_groups, low: str, high: str) -> dict:
    """tensor -> type: every block matrix at low, the chosen groups' at high, the embedding fixed."""
    up = set(high_groups)
    types = {"token_embd.weight": EMBEDDING_TYPE}
    for g in groups:
        for name in g.tensors:
            types[name] = high if g.name in up else low
    return types


def write_recipe(objective: str, budget, low: str, high: str, seed: int, reference_gguf, scan_path,
                 out_path, json_path, threads: int = 2) -> None:
    """The `recipe` rule: allocate at the budget, write the recipe file and what it was made of."""
    groups = gguf_groups(reference_gguf)
    scan = pd.read_csv(scan_path) if scan_path else None
    bits = budget_bits(budget, reference_gguf, threads)
    a = allocate(groups, objective, bits, type_bits(low), type_bits(high), scan, seed)
    types = mix_types(groups, a.high, low, high)
    with atomic_path(out_path) as tmp:
        tmp.write_text("\n".join(recipe_lines(types)) + "\n")
    record = {"objective": objective, "budget": budget, "budget_bits": bits, "low": low, "high": high, "seed": seed,
              "high_groups": list(a.high), "bits_per_weight": a.bits_per_weight, "n_groups": len(groups)}
    if scan is not None:
        lost = scan[scan.group.isin(a.high)]
        record["scan_target"] = str(scan.target.iloc[0])
        record["scan_kl_saved"] = float(lost.drop_duplicates("group").kl.sum())
        record["scan_survived_saved"] = float(-lost.groupby("group").delta_survived.mean().sum())
    write_json(record, json_path)
    log(f"{objective} mix at {bits:.3f} bits per weight: {len(a.high)} of {len(groups)} groups at {high} "
        f"({a.bits_per_weight:.4f} bits per weight): {', '.join(a.high[:8])}{' ...' if len(a.high) > 8 else ''}")


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


def write_mix(reference_gguf, recipe, base: str, pure: bool, imatrix, out_path, threads: int = 2) -> None:
    """llama-quantize with the recipe; then every tensor the recipe names must be stored in that
    type (read back with gguf-py): a silent fallback (a K-type on a width it does not divide)
    would otherwise ship a different file than the recipe says."""
    with atomic_path(out_path) as out:
        llama_cpp.quantize(reference_gguf, out, base, imatrix=imatrix or None, threads=threads,
                           tensor_type_file=recipe, pure=pure)
        stored = {k: v.lower() for k, v in llama_cpp.tensor_types(out).items()}
        wanted = recipe_types(Path(recipe).read_text(), list(stored))
        differ = [f"{n} {stored[n]} (recipe {t})" for n, t in wanted.items() if stored[n] != t]
        if differ:
            raise AuditError(f"llama-quantize stored {len(differ)} tensors in other types than the recipe names, e.g. "
                             f"{differ[0]}; use 32-block types (q4_0, q5_0, q8_0, ...) on widths that 256 does not divide")
    bits = checkpoint_bits_per_weight(out_path)
    log(f"llama-quantize {base} with {Path(recipe).name}{' and the importance matrix' if imatrix else ''}: "
        f"{len(wanted)} tensors as the recipe names, {bits:.4f} bits per weight over the block matrices")
