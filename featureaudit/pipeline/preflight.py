"""Checks that run when the workflow starts, before any job: everything that can be known
from local files fails here rather than after an hour of capture. Files and folders the config
names (readable, not empty, safetensors not pickles, each opened far enough to know it is what it
claims: artifacts.py), the watch-list's ids, the corpus against every split's budget, settings
against each other (config.cross_field_problems), hook, SAE width and hook, block and group
sizes of formats and producers against the model's widths, checkpoints against the reference,
the device, the results folder. Every problem is collected and reported together, one line
each. Nothing here touches the network: what would come from the hub is hub.py's."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from ..compress.checkpoints import check_compatible
from ..config import cross_field_problems
from ..errors import AuditError, Problems
from ..hooks import parse_hook
from ..io import atomic_path
from ..inputs.watchlist import check_hooks, check_ids, ids_at, read_watchlist
from ..model.architecture import config_value, hidden_size, linear_input_widths, n_layers, part_input_widths, text_config
from ..model.reference import unsupported_gguf
from ..paths import looks_local, resolve_path
from ..sae.frozen import check_hook, check_width, saved_sae_metadata
from ..variants import parse_variant
from .artifacts import check_artifact_once, remembered


def model_config(source: str, path: str, name: str = "<name>") -> dict | None:
    """The (text) config of a local model as a dict, or None for a hub id. A GGUF file's comes
    from transformers' reading of it (remembered between starts); a folder's from config.json."""
    where = resolve_path(path)
    if source == "gguf" or str(where).endswith(".gguf"):
        if not os.path.isfile(where):
            raise AuditError(f"GGUF file {where} does not exist; fix models.<name>.path")
        return _gguf_config(where, name)
    if os.path.isfile(os.path.join(where, "config.json")):
        # Plain JSON: importing transformers here would cost seconds on every Snakemake start
        # (and on a cluster, in every job).
        return text_config(json.loads(Path(where, "config.json").read_text()))
    if os.path.isdir(where):
        raise AuditError(f"{where} has no config.json; point models.<name>.path at a transformers model folder")
    return None


def shape_of(config: dict) -> dict:
    """{'n_layers', 'd_model', 'n_params'} (parameters estimated from the shapes)."""
    d, L = hidden_size(config), n_layers(config)
    ffn = int(config_value(config, "intermediate_size") or 4 * d)
    n_params = L * (4 * d * d + 3 * d * ffn) + 2 * int(config_value(config, "vocab_size")) * d
    return {"n_layers": L, "d_model": d, "n_params": n_params}


def model_shape(source: str, path: str, name: str = "<name>") -> dict | None:
    """{'n_layers', 'd_model', 'n_params'} from a local model's config, or None if not local."""
    config = model_config(source, path, name)
    return shape_of(config) if config is not None else None


def _gguf_config(file: str, name: str) -> dict:
    """The transformers config of a GGUF file. Reading it means importing transformers and
    parsing the whole header (vocabulary included): 10-20 s on a small CPU, on every start."""
    return remembered("config-v3", file, lambda: _read_gguf_config(file, name))


def _read_gguf_config(file: str, name: str) -> dict:
    from transformers import AutoConfig

    try:
        cfg = AutoConfig.from_pretrained(str(Path(file).parent), gguf_file=Path(file).name)
    except ValueError as e:
        if "not supported" in str(e):
            raise unsupported_gguf(e, name) from None
        raise
    keep = ("num_hidden_layers", "hidden_size", "intermediate_size", "vocab_size", "model_type",
            "num_attention_heads", "head_dim", "max_position_embeddings")
    return {k: v for k, v in text_config(cfg).to_dict().items() if k in keep}


def guess_shape(path: str) -> dict:
    """For hub ids (not local): size from the name ('70m', '2b'), for resource requests only."""
    m = re.search(r"(\d+(?:\.\d+)?)([mb])\b", path.lower())
    n = float(m[1]) * (1e6 if m[2] == "m" else 1e9) if m else 1e9
    return {"n_layers": None, "d_model": int(512 * max(1.0, (n / 7e7) ** 0.33)), "n_params": int(n)}


def check_widths(config: dict, variants: list[str], name: str) -> None:
    """Every variant whose blocks or groups must divide the matrices' input widths does."""
    widths = linear_input_widths(config)
    for v in map(parse_variant, variants):
        bad = sorted(w for w in widths if v.block and w % v.block)
        if bad:
            raise AuditError(
                f"{v.name} quantizes in blocks of {v.block} along the input dimension, but models.{name} has matrices "
                f"{bad[0]} wide; drop it from the config (formats / quantization.group_size) for this model"
            )


#: llm-compressor recipes that quantize weights in groups of `group_size` input columns.
GROUPED_RECIPES = ("gptq-w4a16", "awq-w4a16")


def check_producers(config: dict, model) -> None:
    """Checkpoints the workflow makes must be makeable on this model's widths: a gguf-py mix's
    block type, an llm-compressor recipe's group size (the producer would refuse in its job)."""
    parts = part_input_widths(config)
    problems = Problems()
    for key, ck in model.checkpoints.items():
        where = f"models.{model.name}.checkpoints.{key}"
        for part, t in (ck.mix or {}).items():
            block = parse_variant(f"gguf-{t}").block
            bad = sorted(w for w in parts.get(part, ()) if block and w % block)
            if bad:
                problems.add(f"{where}.mix.{part}: {t} quantizes in blocks of {block}, but the model's {part} matrices "
                             f"are {bad[0]} wide; choose a type whose blocks divide it")
        if ck.llama_cpp == "mix":
            widths = set().union(*parts.values())
            bad = sorted(w for w in widths if w % 32)
            if bad:
                problems.add(f"{where}: a mix uses 32-weight block types, but the model has {bad[0]}-wide matrices; "
                             "use a llama_cpp preset instead")
        if ck.llm_compressor in GROUPED_RECIPES:
            widths = set().union(*parts.values())
            bad = sorted(w for w in widths if w % ck.group_size)
            if bad:
                fits = [g for g in (32, 64, 128, 256) if all(w % g == 0 for w in widths)]
                problems.add(f"{where}.group_size: {ck.group_size} does not divide the model's {bad[0]}-wide matrices "
                             f"(llm-compressor's {ck.llm_compressor} would refuse them); "
                             + (f"use {' or '.join(map(str, fits))}" if fits else "pick a divisor of every width"))
    problems.raise_any()


def check_recipes(model) -> None:
    """A recipe file (a user's, for a llama_cpp preset) exists and each of its lines names a
    type that exists and a pattern that matches a tensor of the reference GGUF; a mix's types
    fit the model's widths (32-weight blocks)."""
    problems = Problems()
    names = None
    for key, ck in model.checkpoints.items():
        where = f"models.{model.name}.checkpoints.{key}"
        if ck.recipe is None:
            continue
        path = resolve_path(ck.recipe)
        if not os.path.isfile(path):
            problems.add(f"{where}.recipe: {ck.recipe} does not exist; give a --tensor-type-file (pattern=type per line)")
            continue
        from ..compress.recipe_file import check_recipe  # here: most configs have no recipe file

        if names is None:
            from gguf import GGUFReader

            names = [t.name for t in GGUFReader(resolve_path(model.path)).tensors]
        for line in check_recipe(Path(path).read_text(errors="replace"), names, f"{where}.recipe ({ck.recipe})"):
            problems.add(line)
    problems.raise_any()


def check_checkpoint(model, key: str, reference: dict | None) -> None:
    """A checkpoint named by path exists, loads without pickle, and has the reference's
    architecture and sizes."""
    ck = model.checkpoints[key]
    where = f"models.{model.name}.checkpoints.{key}"
    if ck.path is None:
        return  # written by the workflow from the reference
    path = resolve_path(ck.path)
    check_readable(path, f"{where}.path")
    check_safetensors(path, f"{where}.path")
    check_artifact_once(path, f"{where}.path")
    config = model_config("gguf" if path.endswith(".gguf") else "hf", path, model.name)
    if reference is not None and config is not None:
        check_compatible(reference, config, where)


def check_readable(path: str, key: str, folder: bool | None = None) -> None:
    """`path` exists, is readable and is not empty (a file) or holds files (a folder)."""
    p = Path(os.path.expanduser(path))
    if not p.exists():
        raise AuditError(f"{key}: {p} does not exist; fix the path")
    if folder is True and not p.is_dir():
        raise AuditError(f"{key}: {p} is a file; it must be a folder")
    if folder is False and not p.is_file():
        raise AuditError(f"{key}: {p} is a folder; it must be a file")
    if not os.access(p, os.R_OK):
        raise AuditError(f"{key}: {p} is not readable; fix its permissions")
    if p.is_file() and p.stat().st_size == 0:
        raise AuditError(f"{key}: {p} is empty")
    if p.is_dir() and not any(p.iterdir()):
        raise AuditError(f"{key}: {p} is an empty folder")


def check_safetensors(folder: str, key: str) -> None:
    """A local transformers folder must hold safetensors weights: the other format
    (pytorch_model.bin) is a pickle, which can run code when loaded."""
    p = Path(resolve_path(folder))
    if p.is_dir() and (p / "config.json").is_file() and not any(p.glob("*.safetensors")):
        raise AuditError(f"{key}: {p} has no .safetensors weights; pickled weights (.bin, .pt) are not loaded: "
                         "convert them (transformers: model.save_pretrained(dir, safe_serialization=True))")


def check_corpus(cfg) -> None:
    """The corpus files are readable and hold at least as many bytes as the token budget needs
    tokens (byte-level tokenizers never make more tokens than bytes: a certain shortfall; the
    tokens job counts exactly, first, and fails with the same numbers)."""
    c = cfg.corpus
    if c.source == "hf_dataset":
        return
    need, splits = 0, "corpus.n_tokens + corpus.sae_train_tokens + evaluation.n_tokens"
    for name in cfg.models:
        b = cfg.token_budget(name)
        body = b.context_length - (1 if b.prepend_bos else 0)
        sequences = sum(b.sequences(s) for s in ("sae_train", "audit", "heldout"))
        if cfg.calibrates(name):  # drawn after the three splits, from the same text
            sequences += -(-cfg.calibration.n_tokens // b.context_length)
            splits += " + calibration.n_tokens"
        if cfg.scan_targets(name):  # the scan split: from the same text, disjoint from all of those
            sequences += -(-cfg.repair.scan_tokens // b.context_length)
            splits += " + repair.scan_tokens"
        need = max(need, sequences * body)
    n_bytes = text_bytes(c.source, c.paths, "corpus.paths", need)
    if n_bytes < need:
        raise AuditError(
            f"corpus: the text has {n_bytes} bytes, fewer than the {need} tokens the budget needs ({splits}); "
            "add text (corpus.paths) or lower the budget")


def check_audit_corpus(cfg, i: int) -> None:
    """A further corpus (corpora[i]): its files are text, and hold bytes enough for its audit
    tokens (the tokens job also skips sequences another table has: it says so if that leaves
    too few)."""
    c = cfg.corpora[i]
    if c.source == "hf_dataset":
        return
    body = cfg.corpus.context_length - (1 if cfg.corpus.prepend_bos else 0)
    need = -(-c.n_tokens // cfg.corpus.context_length) * body
    n_bytes = text_bytes(c.source, c.paths, f"corpora[{i}].paths", need)
    if n_bytes < need:
        raise AuditError(f"corpora[{i}] ({c.label}): the text has {n_bytes} bytes, fewer than the {need} tokens its "
                         f"n_tokens ({c.n_tokens}) needs; add text or lower corpora[{i}].n_tokens")


def text_bytes(source: str, paths, key: str, need: int) -> int:
    """Bytes of a corpus's text (at least; counted only as far as `need` where counting is slow),
    after checking that each file it names is readable UTF-8 text."""
    if source == "text_files":
        problems = Problems()
        for i, path in enumerate(paths):
            before = len(problems.lines)
            problems.check(check_readable, path, f"{key}[{i}]", folder=False)
            if len(problems.lines) == before:  # readable: is it text?
                problems.check(check_text, path, f"{key}[{i}]")
        problems.raise_any()
        return sum(os.path.getsize(os.path.expanduser(p)) for p in paths)
    if source == "packages":  # a bound: METADATA headers and all
        from ..inputs.corpus import package_text_files

        return sum(f.stat().st_size for f in package_text_files())
    from pydoc_data.topics import topics

    n_bytes = sum(len(t.encode()) for t in topics.values())
    if source == "cpython":  # the source files bound their docstrings' bytes
        from ..inputs.corpus import stdlib_files_unsorted

        # counted only as far as the budget needs: the whole standard library takes ~1.6 s,
        # on every start
        for f in stdlib_files_unsorted():
            if n_bytes >= need:
                break
            n_bytes += f.stat().st_size
    return n_bytes


def check_text(path: str, key: str) -> None:
    """A corpus file is text (UTF-8; its first 64 KiB are read): a model file or an archive named
    there would be tokenized as replacement characters without a word."""
    head = Path(os.path.expanduser(path)).open("rb").read(65536)
    try:
        if b"\0" in head:
            raise UnicodeDecodeError("utf-8", head, head.index(b"\0"), head.index(b"\0") + 1, "a NUL byte")
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.reason == "unexpected end of data" and e.start >= len(head) - 4:
            return  # a character cut at the 64 KiB boundary
        raise AuditError(f"{key}: {path} is not UTF-8 text ({e.reason} at byte {e.start}); give text files") from None


def check_results(path: str) -> None:
    """The results folder can be created and written (found now, not when the first job ends)."""
    p = Path(path)
    existing = p
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise AuditError(f"results: {existing} is a file, so {p} cannot be a folder; set results to a folder path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise AuditError(f"results: {existing} is not writable, so {p} cannot be written; set results to a folder you can write")


def gpu_visible() -> bool:
    """An NVIDIA driver is present (cheap: no torch import; the job checks CUDA itself)."""
    return os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi") is not None


def check_device(device: str, local: bool) -> None:
    if device == "cuda" and local and not gpu_visible():
        raise AuditError("device: cuda, but this machine has no NVIDIA GPU (no driver found); set device: auto or "
                         "cpu, or run where a GPU is (cluster jobs are checked on their node)")


def check_model(cfg, name: str, m, problems: Problems) -> dict | None:
    """Every start-up check of one model; returns its shape (None if a check failed)."""
    where = f"models.{name}"
    before = len(problems.lines)
    if looks_local(m.path):
        problems.check(check_readable, resolve_path(m.path), f"{where}.path", folder=m.source == "hf" or None)
        if m.source == "hf":
            problems.check(check_safetensors, m.path, f"{where}.path")
    unreadable = len(problems.lines) > before  # said once: reading its config would say it again
    if looks_local(m.path) and not unreadable:
        problems.check(check_artifact_once, resolve_path(m.path), f"{where}.path")
        unreadable = len(problems.lines) > before
    for hook, sae in m.saes.items():
        if sae.source == "disk":
            problems.check(check_readable, sae.path, f"{m.sae_key(hook)}.path", folder=True)
            if os.path.isdir(sae.path):
                for weights in sorted(Path(sae.path).glob("*.safetensors")):
                    problems.check(check_artifact_once, str(weights), f"{m.sae_key(hook)}.path")
    config = None if unreadable else problems.check(model_config, m.source, m.path, name, prefix=f"{where}: ")
    shape = shape_of(config) if config is not None else None
    for hook, sae in m.saes.items():
        problems.check(parse_hook, hook, shape["n_layers"] if shape else None, prefix=f"{where}: ")
        if shape and sae.source == "disk" and os.path.isdir(sae.path):
            meta = problems.check(saved_sae_metadata, sae.path, key=f"{m.sae_key(hook)}.path")
            if meta is not None:
                problems.check(check_width, meta["d_in"], shape["d_model"], f"the activation at {hook}",
                               prefix=f"{m.sae_key(hook)}: ")
                problems.check(check_hook, meta["hook_name"], hook, name)
    if config is not None:
        problems.check(check_widths, config, cfg.variants(name), name)
        problems.check(check_producers, config, m)
        if m.source == "gguf" and not unreadable:
            problems.check(check_recipes, m)
        problems.check(check_context, config, cfg, name)
    for key in m.checkpoints:
        problems.check(check_checkpoint, m, key, config)
    return shape


def sae_width(m, hook: str) -> int | None:
    """The number of features of the SAE at `hook`, where start-up can know it without the hub."""
    sae = m.saes[hook]
    if sae.source == "train":
        return sae.train.d_sae
    if sae.source == "disk" and os.path.isdir(sae.path):
        return saved_sae_metadata(sae.path, key=f"{m.sae_key(hook)}.path").get("d_sae")
    return None


def config_watchlist(cfg) -> list | None:
    """The entries of the watch-list the config names (None without one: a missing file is
    config.cross_field_problems's line)."""
    path = cfg.gate.watchlist
    return read_watchlist(path, key="gate.watchlist") if path and os.path.isfile(path) else None


def check_watchlist(cfg, m, entries: list) -> None:
    """The watch-list names hooks the audit has (a hook wherever model `m` has several) and
    features of each hook's SAE. A model with one hook, beside others, takes hook names of any."""
    path = cfg.gate.watchlist
    if len(m.saes) == 1 and len(cfg.models) > 1:
        hooks = sorted({h for model in cfg.models.values() for h in model.saes})
    else:
        hooks = list(m.saes)
    check_hooks(entries, hooks, path, key="gate.watchlist")
    for hook in m.saes:
        d_sae = sae_width(m, hook)
        if d_sae:
            check_ids(ids_at(entries, hook), d_sae, path, key=f"gate.watchlist (models.{m.name} at {hook})")


def check_context(config: dict, cfg, name: str) -> None:
    """Sequences and the perplexity window fit the model's positions."""
    limit = config_value(config, "max_position_embeddings")
    if not limit:
        return
    window = cfg.evaluation.window or cfg.corpus.context_length
    for key, value in (("corpus.context_length", cfg.corpus.context_length), ("evaluation.window", window)):
        if value > int(limit):
            raise AuditError(f"{key} ({value}) is longer than models.{name} can attend to ({limit} positions); lower it")


def preflight(cfg, local: bool = True, hub: bool = False) -> dict:
    """Every check that needs no model loaded, across the whole config; all failures are
    raised together (one line each). Returns each model's shape. `local`: jobs run on this
    machine (not a cluster), so the device is checked here too. `hub`: say what would be
    downloaded and cannot be (the process the user started; not every cluster job)."""
    problems = Problems()
    for line in cross_field_problems(cfg):
        problems.add(line)
    if hub:
        from .hub import hub_problems

        for line in hub_problems(cfg):
            problems.add(line)
    problems.check(check_results, cfg.results)
    problems.check(check_device, cfg.device, local)
    problems.check(check_corpus, cfg)
    for i in range(len(cfg.corpora)):
        problems.check(check_audit_corpus, cfg, i)
    watched = problems.check(config_watchlist, cfg)  # read once, checked against each model
    shapes = {}
    for name, m in cfg.models.items():
        shape = check_model(cfg, name, m, problems)
        shapes[name] = shape or guess_shape(m.path)
        if watched:
            problems.check(check_watchlist, cfg, m, watched)
    problems.raise_any()
    return shapes
