"""llm-compressor's recipes on the reference: the checkpoints vLLM users ship.

Runs in llm-compressor's own environment (envs/llm-compressor.txt / .yaml: it pins
transformers and compressed-tensors to versions the audit's environment does not have), as

    python -m featureaudit.compress.llm_compress REFERENCE CALIBRATION RECIPE GROUP_SIZE OUT

so it imports nothing of the package beyond small pure-Python modules. It loads the reference
the workflow recorded, applies the recipe with `oneshot` on the calibration tokens (the same
set for every calibrated method) and saves compressed-tensors (`save_compressed=True`): the
checkpoint path of the audit then reads it back like any user's GPTQ / AWQ / W8A8 folder.

Recipes (groups of `group_size` input columns for 4-bit weights: 576 is no multiple of 128):
  gptq-w4a16              GPTQ, int4 symmetric weights per group
  awq-w4a16               AWQ scaling then int4 asymmetric weights per group (AWQ's default)
  smoothquant-gptq-w8a8   SmoothQuant (0.8) then GPTQ int8 weights per channel, int8 dynamic
                          per-token activations
  fp8-dynamic             FP8 E4M3 weights per channel, dynamic per-token activations
  sparsegpt-50 / -2of4    SparseGPT to 50 % unstructured / 2:4 sparsity, weights kept in FP
  wanda-50                Wanda to 50 % unstructured sparsity
The output head and embeddings are left alone (`ignore: lm_head`), as the vLLM examples do.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

def environment_python() -> str | None:
    """llm-compressor's interpreter for the llm_compress rule, when not under --sdm conda:
    FEATUREAUDIT_LLM_COMPRESSOR_PYTHON, else what `make llm-compressor` recorded in the
    audit's venv (`<venv>/.llm-compressor`); None when neither exists."""
    import os

    if os.environ.get("FEATUREAUDIT_LLM_COMPRESSOR_PYTHON"):
        return os.environ["FEATUREAUDIT_LLM_COMPRESSOR_PYTHON"]
    marker = Path(sys.prefix) / ".llm-compressor"
    if marker.is_file() and Path(marker.read_text().strip()).exists():
        return marker.read_text().strip()
    return None


RECIPES = ("gptq-w4a16", "awq-w4a16", "smoothquant-gptq-w8a8", "fp8-dynamic", "sparsegpt-50",
           "sparsegpt-2of4", "wanda-50")


def _int_weights(bits: int, group_size: int | None, symmetric: bool = True) -> dict:
    return {"num_bits": bits, "type": "int", "symmetric": symmetric,
            "strategy": "group" if group_size else "channel", "group_size": group_size}


def recipe_modifiers(recipe: str, group_size: int) -> list:
    """The llm-compressor modifiers of a recipe."""
    from llmcompressor.modifiers.awq import AWQModifier
    from llmcompressor.modifiers.pruning import SparseGPTModifier, WandaPruningModifier
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier
    from llmcompressor.modifiers.transform.smoothquant import SmoothQuantModifier

    ignore = ["lm_head"]
    if recipe == "gptq-w4a16":
        return [GPTQModifier(ignore=ignore, config_groups={"group_0": {
            "targets": ["Linear"], "weights": _int_weights(4, group_size)}})]
    if recipe == "awq-w4a16":
        return [AWQModifier(ignore=ignore, config_groups={"group_0": {
            "targets": ["Linear"], "weights": _int_weights(4, group_size, symmetric=False)}})]
    if recipe == "smoothquant-gptq-w8a8":
        return [SmoothQuantModifier(smoothing_strength=0.8),
                GPTQModifier(ignore=ignore, config_groups={"group_0": {
                    "targets": ["Linear"], "weights": _int_weights(8, None),
                    "input_activations": {"num_bits": 8, "type": "int", "symmetric": True,
                                          "strategy": "token", "dynamic": True}}})]
    if recipe == "fp8-dynamic":
        return [QuantizationModifier(targets="Linear", scheme="FP8_DYNAMIC", ignore=ignore)]
    if recipe.startswith("sparsegpt-"):
        structure = "2:4" if recipe.endswith("2of4") else "0:0"
        return [SparseGPTModifier(sparsity=0.5, mask_structure=structure, targets=[r"re:.*layers\.\d+\..*proj$"],
                                  ignore=ignore)]
    if recipe == "wanda-50":
        return [WandaPruningModifier(sparsity=0.5, mask_structure="0:0", targets=[r"re:.*layers\.\d+\..*proj$"],
                                     ignore=ignore)]
    raise SystemExit(f"llm_compress: unknown recipe {recipe!r}; one of {', '.join(RECIPES)}")


def reference_folder(ref_dir) -> str:
    """The transformers folder (or hub id) the reference rule recorded (or `ref_dir` itself,
    a plain transformers folder)."""
    from ..model.reference import POINTER, reference_record

    if not (Path(ref_dir) / POINTER).is_file():
        return str(ref_dir)
    record = reference_record(ref_dir)
    return str(Path(ref_dir) / record["local"]) if record.get("local") else record["path"]


def calibration_dataset(path):
    import datasets
    import pyarrow.parquet as pq

    rows = pq.read_table(path).column("input_ids").to_pylist()
    return datasets.Dataset.from_dict({"input_ids": rows, "attention_mask": [[1] * len(r) for r in rows]})


def load(ref_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = reference_folder(ref_dir)
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32), AutoTokenizer.from_pretrained(folder)


def apply_recipe(model, calibration, recipe: str, group_size: int) -> None:
    """`oneshot` with the recipe on every calibration sequence, in place."""
    import torch
    from llmcompressor import oneshot

    if not torch.cuda.is_available():
        # AWQ pins cached activations for faster host-to-GPU copies; pinning needs a GPU
        # (llmcompressor 0.14 raises "Cannot access accelerator device" on CPU).
        from llmcompressor.pipelines.cache import IntermediatesCache

        IntermediatesCache.pin_memory = lambda self, batch_index, input_names=None: None

    data = calibration_dataset(calibration)
    length = len(data[0]["input_ids"])
    print(f"llm-compressor {recipe}: {len(data)} calibration sequences of {length} tokens", flush=True)
    modifiers = []
    for m in recipe_modifiers(recipe, group_size):  # AWQModifier(...) gives [AWQ, quantization] in 0.14
        modifiers.extend(m if isinstance(m, list) else [m])
    oneshot(model=model, dataset=data, recipe=modifiers,
            max_seq_length=length, num_calibration_samples=len(data))


def save(model, tokenizer, out_dir) -> None:
    from ..io import atomic_dir

    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, save_compressed=True)
        tokenizer.save_pretrained(tmp)


def write_compressed_checkpoint(ref_dir, calibration, recipe: str, group_size: int, out_dir) -> None:
    t0 = time.monotonic()
    model, tokenizer = load(ref_dir)
    apply_recipe(model, calibration, recipe, group_size)
    save(model, tokenizer, out_dir)
    print(f"llm-compressor {recipe}: saved {out_dir} in {time.monotonic() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 6:
        raise SystemExit("usage: python -m featureaudit.compress.llm_compress REFERENCE CALIBRATION RECIPE GROUP_SIZE OUT")
    ref, cal, name, group, out = sys.argv[1:]
    write_compressed_checkpoint(ref, cal, name, int(group), out)
