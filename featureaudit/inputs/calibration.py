"""Calibration tokens: the split calibrated compressors see (llama.cpp's importance matrix,
GPTQ, AWQ, SmoothQuant, SparseGPT, Wanda), one set for all of them.

Drawn from the same corpus and shuffle as tokens.parquet, after its three splits, so it is
disjoint from SAE-training, audit and held-out tokens. It is a file of its own
(calibration.parquet, same columns) rather than a fourth split inside tokens.parquet: adding a
calibrated producer to a finished audit then leaves tokens.parquet, and everything computed
from it, as it is. `write_calibration` is the body of the `calibration_tokens` rule.
"""

from __future__ import annotations

import numpy as np

from ..config import CorpusConfig, ModelSource, TokenBudget
from ..model.reference import load_tokenizer
from ..progress import log
from .tokens import corpus_text, read_tokens, tokenize_to_sequences, write_token_table

SPLIT = "calibration"


def calibration_sequences(text: str, tokenizer, budget: TokenBudget, n_tokens: int) -> np.ndarray:
    n_seq = -(-n_tokens // budget.context_length)
    return tokenize_to_sequences(text, tokenizer, budget, after={SPLIT: n_seq})[SPLIT]


def write_calibration(source: ModelSource, corpus: CorpusConfig, budget: TokenBudget, n_tokens: int, out_path) -> None:
    tokenizer = load_tokenizer(source.source, source.path, source.name)
    seqs = calibration_sequences(corpus_text(corpus, budget), tokenizer, budget, n_tokens)
    write_token_table({SPLIT: seqs}, out_path, splits_order=(SPLIT,))
    log(f"calibration: {seqs.size} tokens in {len(seqs)} sequences")


def read_calibration(path):
    """(n_seq, context_length) int64 calibration token ids."""
    return read_tokens(path, SPLIT)


def calibration_text(path, tokenizer) -> str:
    """The calibration sequences as text (BOS dropped), one per paragraph: what llama-imatrix
    reads (it tokenizes text itself, with the same tokenizer from the GGUF)."""
    ids = read_calibration(path).tolist()
    special = set(tokenizer.all_special_ids)
    return "\n\n".join(tokenizer.decode([t for t in seq if t not in special]) for seq in ids)
