"""A mix's recipe file: an allocation over the sensitivity scan (allocate.py) at a budget,
written in llama-quantize's `--tensor-type-file` syntax (compress/recipe_file.py), every block
tensor named, with what it was made of beside it. `write_recipe` is the body of the `recipe`
rule; the `llama_quantize` rule then makes the GGUF from it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from ..compress import llama_cpp
from ..compress.recipe_file import recipe_lines
from ..integrity import verify_file
from ..io import atomic_path, write_json
from ..model.storage import checkpoint_bits_per_weight
from ..progress import log
from .allocate import allocate, gains
from .groups import gguf_groups, type_bits

#: What the embedding is stored as in every mix: what Q4_K_M stores on the default model (its
#: rows are 576 wide, so llama.cpp's K-type falls back to Q8_0). Outside the block matrices the
#: budget counts.
EMBEDDING_TYPE = "q8_0"


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
    scan = pd.read_csv(verify_file(scan_path)) if scan_path else None
    bits = budget_bits(budget, reference_gguf, threads)
    a = allocate(groups, objective, bits, type_bits(low), type_bits(high), scan, seed)
    types = mix_types(groups, a.high, low, high)
    with atomic_path(out_path) as tmp:
        tmp.write_text("\n".join(recipe_lines(types)) + "\n")
    record = {"objective": objective, "budget": budget, "budget_bits": bits, "low": low, "high": high, "seed": seed,
              "high_groups": list(a.high), "bits_per_weight": a.bits_per_weight, "n_groups": len(groups)}
    if scan is not None:
        record["scan_target"] = str(scan.target.iloc[0])
        record["scan_kl_saved"] = float(gains(scan, "kl")[list(a.high)].sum())
        record["scan_survived_saved"] = float(gains(scan, "features")[list(a.high)].sum())
    write_json(record, json_path)
    log(f"{objective} mix at {bits:.3f} bits per weight: {len(a.high)} of {len(groups)} groups at {high} "
        f"({a.bits_per_weight:.4f} bits per weight): {', '.join(a.high[:8])}{' ...' if len(a.high) > 8 else ''}")
