"""One function per workflow rule: each reads its inputs, calls the stage modules, writes its
outputs atomically. Workflow scripts only unpack the `snakemake` object and call one of these,
so everything here can also be run (and tested) without Snakemake."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from .architecture import n_layers
from .capture import iter_activations, write_activation_shards
from .codes import encode_activations
from .compression import apply_variant
from .config import AuditConfig
from .device import resolve_device, resolve_dtype
from .errors import AuditError
from .hooks import parse_hook
from .io import atomic_dir, read_json, read_table, write_json, write_table
from .metrics import compare_to_fp, perplexity, sliding_perplexity
from .models import load_model
from .overlap import match_sparsity, overlap
from .predict import predictability
from .sae import check_width, fraction_variance_unexplained, load_sae, sae_metadata, train_sae, wants_centering
from .statistics import feature_statistics
from .survival import fractions, survival_table
from .tokens import hf_dataset_text, pydoc_text, read_tokens, text_files, tokenize_to_sequences, write_tokens
from .variants import parse_variant


def log(msg: str) -> None:
    print(f"[featureaudit] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- inputs


def _tokenizer(cfg: AuditConfig, model: str):
    from transformers import AutoTokenizer

    from .models import resolve_path

    m = cfg.models[model]
    if m.source == "gguf":
        f = Path(resolve_path(m.path))
        return AutoTokenizer.from_pretrained(str(f.parent), gguf_file=f.name)
    return AutoTokenizer.from_pretrained(resolve_path(m.path))


def make_tokens(cfg: AuditConfig, model: str, out_path) -> None:
    c = cfg.corpus
    budget = cfg.token_budget(model)
    if c.source == "pydoc":
        text = pydoc_text()
    elif c.source == "text_files":
        text = text_files(list(c.paths))
    else:
        total = budget.audit_tokens + budget.heldout_tokens + budget.sae_train_tokens
        text = hf_dataset_text(c.name, c.split, c.column, max_chars=8 * total)
    splits = tokenize_to_sequences(text, _tokenizer(cfg, model), budget)
    write_tokens(splits, out_path)
    log("tokens: " + ", ".join(f"{k} {v.size}" for k, v in splits.items()))


def make_reference(cfg: AuditConfig, model: str, out_dir) -> None:
    """Loads the reference model once (a broken path or hub id fails here, early) and records
    where it came from; every later job loads it the same way (a GGUF file loads in seconds)."""
    m = cfg.models[model]
    lm, _ = load_model(m.source, m.path, torch.float32, "cpu", name=model)
    shape = {"n_layers": n_layers(lm), "d_model": hidden_size(lm), "n_params": sum(p.numel() for p in lm.parameters())}
    with atomic_dir(out_dir) as tmp:
        (Path(tmp) / "featureaudit-reference.json").write_text(json.dumps({"source": m.source, "path": m.path, **shape}))
    log(f"reference {model}: {shape}")


def load_reference(cfg: AuditConfig, model: str, ref_dir):
    pointer = read_json(Path(ref_dir) / "featureaudit-reference.json")
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.models[model].dtype, device)
    return load_model(pointer["source"], pointer["path"], dtype, device, name=model)


def hidden_size(lm) -> int:
    c = lm.config
    return int((getattr(c, "text_config", None) or c).hidden_size)


# --------------------------------------------------------------------------- SAE


def make_sae(cfg: AuditConfig, model: str, tokens_path, ref_dir, out_dir) -> None:
    m = cfg.models[model]
    device = resolve_device(cfg.device)
    if m.sae.source == "train":
        lm, _ = load_reference(cfg, model, ref_dir)
        ids = read_tokens(tokens_path, "sae_train")
        acts = _capture_matrix(lm, ids, m, center=bool(m.center))
        log(f"train SAE on {len(acts)} FP activations at {m.hook}")
        sae = train_sae(acts, out_dir, m.hook, model, cfg.corpus.context_length, cfg.corpus.prepend_bos,
                        m.sae.train, device)
        fvu = fraction_variance_unexplained(sae, acts[-min(len(acts), 8192):])
        log(f"SAE trained: FVU {fvu:.3f} on training activations")
        return
    if m.sae.source == "disk":
        sae = load_sae(m.sae.path, device)
    else:
        from .sae_pretrained import load_pretrained_sae

        sae, _ = load_pretrained_sae(m.sae.release, m.sae.id, device=str(device), config_key=model)
    meta = sae_metadata(sae)
    if meta["hook_name"] and meta["hook_name"] != m.hook:
        raise AuditError(f"models.{model}.hook is {m.hook} but the SAE was trained at {meta['hook_name']}; make them agree")
    with atomic_dir(out_dir) as tmp:
        sae.save_model(str(tmp))


def _capture_matrix(lm, ids, m, center: bool) -> np.ndarray:
    first = 1 if m.exclude_bos else 0
    parts = [a[:, first:].reshape(-1, a.shape[-1]).numpy()
             for a in iter_activations(lm, ids, m.hook, m.batch_size, center, progress=True)]
    return np.concatenate(parts)


# --------------------------------------------------------------------------- per variant


def build_variant(cfg: AuditConfig, model: str, variant: str, ref_dir, matched_json=None):
    """(reference model, compressed copy, tokenizer); `fp` is the reference itself."""
    lm, tok = load_reference(cfg, model, ref_dir)
    v = parse_variant(variant)
    if v.kind == "fp":
        return lm, lm, tok
    matched = None
    if v.kind == "match":
        v = replace(v, scope=cfg.pruning.scope)
        matched = read_json(matched_json)["matched_sparsity"]
    return lm, apply_variant(lm, v, matched), tok


def capture(cfg: AuditConfig, model: str, variant: str, tokens_path, ref_dir, sae_dir, out_dir, matched_json=None) -> None:
    m = cfg.models[model]
    sae = load_sae(sae_dir, "cpu")
    _, lm, _ = build_variant(cfg, model, variant, ref_dir, matched_json)
    parse_hook(m.hook, n_layers(lm))
    check_width(sae, hidden_size(lm), m.hook)
    meta = sae_metadata(sae)
    if meta["prepend_bos"] is False and cfg.corpus.prepend_bos:
        raise AuditError("the SAE was trained without BOS tokens; set corpus.prepend_bos: false")
    center = m.center if m.center is not None else wants_centering(meta)
    ids = read_tokens(tokens_path, "audit")
    n = write_activation_shards(lm, ids, m.hook, out_dir, batch_size=m.batch_size, exclude_bos=m.exclude_bos,
                                center=center)
    log(f"captured {n} activations of {variant} at {m.hook}")


def encode(cfg: AuditConfig, sae_dir, act_dir, out_path) -> None:
    sae = load_sae(sae_dir, resolve_device(cfg.device))
    nnz = encode_activations(sae, act_dir, out_path)
    log(f"encoded {nnz} nonzero codes")


def fp_statistics(fp_codes, sae_dir, out_path) -> None:
    table = feature_statistics(fp_codes, load_sae(sae_dir, "cpu"))
    write_table(pa.Table.from_pandas(table, preserve_index=False), out_path)


def survival(cfg: AuditConfig, fp_codes, variant_codes, stats_path, out_path) -> None:
    table = survival_table(fp_codes, variant_codes, cfg.survival)
    stats = read_table(stats_path).to_pandas()
    table = table.merge(stats, on="feature", how="left")
    write_table(pa.Table.from_pandas(table, preserve_index=False), out_path)
    log("survival: " + json.dumps(fractions(table)))


def metrics(cfg: AuditConfig, model: str, variant: str, tokens_path, ref_dir, out_path, matched_json=None) -> None:
    fp, lm, _ = build_variant(cfg, model, variant, ref_dir, matched_json)
    ids = read_tokens(tokens_path, "heldout")
    e = cfg.evaluation
    result = compare_to_fp(fp, lm, ids, e.batch_size, progress=True)
    window = e.window or ids.shape[1]
    stride = e.stride or max(window // 2, 1)
    stream = _heldout_stream(ids, cfg.corpus.prepend_bos)
    result["perplexity_sliding"] = sliding_perplexity(lm, stream, window, stride, e.batch_size)
    result.update(variant=variant, window=window, stride=stride)
    if matched_json:
        result["matched_sparsity"] = read_json(matched_json)["matched_sparsity"]
    write_json(result, out_path)
    log(f"metrics {variant}: perplexity {result['perplexity']:.3f} (FP {result['fp_perplexity']:.3f})")


def _heldout_stream(ids: torch.Tensor, has_bos: bool) -> torch.Tensor:
    """The held-out sequences are consecutive corpus text: join their bodies into one stream."""
    body = ids[:, 1:] if has_bos else ids
    stream = body.reshape(-1)
    return torch.cat([ids[:1, 0], stream]) if has_bos else stream


def match_pruning(cfg: AuditConfig, model: str, quantized: str, tokens_path, ref_dir, out_path) -> None:
    fp, qlm, _ = build_variant(cfg, model, quantized, ref_dir)
    p = cfg.pruning
    ids = read_tokens(tokens_path, "heldout")
    ids = ids[: max(1, -(-p.match_tokens // ids.shape[1]))]
    bs = cfg.evaluation.batch_size
    target = perplexity(qlm, ids, bs)
    del qlm
    from .variants import Variant

    def ppl_at(s: float) -> float:
        return perplexity(apply_variant(fp, Variant("magnitude", sparsity=s, scope=p.scope)), ids, bs)

    result = match_sparsity(ppl_at, target, p.match_tolerance, 0.0, p.max_sparsity)
    result.update(quantized=quantized, scope=p.scope, n_tokens=int(ids[:, 1:].numel()))
    write_json(result, out_path)


# --------------------------------------------------------------------------- tables


def predictability_step(cfg: AuditConfig, survival_path, out_path) -> None:
    table = read_table(survival_path).to_pandas()
    write_json(predictability(table, cfg.predictability.folds, cfg.predictability.seed), out_path)


def overlap_step(quantized_survival, pruned_survival, matched_json, out_path) -> None:
    q = read_table(quantized_survival).to_pandas()
    p = read_table(pruned_survival).to_pandas()
    result = overlap(q, p)
    matched = read_json(matched_json)
    result.update({k: matched[k] for k in ("matched_sparsity", "matched_perplexity", "target_perplexity", "converged")})
    write_json(result, out_path)


def summary(cfg: AuditConfig, variants: list[str], survival_paths, metrics_paths, predict_paths, out_path) -> None:
    from .io import atomic_path
    from .report import build_summary

    df = build_summary(variants, survival_paths, metrics_paths, predict_paths)
    with atomic_path(out_path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    log("summary:\n" + df.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
