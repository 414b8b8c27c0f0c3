"""llama.cpp as people use it: its quantizer presets, its importance matrix, its own forward.

The tools (`llama-quantize`, `llama-imatrix`) and the libraries behind llama-cpp-python's
ctypes bindings come from one build of the llama.cpp vendored in llama-cpp-python
(envs/build_llama_cpp.sh, `make llama-cpp`), cached per machine; the venv records where
(`<venv>/.llama-cpp`, or FEATUREAUDIT_LLAMA_CPP).

  quantize          llama-quantize: an F32/F16 GGUF -> a preset (Q4_K_M, IQ4_XS, ...), with an
                    optional importance matrix
  compute_imatrix   llama-imatrix over the calibration split's text
  tensor_types      the type llama.cpp chose for each tensor (it falls back on widths that are
                    not a multiple of 256)
  capture_residual  the residual stream after block L as llama.cpp computes it (graph node
                    `l_out-L`, read by an eval callback): what the shipped runtime computes
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import AuditError
from ..progress import log
from ..variants import LLAMA_CPP_PRESETS as PRESETS

BUILD_HINT = "build llama.cpp once per machine: make llama-cpp"


def install_dir() -> Path:
    """The cached llama.cpp build this environment uses; a one-line error when there is none."""
    where = os.environ.get("FEATUREAUDIT_LLAMA_CPP")
    if where is None:
        marker = Path(sys.prefix) / ".llama-cpp"
        where = marker.read_text().strip() if marker.is_file() else None
    if where is None or not (Path(where) / "bin" / "llama-quantize").is_file():
        raise AuditError(f"llama.cpp is not built for this environment; {BUILD_HINT}")
    return Path(where)


def available() -> bool:
    try:
        install_dir()
        return True
    except AuditError:
        return False


def _env() -> dict:
    lib = str(install_dir() / "lib")
    return {**os.environ, "LD_LIBRARY_PATH": lib + os.pathsep + os.environ.get("LD_LIBRARY_PATH", "")}


def _run(args: list[str], what: str) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, env=_env())
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise AuditError(f"{what} failed (exit {proc.returncode}): {' | '.join(tail)}")
    return proc.stdout + proc.stderr


def quantize(source, out_path, preset: str, imatrix=None, threads: int = 2, tensor_type_file=None,
             pure: bool = False) -> None:
    """`llama-quantize [--pure] [--tensor-type-file R] [--imatrix F] source out preset threads`,
    as a user would run it (with a recipe file: per-tensor types, the preset's for the rest)."""
    if preset not in PRESETS:
        raise AuditError(f"llama.cpp preset {preset!r} is not one of {', '.join(PRESETS)}")
    args = [str(install_dir() / "bin" / "llama-quantize")]
    if pure:
        args += ["--pure"]
    if tensor_type_file is not None:
        args += ["--tensor-type-file", str(tensor_type_file)]
    if imatrix is not None:
        args += ["--imatrix", str(imatrix)]
    args += [str(source), str(out_path), preset, str(threads)]
    _run(args, f"llama-quantize {preset}")


def compute_imatrix(model, text_file, out_path, context: int, chunks: int, threads: int = 2) -> str:
    """`llama-imatrix` over `chunks` windows of `context` tokens of the calibration text."""
    args = [str(install_dir() / "bin" / "llama-imatrix"), "-m", str(model), "-f", str(text_file),
            "-o", str(out_path), "-c", str(context), "--chunks", str(chunks), "-t", str(threads),
            "--no-ppl", "-lv", "0"]
    return _run(args, "llama-imatrix")


def tensor_types(path) -> dict[str, str]:
    """Tensor name -> GGUF type name, as stored in the file."""
    from gguf import GGUFReader

    return {t.name: t.tensor_type.name for t in GGUFReader(str(path)).tensors}


def type_counts(types: dict[str, str]) -> dict[str, int]:
    return dict(Counter(types.values()).most_common())


# --------------------------------------------------------------------------- runtime activations
def _bindings():
    """llama-cpp-python's low-level module, loading the cached build's libraries."""
    lib = install_dir() / "lib"
    os.environ["LLAMA_CPP_LIB_PATH"] = str(lib)
    # the cached libraries were moved out of their build tree: load libllama's dependencies
    # first, by path, so that the loader finds them by name (a moved RPATH would not)
    for name in ("libggml-base.so", "libggml-cpu.so", "libggml.so"):
        ctypes.CDLL(str(lib / name), mode=ctypes.RTLD_GLOBAL)
    try:
        import llama_cpp
    except ImportError:
        raise AuditError(f"llama-cpp-python is not installed in this environment; {BUILD_HINT}") from None
    return llama_cpp


def _ggml_base():
    lib = ctypes.CDLL(str(install_dir() / "lib" / "libggml-base.so"))
    lib.ggml_get_name.restype = ctypes.c_char_p
    lib.ggml_get_name.argtypes = [ctypes.c_void_p]
    lib.ggml_nelements.restype = ctypes.c_int64
    lib.ggml_nelements.argtypes = [ctypes.c_void_p]
    lib.ggml_nbytes.restype = ctypes.c_size_t
    lib.ggml_nbytes.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_tensor_get.restype = None
    lib.ggml_backend_tensor_get.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
    return lib


_QUIET = None


def _quiet(lc):
    """A log callback that drops llama.cpp's chatter; kept alive for the process (llama.cpp
    calls it from C long after this call returns)."""
    global _QUIET
    if _QUIET is None:
        _QUIET = lc.llama_log_callback(lambda level, text, data: None)
    return _QUIET


def graph_node(hook: str) -> str:
    """llama.cpp's graph node for a TransformerLens residual hook (blocks.L.hook_resid_post is
    the output of block L, `l_out-L`; hook_resid_pre of block L is block L-1's output)."""
    parts = hook.split(".")
    if len(parts) == 3 and parts[0] == "blocks" and parts[1].isdigit():
        layer = int(parts[1])
        if parts[2] == "hook_resid_post":
            return f"l_out-{layer}"
        if parts[2] == "hook_resid_pre" and layer > 0:
            return f"l_out-{layer - 1}"
    raise AuditError(f"llama.cpp activations: hook {hook} is not a residual stream llama.cpp names "
                     "(blocks.L.hook_resid_post, or hook_resid_pre of L >= 1); leave runtime off for this model")


def capture_residual(gguf_path, tokens: np.ndarray, hook: str | list[str], threads: int = 2, every: int = 32):
    """(n_seq, T, d_model) float32: the hook's activations as llama.cpp computes them ({hook:
    activations} for a list of hooks, all from one forward that stops after the deepest), one
    sequence per decode on a fresh KV cache (the same tokens as the transformers path, BOS
    included as given: llama.cpp adds nothing)."""
    lc = _bindings()
    ggml = _ggml_base()
    hooks = [hook] if isinstance(hook, str) else list(hook)
    nodes: dict[bytes, list[str]] = {}  # graph node -> the hooks it is (resid_post L = resid_pre L+1)
    for h in hooks:
        nodes.setdefault(graph_node(h).encode(), []).append(h)
    n_seq, T = tokens.shape

    lc.llama_log_set(_quiet(lc), ctypes.c_void_p())
    lc.llama_backend_init()
    mparams = lc.llama_model_default_params()
    model = lc.llama_model_load_from_file(str(gguf_path).encode(), mparams)
    if not model:
        raise AuditError(f"llama.cpp could not load {gguf_path}")
    d = lc.llama_model_n_embd(model)
    found: dict[bytes, list] = {node: [] for node in nodes}

    @lc.ggml_backend_sched_eval_callback
    def on_eval(t, ask, user_data):
        name = ggml.ggml_get_name(t)
        if name not in nodes:
            return bool(ask) is False  # ask: not this one; data phase: go on
        if ask:
            return True
        n = ggml.ggml_nelements(t)
        if ggml.ggml_nbytes(t) != 4 * n:  # an exception would not cross the C callback
            found[name].append(None)
            return False
        buf = np.empty(n, dtype=np.float32)
        ggml.ggml_backend_tensor_get(t, buf.ctypes.data, 0, 4 * n)
        found[name].append(buf.reshape(-1, d))
        # false stops the graph once every hook is read: the layers after the deepest and the
        # output head are never run; the logits llama_decode returns are unused
        return not all(found.values())

    cparams = lc.llama_context_default_params()
    cparams.n_ctx = cparams.n_batch = cparams.n_ubatch = T
    cparams.n_threads = cparams.n_threads_batch = threads
    cparams.cb_eval = on_eval
    cparams.cb_eval_user_data = None
    ctx = lc.llama_init_from_model(model, cparams)
    if not ctx:
        lc.llama_model_free(model)
        raise AuditError("llama.cpp could not create a context")
    out = {node: np.empty((n_seq, T, d), dtype=np.float32) for node in nodes}
    try:
        batch = lc.llama_batch_init(T, 0, 1)
        for s in range(n_seq):
            lc.llama_memory_clear(lc.llama_get_memory(ctx), True)
            batch.n_tokens = T
            for i in range(T):
                batch.token[i] = int(tokens[s, i])
                batch.pos[i] = i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = i == T - 1  # rows are dropped only at the last layer, after the hook
            for parts in found.values():
                parts.clear()
            if lc.llama_decode(ctx, batch) != 0:
                raise AuditError(f"llama.cpp decode failed on sequence {s}")
            for node, parts in found.items():
                if any(f is None for f in parts):
                    raise AuditError(f"llama.cpp node {node.decode()} is not float32")
                rows = np.concatenate(parts, axis=0) if parts else np.empty((0, d), np.float32)
                if rows.shape[0] != T:
                    raise AuditError(f"llama.cpp node {node.decode()} gave {rows.shape[0]} rows for {T} tokens")
                out[node][s] = rows
            if every and (s + 1) % every == 0:
                log(f"llama.cpp forward: {s + 1}/{n_seq} sequences")
        lc.llama_batch_free(batch)
    finally:
        lc.llama_free(ctx)
        lc.llama_model_free(model)
    by_hook = {h: out[node] for node, names in nodes.items() for h in names}
    return by_hook[hooks[0]] if isinstance(hook, str) else by_hook
