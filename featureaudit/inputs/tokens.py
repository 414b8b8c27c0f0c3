"""One fixed token set per model: every variant reads the same token ids.

The corpus is tokenized once, cut into sequences of `context_length` tokens (BOS first when
`prepend_bos`), shuffled with a seed, and split into three disjoint parts:
  sae_train  FP activations the SAE is trained on (only when the workflow trains one)
  audit      the tokens on which FP and variant SAE codes are compared (survival)
  heldout    the tokens for task metrics (perplexity, KL), never seen by SAE training
Stored as parquet: one row per sequence, columns `input_ids` (list<int64>) and `split`.
`write_tokens` is the body of the `tokens` rule.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from ..config import AuditCorpus, CorpusConfig, ModelSource, TokenBudget
from ..errors import AuditError
from ..io import read_table, write_table
from ..model.reference import load_tokenizer
from ..progress import log
from .corpus import cpython_text, packages_text, pydoc_text  # noqa: F401 (pydoc_text: re-exported)

SPLITS = ("sae_train", "audit", "heldout")


def text_files(paths: list[str]) -> str:
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise AuditError(f"corpus.paths: {missing[0]} does not exist; list readable text files")
    return "\n\n".join(Path(p).read_text(encoding="utf-8", errors="replace") for p in paths)


def hf_dataset_text(name: str, split: str, column: str, max_chars: int) -> str:
    """Text from a Hugging Face dataset (streamed; needs hub access)."""
    try:
        import datasets

        ds = datasets.load_dataset(name, split=split, streaming=True)
        parts, total = [], 0
        for row in ds:
            parts.append(row[column])
            total += len(row[column])
            if total >= max_chars:
                break
    except KeyError:
        raise AuditError(f"corpus.column: dataset {name!r} has no column {column!r}") from None
    except Exception as e:  # network, auth, missing dataset: all end the same way for the user
        raise AuditError(
            f"could not load dataset {name!r} from the Hugging Face hub ({type(e).__name__}); "
            "download it where you have access and set corpus.source: text_files with corpus.paths"
        ) from None
    return "\n\n".join(parts)


def cut_sequences(text: str, tokenizer, context_length: int, prepend_bos: bool) -> np.ndarray:
    """(n_seq, context_length) int64: the text's tokens in consecutive sequences, BOS first when
    `prepend_bos`; the tail shorter than a sequence is dropped."""
    if not text.strip():
        raise AuditError("the corpus is empty; point corpus.source/paths at text")
    bos = tokenizer.bos_token_id if prepend_bos else None
    if prepend_bos and bos is None:
        raise AuditError("the tokenizer has no BOS token; set corpus.prepend_bos: false")
    body = context_length - (1 if bos is not None else 0)
    ids = np.asarray(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=np.int64)
    n_seq = len(ids) // body
    if n_seq < 1:
        raise AuditError(
            f"the corpus has {len(ids)} tokens, fewer than one sequence of {context_length}; "
            "add text or lower corpus.context_length"
        )
    seqs = ids[: n_seq * body].reshape(n_seq, body)
    if bos is not None:
        seqs = np.concatenate([np.full((n_seq, 1), bos, dtype=np.int64), seqs], axis=1)
    return seqs


def tokenize_to_sequences(text: str, tokenizer, budget: TokenBudget, after: dict[str, int] | None = None
                          ) -> dict[str, np.ndarray]:
    """Cut `text` into sequences and split them; returns split -> (n_seq, context_length) int64.
    `after` adds splits (name -> sequences) drawn from the same shuffle after the budget's
    three, so that they are disjoint from them and leave them as they are."""
    seqs = cut_sequences(text, tokenizer, budget.context_length, budget.prepend_bos)
    n_seq = len(seqs)
    need = {s: budget.sequences(s) for s in SPLITS} | dict(after or {})
    if n_seq < sum(need.values()):
        raise AuditError(
            f"the corpus gives {n_seq} sequences of {budget.context_length} tokens but the token budget needs "
            f"{sum(need.values())}; lower corpus.n_tokens / evaluation.n_tokens or add text"
        )
    order = np.random.default_rng(budget.seed).permutation(n_seq)
    out, start = {}, 0
    for split in need:
        out[split] = seqs[order[start : start + need[split]]]
        start += need[split]
    return out


def write_token_table(splits: dict[str, np.ndarray], path, splits_order: tuple = SPLITS) -> None:
    rows, names = [], []
    for split in splits_order:
        for seq in splits.get(split, []):
            rows.append(seq.tolist())
            names.append(split)
    table = pa.table({"input_ids": pa.array(rows, type=pa.list_(pa.int64())), "split": pa.array(names)})
    write_table(table, path)


def read_tokens(path, split: str) -> torch.Tensor:
    """(n_seq, context_length) int64 token ids of one split."""
    table = read_table(path)
    if "input_ids" not in table.column_names:
        raise AuditError(f"{path} has no input_ids column; delete it and rerun")
    mask = np.asarray(table.column("split").to_pylist()) == split if "split" in table.column_names else None
    rows = table.column("input_ids").to_pylist()
    if mask is not None:
        rows = [r for r, keep in zip(rows, mask) if keep]
    if not rows:
        raise AuditError(f"{path} has no sequences in split {split!r}; check the token budget in the config")
    return torch.tensor(rows, dtype=torch.long)


def corpus_text(corpus: CorpusConfig | AuditCorpus, budget: TokenBudget) -> str:
    if corpus.source == "pydoc":
        return pydoc_text()
    if corpus.source == "cpython":
        return cpython_text()
    if corpus.source == "packages":
        return packages_text()
    if corpus.source == "text_files":
        return text_files(list(corpus.paths))
    total = budget.audit_tokens + budget.heldout_tokens + budget.sae_train_tokens
    # ~4 characters a token in English; twice that leaves room for short documents
    return hf_dataset_text(corpus.name, corpus.split, corpus.column, max_chars=8 * total)


def write_tokens(source: ModelSource, corpus: CorpusConfig, budget: TokenBudget, out_path) -> None:
    """The `tokens` rule: tokenize the corpus with the model's tokenizer and write the splits."""
    tokenizer = load_tokenizer(source.source, source.path, source.name)
    splits = tokenize_to_sequences(corpus_text(corpus, budget), tokenizer, budget)
    write_token_table(splits, out_path)
    log("tokens: " + ", ".join(f"{k} {v.size}" for k, v in splits.items()))


def audit_corpus_budget(corpus: AuditCorpus, context_length: int, prepend_bos: bool) -> TokenBudget:
    """A further corpus's draw: audit tokens only, in the main corpus's sequence shape."""
    return TokenBudget(context_length, corpus.n_tokens, 0, 0, prepend_bos, corpus.seed)


def draw_disjoint(text: str, tokenizer, budget: TokenBudget, taken: set, label: str) -> np.ndarray:
    """`budget.audit_tokens` worth of sequences of `text` (cut and shuffled as tokens.parquet's),
    skipping every sequence in `taken` (the other corpora's and splits' token rows)."""
    n_seq = budget.sequences("audit")
    seqs = cut_sequences(text, tokenizer, budget.context_length, budget.prepend_bos)
    order = np.random.default_rng(budget.seed).permutation(len(seqs))
    fresh = [i for i in order if tuple(seqs[i].tolist()) not in taken][:n_seq]
    if len(fresh) < n_seq:
        raise AuditError(
            f"corpora: {label} gives {len(fresh)} sequences of {budget.context_length} tokens not already in another "
            f"corpus or split, fewer than the {n_seq} its n_tokens ({budget.audit_tokens}) needs; add text or lower it")
    return seqs[np.asarray(fresh, dtype=np.int64)]


def token_rows(path) -> set:
    """Every sequence of a token table, as tuples (what a further corpus must not repeat)."""
    return {tuple(r) for r in read_table(path).column("input_ids").to_pylist()}


def write_corpus_tokens(source: ModelSource, corpus: AuditCorpus, context_length: int, prepend_bos: bool,
                        taken_paths: list, out_path) -> None:
    """The `corpus_tokens` rule: a further corpus's audit tokens, disjoint from every row of
    `taken_paths` (tokens.parquet, calibration.parquet, the corpora before it); the text's
    SHA-256 is stored in the table's metadata and the log, so a changed text is visible."""
    import hashlib

    tokenizer = load_tokenizer(source.source, source.path, source.name)
    budget = audit_corpus_budget(corpus, context_length, prepend_bos)
    text = corpus_text(corpus, budget)
    taken = set().union(*(token_rows(p) for p in taken_paths)) if taken_paths else set()
    seqs = draw_disjoint(text, tokenizer, budget, taken, corpus.label)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    table = pa.table({"input_ids": pa.array(seqs.tolist(), type=pa.list_(pa.int64())),
                      "split": pa.array(["audit"] * len(seqs))})
    write_table(table.replace_schema_metadata({"corpus": corpus.label, "source": corpus.source,
                                               "text_sha256": digest}), out_path)
    log(f"tokens of corpus {corpus.label} ({corpus.source}, {len(text)} characters, sha256 {digest[:16]}): "
        f"audit {seqs.size}, none of them among the {len(taken)} sequences of {len(taken_paths)} other token tables")


def write_scan_tokens(source: ModelSource, corpus: CorpusConfig, n_tokens: int, seed: int, taken_paths: list,
                      out_path) -> None:
    """The `scan_tokens` rule: the sensitivity scan's own split of the main corpus's text (where
    the SAEs were trained), disjoint from every row of `taken_paths` (tokens.parquet's splits,
    calibration.parquet): a mix is chosen on these tokens and judged on the audit and held-out
    ones."""
    tokenizer = load_tokenizer(source.source, source.path, source.name)
    budget = TokenBudget(corpus.context_length, n_tokens, 0, 0, corpus.prepend_bos, seed)
    taken = set().union(*(token_rows(p) for p in taken_paths)) if taken_paths else set()
    seqs = draw_disjoint(corpus_text(corpus, budget), tokenizer, budget, taken, "the scan split (repair.scan_tokens)")
    table = pa.table({"input_ids": pa.array(seqs.tolist(), type=pa.list_(pa.int64())),
                      "split": pa.array(["audit"] * len(seqs))})
    write_table(table.replace_schema_metadata({"split": "scan"}), out_path)
    log(f"scan tokens: {seqs.size}, none of them among the {len(taken)} sequences of {len(taken_paths)} other token tables")
