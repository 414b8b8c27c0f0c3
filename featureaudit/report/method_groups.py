"""Which tool made a variant, as the method comparison groups it (pure pandas; the `methods`
figure in figures.py draws it):

  method_table   one row per variant and method from summary.csv, in two sections
                 (quantization by bits per weight, sparsity by the sparsity reached)
  method_group   the tool a method string belongs to, with its colour in GROUPS
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: method group -> colour; the groups a method string starts with, in matching order. No two
#: groups share a colour (12 groups: beyond matplotlib's 10-colour cycle, so chosen by hand).
GROUPS = {
    "RTN": "#264653", "gguf-py": "#d4a017", "llama.cpp": "#2a9d8f", "bitsandbytes": "#7b2cbf",
    "torchao": "#d6336c", "llm-compressor gptq": "#0077b6", "llm-compressor awq": "#f77f00",
    "llm-compressor smoothquant": "#6a994e", "llm-compressor fp8": "#9d0208", "llm-compressor sparsegpt": "#5e548e",
    "llm-compressor wanda": "#80ed99", "magnitude": "#e76f51",
}
GROUP_LABELS = {"llm-compressor gptq": "GPTQ", "llm-compressor awq": "AWQ",
                "llm-compressor smoothquant": "SmoothQuant+GPTQ W8A8", "llm-compressor fp8": "FP8 dynamic",
                "llm-compressor sparsegpt": "SparseGPT", "llm-compressor wanda": "Wanda"}
PRUNING = ("magnitude", "llm-compressor sparsegpt", "llm-compressor wanda")


SHORT = {"llm-compressor gptq-w4a16": "GPTQ W4A16", "llm-compressor awq-w4a16": "AWQ W4A16",
         "llm-compressor smoothquant-gptq-w8a8": "SQ+GPTQ W8A8", "llm-compressor fp8-dynamic": "FP8 dyn",
         "llm-compressor sparsegpt-50": "SparseGPT 50 %", "llm-compressor sparsegpt-2of4": "SparseGPT 2:4",
         "llm-compressor wanda-50": "Wanda 50 %", "bitsandbytes NF4": "NF4", "bitsandbytes FP4": "bnb FP4"}


def short_label(method: str) -> str:
    """A point's label in the figure (the colour already says the tool)."""
    if method in SHORT:
        return SHORT[method]
    for prefix, short in (("llama.cpp ", ""), ("gguf-py ", "gguf "), ("torchao ", "ao ")):
        if method.startswith(prefix):
            return short + method[len(prefix):]
    return method


def method_group(method: str) -> str:
    for g in GROUPS:
        if method.startswith(g):
            return g
    return "other"


def _sparsity(row) -> float | None:
    """The sparsity a pruning method reaches (magnitude's from the summary, the recipes' 50 %)."""
    g = method_group(row["method"])
    if g == "magnitude":
        return row["sparsity"]
    if g in ("llm-compressor sparsegpt", "llm-compressor wanda"):
        return 0.5
    return None


def method_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The comparison rows (no fp, no matched pruning): quantizers by bits per weight, then
    pruning methods by sparsity."""
    s = summary[(summary.variant != "fp") & ~summary.variant.str.startswith("match-")].copy()
    s["group"] = s.method.map(method_group)
    s["section"] = np.where(s.group.isin(PRUNING), "sparsity", "quantization")
    s["at_sparsity"] = [_sparsity(r) for r in s.to_dict("records")]
    s["not_survived"] = 1 - s.frac_survived
    s = s.sort_values(["section", "bits_per_weight", "at_sparsity", "method"], ascending=[True, False, True, True])
    return s
