"""What the shipped runtime computes: a GGUF variant's activations from llama.cpp itself.

The audit's variant path dequantizes a GGUF into transformers and runs it in float32;
llama.cpp runs the quantized blocks with its own kernels (activations rounded to the blocks'
dot-product types, an F16 KV cache). This stage captures the hook's activations from
llama.cpp on the first `runtime.n_tokens` audit tokens (whole sequences; llama.cpp's CPU
forward is the slow part; every hook from one forward), encodes them with each hook's SAE, and
reports per hook, on exactly those tokens for both paths:
  - how far llama.cpp's activations are from the transformers path's activations of the same
    file (relative error, over all tokens and per token),
  - the survival fractions of both paths' codes against FP's (transformers FP): how much the
    runtime itself moves the audit's answer,
  - the share of FP-active features whose status is the same on both paths.
For `fp` the file is the reference as F32 GGUF: llama.cpp's own distance from transformers
with nothing quantized. `write_runtime_audit` is the body of the `runtime` rule.
"""

from __future__ import annotations

import numpy as np

from ..compress.llama_cpp import capture_residual
from ..config import CaptureSettings, Thresholds
from ..inputs.tokens import read_tokens
from ..io import write_json
from ..model.shards import iter_activation_shards
from ..progress import log
from ..sae.codes import Codes, hook_codes, sparse_encode
from ..sae.encoder import load_encoder
from ..sae.frozen import saved_sae_metadata, wants_centering
from .survival import PearsonAccumulator, fractions, survival_frame


def runtime_groups(acts: np.ndarray, act_dir, sae, limit: int):
    """llama.cpp's codes in the transformers shards' token order and groups, for the tokens
    below `limit`; returns (groups, errors): groups of (token, feature, value) as the codes
    file stores them, and the relative errors against the transformers activations."""
    flat = acts.reshape(-1, acts.shape[-1])
    num = den = 0.0
    per_token, groups = [], []
    for tok, ref in iter_activation_shards(act_dir):
        keep = tok < limit
        if not keep.any():
            break
        tok, ref = tok[keep], ref[keep]
        mine = flat[tok]
        diff = ((mine.astype(np.float64) - ref) ** 2).sum(1)
        norm = (ref.astype(np.float64) ** 2).sum(1)
        num, den = num + diff.sum(), den + norm.sum()
        per_token.append(np.sqrt(diff / np.maximum(norm, 1e-30)))
        groups.append(sparse_encode(sae, mine, tok))
    per_token = np.concatenate(per_token)
    errors = {"rel_error": float(np.sqrt(num / den)), "rel_error_token_median": float(np.median(per_token)),
              "rel_error_token_p99": float(np.quantile(per_token, 0.99)), "n_tokens": int(len(per_token))}
    return groups, errors


def prefix_survival(fp_codes, other_groups, limit: int, n_tokens: int, thresholds: Thresholds):
    """Survival of `other_groups` against FP's codes on the tokens below `limit` only."""
    fp = Codes(fp_codes)
    acc = PearsonAccumulator(fp.d_sae)
    for (tx, fx, vx), (ty, fy, vy) in zip(fp.groups(), other_groups):
        kx, ky = tx < limit, ty < limit
        acc.add(tx[kx], fx[kx], vx[kx], ty[ky], fy[ky], vy[ky])
    return survival_frame(acc, n_tokens, thresholds)


def write_runtime_audit(variant: str, gguf, tokens_path, sae_dirs: list, act_dir, fp_codes, variant_codes,
                        captures: list[CaptureSettings], thresholds: Thresholds, n_tokens: int, threads: int,
                        out_json) -> None:
    """The `runtime` rule: llama.cpp's forward once over the first audit sequences, every hook
    read from it; per hook, the comparison above (runtime/<variant>.json: {"hooks": {hook: ...}})."""
    ids = read_tokens(tokens_path, "audit").numpy()
    n_seq = min(len(ids), max(1, -(-n_tokens // ids.shape[1])))
    ids = ids[:n_seq]
    log(f"runtime {variant}: llama.cpp forward over {n_seq} audit sequences ({ids.size} tokens) of {gguf}")
    by_hook = capture_residual(gguf, ids, [c.hook for c in captures], threads=threads)
    limit = n_seq * ids.shape[1]  # token index = sequence * context_length + position
    hooks = {}
    for sae_dir, c in zip(sae_dirs, captures):
        meta = saved_sae_metadata(sae_dir, key=f"the SAE at {c.hook}")
        acts = by_hook[c.hook]
        if (c.center if c.center is not None else wants_centering(meta)):
            acts = acts - acts.mean(-1, keepdims=True)
        hooks[c.hook] = hook_runtime(acts, f"{act_dir}/{c.hook}", load_encoder(sae_dir), hook_codes(fp_codes, c.hook),
                                     hook_codes(variant_codes, c.hook), limit, thresholds)
        r = hooks[c.hook]
        log(f"runtime {variant} at {c.hook}: relative error {r['rel_error']:.4f} (median token "
            f"{r['rel_error_token_median']:.4f}); survived {r['frac_survived_runtime']:.3f} in llama.cpp vs "
            f"{r['frac_survived_transformers']:.3f} in transformers on the same tokens; status agreement "
            f"{r['status_agreement']:.3f}")
    write_json({"variant": variant, "gguf": str(gguf), "sequences": n_seq, "hooks": hooks}, out_json)


def hook_runtime(acts: np.ndarray, act_dir, sae, fp_codes, variant_codes, limit: int, thresholds: Thresholds) -> dict:
    """One hook: llama.cpp's activations against the transformers path's, and both paths'
    survival against FP on the same tokens."""
    groups, result = runtime_groups(acts, act_dir, sae, limit)
    runtime = prefix_survival(fp_codes, groups, limit, result["n_tokens"], thresholds)
    transformers = prefix_survival(fp_codes, Codes(variant_codes).groups(), limit, result["n_tokens"], thresholds)
    active = (transformers.status != "inactive").to_numpy()
    same = runtime.status.to_numpy()[active] == transformers.status.to_numpy()[active]
    for path, table in (("runtime", runtime), ("transformers", transformers)):
        for k, v in fractions(table).items():
            if k.startswith("frac_") or k == "n_active":
                result[f"{k}_{path}"] = v
    result["status_agreement"] = float(same.mean()) if active.any() else float("nan")
    return result
