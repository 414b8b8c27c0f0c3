"""What the shipped runtime computes: a GGUF variant's activations from llama.cpp itself.

The audit's variant path dequantizes a GGUF into transformers and runs it in float32;
llama.cpp runs the quantized blocks with its own kernels (activations rounded to the blocks'
dot-product types, an F16 KV cache). This stage captures the hook's activations from
llama.cpp on the same audit tokens (featureaudit/llama_cpp.py), encodes them with the same
SAE, and reports
  - how far they are from the transformers path's activations of the same file (relative
    error, over all tokens and per token),
  - the survival fractions of the llama.cpp codes against FP's, beside the transformers
    path's fractions: how much the runtime itself moves the verdict,
  - the share of FP-active features whose status is the same on both paths.
For `fp` the file is the reference as F32 GGUF: llama.cpp's own distance from transformers
with nothing quantized. `audit_runtime` is the body of the `runtime` rule.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .codes import SCHEMA, sparse_encode
from .config import CaptureSettings, Thresholds
from .io import atomic_path, read_table, write_json
from .llama_cpp import capture_residual
from .progress import log
from .sae import load_sae, saved_sae_metadata, wants_centering
from .shards import iter_activation_shards
from .survival import fractions, survival_table
from .tokens import read_tokens


def write_runtime_codes(acts: np.ndarray, act_dir, sae, out_path) -> dict:
    """Encode llama.cpp's activations in the transformers shards' token order and groups (so
    the codes align with FP's row group by row group); returns the relative errors."""
    flat = acts.reshape(-1, acts.shape[-1])
    num = den = 0.0
    per_token = []
    group_tokens, n_tokens = [], 0
    with atomic_path(out_path) as tmp, pq.ParquetWriter(tmp, SCHEMA, write_page_checksum=True) as writer:
        for tok, ref in iter_activation_shards(act_dir):
            mine = flat[tok]
            diff = ((mine.astype(np.float64) - ref) ** 2).sum(1)
            norm = (ref.astype(np.float64) ** 2).sum(1)
            num, den = num + diff.sum(), den + norm.sum()
            per_token.append(np.sqrt(diff / np.maximum(norm, 1e-30)))
            t, f, v = sparse_encode(sae, mine, tok)
            writer.write_table(pa.table({"token": t, "feature": f, "value": v}, schema=SCHEMA),
                               row_group_size=max(len(t), 1))
            group_tokens.append(len(tok))
            n_tokens += len(tok)
        import json

        writer.add_key_value_metadata({"d_sae": str(int(sae.cfg.d_sae)), "n_tokens": str(n_tokens),
                                       "group_tokens": json.dumps(group_tokens)})
    per_token = np.concatenate(per_token)
    return {"rel_error": float(np.sqrt(num / den)), "rel_error_token_median": float(np.median(per_token)),
            "rel_error_token_p99": float(np.quantile(per_token, 0.99)), "n_tokens": int(n_tokens)}


def audit_runtime(variant: str, gguf, tokens_path, sae_dir, act_dir, fp_codes, transformers_survival,
                  capture: CaptureSettings, thresholds: Thresholds, threads: int, out_json, out_codes) -> None:
    meta = saved_sae_metadata(sae_dir, key="the SAE")
    center = capture.center if capture.center is not None else wants_centering(meta)
    ids = read_tokens(tokens_path, "audit").numpy()
    log(f"runtime {variant}: llama.cpp forward over {ids.size} audit tokens ({gguf})")
    acts = capture_residual(gguf, ids, capture.hook, threads=threads)
    if center:
        acts -= acts.mean(-1, keepdims=True)
    result = {"variant": variant, "gguf": str(gguf)}
    result.update(write_runtime_codes(acts, act_dir, load_sae(sae_dir), out_codes))

    runtime = survival_table(fp_codes, out_codes, thresholds)
    reference = read_table(transformers_survival, columns=["feature", "status"]).to_pandas()
    active = reference.status != "inactive"
    same = (runtime.status.to_numpy()[active] == reference.status.to_numpy()[active]).mean() if active.any() else np.nan
    for path, table in (("runtime", runtime), ("transformers", reference)):
        for k, v in fractions(table).items():
            if k.startswith("frac_"):
                result[f"{k}_{path}"] = v
    result["status_agreement"] = float(same)
    write_json(result, out_json)
    log(f"runtime {variant}: relative error {result['rel_error']:.4f} (median token "
        f"{result['rel_error_token_median']:.4f}); survived {result['frac_survived_runtime']:.3f} in llama.cpp vs "
        f"{result['frac_survived_transformers']:.3f} in transformers; status agreement {same:.3f}")
