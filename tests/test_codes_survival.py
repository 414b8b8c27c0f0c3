"""Sparse SAE codes, feature survival and feature statistics against independent references.

References: SAELens's own `encode` (codes), scipy.stats.pearsonr on the dense vectors (survival),
numpy on dense arrays (statistics), parquet shards read with pyarrow directly (activations).
The survival data are synthetic sparse codes with many zeros, written by a small writer below
that mimics the file format of featureaudit.sae.codes.encode_activations.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from scipy import stats

from featureaudit.errors import AuditError
from featureaudit.integrity import seal_dir, seal_file
from featureaudit.measure.fp_statistics import feature_statistics
from featureaudit.model.capture import write_activation_shards
from featureaudit.sae.codes import Codes, encode_activations, sparse_encode
from featureaudit.sae.frozen import check_width, load_sae
from featureaudit.measure.survival import (
    STATUSES,
    PearsonAccumulator,
    Thresholds,
    classify,
    fractions,
    survival_table,
)

D_IN, D_SAE, K = 64, 256, 8
HOOK = "blocks.1.hook_resid_post"


# ----------------------------------------------------------------------------- helpers


def write_sae(kind: str, d_in=D_IN, d_sae=D_SAE, seed=0):
    """A SAELens SAE with random weights *and* biases (so b_dec/b_enc handling matters)."""
    from sae_lens import StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    meta = SAEMetadata(hook_name=HOOK, model_name="tiny-llama", context_size=17, prepend_bos=True)
    if kind == "topk":
        sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=K, dtype="float32", device="cpu", metadata=meta))
    else:
        sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae, dtype="float32", device="cpu", metadata=meta))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, d_sae, generator=g) / d_in**0.5)
        sae.W_dec.copy_(torch.randn(d_sae, d_in, generator=g) / d_sae**0.5)
        sae.b_enc.copy_(0.3 * torch.randn(d_sae, generator=g) - (0.5 if kind == "standard" else 0.0))
        sae.b_dec.copy_(0.1 * torch.randn(d_in, generator=g))
    return sae.eval()


def read_shards_directly(act_dir):
    """(tokens, acts) per shard, read with pyarrow only (not featureaudit.model.capture)."""
    out = []
    for p in sorted(act_dir.glob("shard-*.parquet")):
        t = pq.read_table(p)
        col = t.column("act").combine_chunks()
        acts = np.asarray(col.values.to_numpy(), dtype=np.float32).reshape(len(t), -1)
        out.append((t.column("token").to_numpy(), acts))
    return out


def write_codes(path, dense_groups, tokens_groups, d_sae, page_checksum=True):
    """Write dense per-group code matrices in the sparse codes format: one row per nonzero,
    sorted by (token, feature), one row group per group, file metadata d_sae/n_tokens/group_tokens."""
    schema = pa.schema([("token", pa.int64()), ("feature", pa.int32()), ("value", pa.float32())])
    with pq.ParquetWriter(path, schema, write_page_checksum=page_checksum) as w:
        for dense, toks in zip(dense_groups, tokens_groups):
            rows, feats = np.nonzero(dense)  # row-major: by token, then feature
            table = pa.table(
                {"token": toks[rows].astype(np.int64), "feature": feats.astype(np.int32),
                 "value": dense[rows, feats].astype(np.float32)},
                schema=schema,
            )
            w.write_table(table, row_group_size=max(len(rows), 1))
        w.add_key_value_metadata({
            "d_sae": str(d_sae),
            "n_tokens": str(sum(len(t) for t in tokens_groups)),
            "group_tokens": json.dumps([len(t) for t in tokens_groups]),
        })
    seal_file(path, path)  # its checksum, as the workflow records it (readers check it)
    return path


def densify(codes: Codes, token_order: np.ndarray) -> np.ndarray:
    """Dense (tokens, d_sae) matrix from a codes file, rows in `token_order`."""
    row = {int(t): i for i, t in enumerate(token_order)}
    dense = np.zeros((len(token_order), codes.d_sae), np.float32)
    for t, f, v in codes.groups():
        dense[[row[int(x)] for x in t], f] = v
    return dense


def first_line_only(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert msg and "\n" not in msg, f"not a one-line message: {msg!r}"
    return msg


# ----------------------------------------------------------------------------- SAEs and encoding


@pytest.fixture(scope="module")
def saes(tmp_path_factory):
    """{kind: (original SAE, SAE reloaded by featureaudit.sae.frozen.load_sae)}"""
    out = {}
    for kind in ("topk", "standard"):
        sae = write_sae(kind)
        d = tmp_path_factory.mktemp(f"sae-{kind}") / "sae"
        sae.save_model(str(d))
        seal_dir(d)  # the manifest the sae rule writes (load_sae checks it)
        out[kind] = (sae, load_sae(d))
    return out


@pytest.fixture(scope="module")
def acts_dir(tmp_path_factory):
    """Activation shards of a tiny Llama at HOOK: 6 sequences x 16 tokens (BOS excluded), 2 shards."""
    from transformers import AutoModelForCausalLM

    from tiny_models import VOCAB_SIZE, build_tiny_model

    root = tmp_path_factory.mktemp("llama-acts")
    model = AutoModelForCausalLM.from_pretrained(build_tiny_model("llama", root / "model"), dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(3, VOCAB_SIZE, (6, 17), generator=g)
    ids[:, 0] = 1
    n = write_activation_shards(model, ids, HOOK, root / "acts", batch_size=2, shard_tokens=40, progress=False)
    assert n == 6 * 16
    return root / "acts"


@pytest.mark.parametrize("kind", ["topk", "standard"])
def test_load_sae_encodes_like_the_original(saes, kind):
    from sae_lens import StandardSAE, TopKSAE

    original, loaded = saes[kind]
    assert type(loaded) is type(original) and type(original) is (TopKSAE if kind == "topk" else StandardSAE)
    assert int(loaded.cfg.d_in) == D_IN and int(loaded.cfg.d_sae) == D_SAE
    x = torch.randn(300, D_IN, generator=torch.Generator().manual_seed(1)) * 2
    with torch.no_grad():
        a, b = original.encode(x), loaded.encode(x)
    assert torch.equal(a != 0, b != 0)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    nnz = (a != 0).sum(1)
    assert int(nnz.min()) > 0
    if kind == "topk":
        assert int(nnz.max()) <= K
    for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
        assert torch.equal(getattr(original, name), getattr(loaded, name))
    assert not any(p.requires_grad for p in loaded.parameters())


def test_load_sae_bad_folder(tmp_path):
    with pytest.raises(AuditError) as e:
        load_sae(tmp_path)
    first_line_only(e)
    (tmp_path / "cfg.json").write_text("{not json")
    with pytest.raises(AuditError) as e:
        load_sae(tmp_path)
    first_line_only(e)


@pytest.mark.parametrize("kind", ["topk", "standard"])
def test_encode_activations_equals_saelens_encode(saes, acts_dir, kind, tmp_path):
    original, loaded = saes[kind]
    shards = read_shards_directly(acts_dir)
    assert len(shards) == 2
    tokens = np.concatenate([t for t, _ in shards])
    acts = np.concatenate([a for _, a in shards])
    assert acts.shape == (96, D_IN)
    with torch.no_grad():
        ref = original.encode(torch.from_numpy(acts)).numpy()  # SAELens, one batch

    out = tmp_path / "codes.parquet"
    nnz = encode_activations(loaded, acts_dir, out, batch=7, progress=False)  # batches straddle shards' rows
    assert nnz == int((ref != 0).sum())

    codes = Codes(out)
    assert codes.d_sae == D_SAE and codes.n_tokens == len(tokens)
    assert codes.group_tokens == [len(t) for t, _ in shards]
    # sparse on disk: exactly one row per nonzero, three narrow columns, never a dense matrix
    f = pq.ParquetFile(out)
    assert f.metadata.num_rows == nnz
    assert f.schema_arrow.names == ["token", "feature", "value"]
    assert f.num_row_groups == len(shards)
    for i, ((t, feat, v), (shard_tok, _)) in enumerate(zip(codes.groups(), shards)):
        assert np.isin(t, shard_tok).all(), f"group {i} holds tokens of another shard"
        key = t * D_SAE + feat
        assert (np.diff(key) > 0).all(), "rows not sorted by (token, feature) or duplicated"
        assert (v != 0).all()
    got = densify(codes, tokens)  # batches of 7 rows against one batch of 96: other kernels
    assert (np.abs(got - ref) <= encode_rounding_bound(original, acts)).all(), np.abs(got - ref).max()


def encode_rounding_bound(sae, x: np.ndarray) -> np.ndarray:
    """How far two float32 encodings of `x` may differ, per entry. Batches of different sizes
    may take different kernels (AVX2 vs AVX-512, blocked or not), which sum the D_IN products of
    a pre-activation in another order; such a sum's rounding is bounded by
    D_IN * eps * sum|x_i w_i| (+ the bias)."""
    w_enc = sae.W_enc.detach().numpy().astype(np.float64)
    x_in = np.abs(x.astype(np.float64)) + np.abs(sae.b_dec.detach().numpy())  # with or without b_dec applied
    return D_IN * np.finfo(np.float32).eps * (x_in @ np.abs(w_enc) + np.abs(sae.b_enc.detach().numpy()))


def test_sparse_encode_batches_agree(saes):
    sae, _ = saes["topk"]
    x = np.random.default_rng(3).normal(size=(50, D_IN)).astype(np.float32)
    toks = np.arange(50, dtype=np.int64) * 5 + 2
    with torch.no_grad():
        ref = sae.encode(torch.from_numpy(x)).numpy()
    bound = encode_rounding_bound(sae, x)
    for batch in (1, 7, 50, 4096):
        t, f, v = sparse_encode(sae, x, toks, batch=batch)
        dense = np.zeros_like(ref)
        dense[(t - 2) // 5, f] = v
        assert len(t) == int((ref != 0).sum())
        assert (np.abs(dense - ref) <= bound).all(), np.abs(dense - ref).max()


def test_check_width_names_both_widths(saes):
    sae, _ = saes["topk"]
    check_width(sae.cfg.d_in, D_IN, HOOK)  # matching width: fine
    with pytest.raises(AuditError) as e:
        check_width(sae.cfg.d_in, 576, HOOK)
    msg = first_line_only(e)
    assert "64" in msg and "576" in msg


def test_encode_activations_rejects_wrong_width(acts_dir, tmp_path):
    narrow = write_sae("topk", d_in=32, d_sae=64)
    out = tmp_path / "codes.parquet"
    with pytest.raises(AuditError) as e:
        encode_activations(narrow, acts_dir, out, progress=False)
    msg = first_line_only(e)
    assert "32" in msg and "64" in msg
    assert not out.exists()  # no half-written file


# ----------------------------------------------------------------------------- corrupt files


@pytest.fixture(scope="module")
def good_codes(saes, acts_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("good-codes") / "codes.parquet"
    encode_activations(saes["standard"][1], acts_dir, out, progress=False)  # ~thousands of rows
    return out


def read_all(path):
    c = Codes(path)
    return [tuple(x.copy() for x in g) for g in c.groups()]


def corruptions(path: str):
    size = len(open(path, "rb").read())
    f = pq.ParquetFile(path)
    col = f.metadata.row_group(0).column(2)  # "value" of the first group
    start = col.data_page_offset
    yield "truncate-half", lambda b: b[: size // 2]
    yield "truncate-tail", lambda b: b[:-10]
    yield "empty", lambda b: b""
    yield "footer-magic", lambda b: b[:-4] + b"XXXX"
    yield "footer-length", lambda b: b[:-8] + b"\xff\xff\xff\x7f" + b[-4:]
    for name, off in (("value-page", start + col.total_compressed_size // 2), ("value-page-start", start + 40)):
        yield name, lambda b, off=off: b[:off] + bytes(x ^ 0x5A for x in b[off : off + 16]) + b[off + 16 :]
    mid = f.metadata.row_group(1).column(0).data_page_offset + 30
    yield "second-group-token", lambda b: b[:mid] + bytes(x ^ 0xFF for x in b[mid : mid + 8]) + b[mid + 8 :]


def test_good_codes_read(good_codes):
    groups = read_all(good_codes)
    assert len(groups) == 2 and sum(len(g[0]) for g in groups) > 1000


@pytest.mark.parametrize("which", ["truncate-half", "truncate-tail", "empty", "footer-magic", "footer-length",
                                   "value-page", "value-page-start", "second-group-token"])
def test_corrupt_codes_raise_one_line(good_codes, tmp_path, which):
    mutate = dict(corruptions(str(good_codes)))[which]
    bad = tmp_path / "codes.parquet"
    original = good_codes.read_bytes()
    bad.write_bytes(mutate(original))
    assert bad.read_bytes() != original
    with pytest.raises(AuditError) as e:
        read_all(bad)
    msg = first_line_only(e)
    assert str(bad) in msg
    # and through the survival pass
    with pytest.raises(AuditError):
        survival_table(good_codes, bad)


def test_parquet_without_codes_metadata_raises(tmp_path):
    p = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"token": [0, 1], "feature": [0, 0], "value": [1.0, 2.0]}), p)
    seal_file(p, p)
    with pytest.raises(AuditError) as e:
        Codes(p)
    first_line_only(e)


# ----------------------------------------------------------------------------- survival

N_TOK, D = 5000, 50
GROUPS = [1500, 2000, 1500]


def synthetic_codes():
    """Dense FP (X) and variant (Y) codes, float32, ~5% density, with every edge case.

    features  0-14  Y = X (1 + 5% noise)                 -> survived
             15-24  Y = |X + noise|, 30% of firings lost  -> blurred-ish
             25-34  Y independent of X                   -> damaged (r ~ 0)
             35     Y never fires                        -> damaged (NaN r)
             36     X constant 0.3 on every token        -> NaN r (scipy: constant input)
             37     Y constant 0.7 on every token        -> NaN r
             38-40  X fires on 3 tokens, Y on ~5%        -> born, FP-inactive
             41     fires in neither                     -> inactive
             42     X fires on exactly 10 tokens, Y = X  -> active at the boundary, r = 1
             43     X on 9 tokens, Y on exactly 10       -> born at the boundary
             44-46  Y = -X                               -> r = -1
             47-49  Y = X on half of X's firings only    -> r ~ 0.7
    """
    rng = np.random.default_rng(0)
    fire = rng.random((N_TOK, D)) < 0.05
    X = np.where(fire, rng.exponential(1.0, (N_TOK, D)) + 0.1, 0.0)
    Y = np.zeros_like(X)
    Y[:, :15] = X[:, :15] * (1 + 0.05 * rng.normal(size=(N_TOK, 15)))
    keep = rng.random((N_TOK, 10)) < 0.7
    Y[:, 15:25] = np.where(fire[:, 15:25] & keep, np.abs(X[:, 15:25] + 0.6 * rng.normal(size=(N_TOK, 10))), 0)
    Y[:, 25:35] = np.where(rng.random((N_TOK, 10)) < 0.05, rng.exponential(1.0, (N_TOK, 10)) + 0.1, 0)
    X[:, 36] = 0.3
    Y[:, 36] = np.where(fire[:, 36], rng.exponential(1.0, N_TOK), 0)
    Y[:, 37] = 0.7
    X[:, 38:41] = 0
    X[rng.choice(N_TOK, 3, replace=False), 38:41] = 1.5
    Y[:, 38:41] = np.where(rng.random((N_TOK, 3)) < 0.05, 2.0 + rng.random((N_TOK, 3)), 0)
    X[:, 41] = 0
    X[:, 42] = 0
    X[rng.choice(N_TOK, 10, replace=False), 42] = rng.random(10) + 0.5
    Y[:, 42] = X[:, 42]
    X[:, 43] = 0
    X[rng.choice(N_TOK, 9, replace=False), 43] = 1.0
    Y[rng.choice(N_TOK, 10, replace=False), 43] = 1.0
    Y[:, 44:47] = -X[:, 44:47]
    half = rng.random((N_TOK, 3)) < 0.5
    Y[:, 47:50] = np.where(half, X[:, 47:50], 0)
    X, Y = X.astype(np.float32), Y.astype(np.float32)
    tokens = np.arange(N_TOK, dtype=np.int64) * 3 + 7  # global token ids need not be contiguous
    return X, Y, tokens


def split(a, sizes):
    return np.split(a, np.cumsum(sizes)[:-1])


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    X, Y, tokens = synthetic_codes()
    d = tmp_path_factory.mktemp("synth")
    fp = write_codes(d / "fp.parquet", split(X, GROUPS), split(tokens, GROUPS), D)
    var = write_codes(d / "var.parquet", split(Y, GROUPS), split(tokens, GROUPS), D)
    return X, Y, tokens, fp, var


def scipy_r(X, Y):
    r = np.empty(X.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConstantInputWarning
        for j in range(X.shape[1]):
            x, y = X[:, j].astype(np.float64), Y[:, j].astype(np.float64)
            r[j] = np.nan if x.std() == 0 or y.std() == 0 else stats.pearsonr(x, y).statistic
    return r


def expected_status(r, nx, ny, th: Thresholds):
    """The classification rule written out per feature."""
    out = []
    for rj, a, b in zip(r, nx, ny):
        if a < th.active_min_tokens:
            out.append("inactive")
        elif b == 0 or np.isnan(rj) or rj < th.blurred_r:
            out.append("damaged")
        elif rj >= th.survived_r:
            out.append("survived")
        else:
            out.append("blurred")
    return np.array(out)


def test_synthetic_codes_are_sparse_files(synth):
    X, Y, _, fp, var = synth
    for dense, path in ((X, fp), (Y, var)):
        assert pq.ParquetFile(path).metadata.num_rows == int((dense != 0).sum())
    # X has ~5% density plus one always-on feature
    assert (X != 0).mean() < 0.08


def test_survival_r_matches_scipy(synth):
    X, Y, _, fp, var = synth
    table = survival_table(fp, var)
    ref = scipy_r(X, Y)
    assert list(table.feature) == list(range(D))
    np.testing.assert_allclose(table.r.to_numpy(), ref, rtol=0, atol=1e-9, equal_nan=True)
    assert np.isnan(table.r[[35, 36, 37, 41]]).all()
    assert np.isfinite(table.r.drop([35, 36, 37, 41])).all()
    np.testing.assert_allclose(table.r[[42]], 1.0, atol=1e-12)
    np.testing.assert_allclose(table.r[[44, 45, 46]], -1.0, atol=1e-12)
    assert (table.fp_active_tokens.to_numpy() == (X != 0).sum(0)).all()
    assert (table.variant_active_tokens.to_numpy() == (Y != 0).sum(0)).all()


def test_constant_feature_r_is_nan_with_many_tokens(tmp_path):
    """A feature that fires on every token with the same value has zero variance: r must be NaN,
    not the ratio of two rounding errors. Checked over several values and token counts."""
    for n, value in ((5000, 0.3), (12345, 0.1), (65536, 1.7), (3, 0.3)):
        X = np.full((n, 2), value, np.float32)
        X[:, 1] = np.arange(n) % 7
        Y = np.random.default_rng(n).random((n, 2)).astype(np.float32)
        toks = np.arange(n, dtype=np.int64)
        fp = write_codes(tmp_path / f"fp{n}.parquet", [X], [toks], 2)
        var = write_codes(tmp_path / f"var{n}.parquet", [Y], [toks], 2)
        r = survival_table(fp, var).r.to_numpy()
        assert np.isnan(r[0]), (n, value, r[0])
        np.testing.assert_allclose(r[1], scipy_r(X, Y)[1], atol=1e-9)


@pytest.mark.parametrize(
    "th", [Thresholds(), Thresholds(active_min_tokens=5, survived_r=0.95, blurred_r=0.2),
           Thresholds(active_min_tokens=1, survived_r=0.5, blurred_r=-0.5)],
)
def test_survival_statuses_born_fractions(synth, th):
    X, Y, _, fp, var = synth
    table = survival_table(fp, var, th)
    nx, ny = (X != 0).sum(0), (Y != 0).sum(0)
    want = expected_status(scipy_r(X, Y), nx, ny, th)
    assert list(table.status) == list(want)
    assert set(table.status) <= set(STATUSES)
    born = (nx < th.active_min_tokens) & (ny >= th.active_min_tokens)
    assert (table.born.to_numpy() == born).all()
    fr = fractions(table)
    n_active = int((nx >= th.active_min_tokens).sum())
    assert fr["n_active"] == n_active and fr["n_born"] == int(born.sum())
    for s in ("survived", "blurred", "damaged"):
        assert fr[f"frac_{s}"] == pytest.approx((want == s).sum() / n_active, abs=1e-12)
    assert sum(fr[f"frac_{s}"] for s in ("survived", "blurred", "damaged")) == pytest.approx(1.0)


def test_default_thresholds_on_synthetic_features(synth):
    """Hand-checked expectations per feature group (so the data really exercise every branch)."""
    _, _, _, fp, var = synth
    s = survival_table(fp, var).set_index("feature").status
    assert (s[0:14] == "survived").all()
    assert (s[25:34] == "damaged").all()
    assert s[35] == "damaged" and s[36] == "damaged"  # variant never fires; FP constant (NaN r)
    assert (s[38:40] == "inactive").all() and s[41] == "inactive" and s[43] == "inactive"
    assert s[42] == "survived"  # exactly active_min_tokens FP firings counts as active
    assert (s[44:46] == "damaged").all()
    assert (s[47:49] == "blurred").all()
    born = survival_table(fp, var).set_index("feature").born
    assert set(np.flatnonzero(born.to_numpy())) == {38, 39, 40, 43}


def test_classify_boundaries():
    th = Thresholds(active_min_tokens=10, survived_r=0.9, blurred_r=0.5)
    r = np.array([0.9, np.nextafter(0.9, 0), 0.5, np.nextafter(0.5, 0), np.nan, 1.0, 0.99, 0.95, -1.0])
    nx = np.array([10, 10, 10, 10, 10, 10, 9, 100, 100])
    ny = np.array([5, 5, 5, 5, 5, 5, 5, 0, 5])
    got = classify(r, nx, ny, th)
    assert list(got) == ["survived", "blurred", "blurred", "damaged", "damaged", "survived", "inactive",
                         "damaged", "damaged"]
    assert list(got) == list(expected_status(r, nx, ny, th))


def test_fractions_with_no_active_features():
    table = pd.DataFrame({"feature": [0, 1], "status": ["inactive", "inactive"], "born": [False, True]})
    fr = fractions(table)
    assert fr["n_active"] == 0 and fr["n_born"] == 1 and np.isnan(fr["frac_survived"])


@pytest.mark.parametrize("bad", [dict(blurred_r=0.95, survived_r=0.9), dict(survived_r=1.5),
                                 dict(blurred_r=-1.5), dict(active_min_tokens=0)])
def test_bad_thresholds_raise(bad):
    with pytest.raises(AuditError):
        Thresholds(**bad)


def chunks_of(dense, tokens, bounds):
    for a, b in zip(bounds[:-1], bounds[1:]):
        rows, feats = np.nonzero(dense[a:b])
        yield tokens[a:b][rows], feats.astype(np.int32), dense[a:b][rows, feats]


def test_accumulator_chunking_and_sums(synth):
    X, Y, tokens, _, _ = synth
    accs = {}
    for name, bounds in {"one": [0, N_TOK], "groups": [0, 1500, 3500, N_TOK],
                         "many": [0, 1, 2, 700, 701, 2222, 4000, 4999, N_TOK]}.items():
        acc = PearsonAccumulator(D)
        for cx, cy in zip(chunks_of(X, tokens, bounds), chunks_of(Y, tokens, bounds)):
            acc.add(*cx, *cy)
        accs[name] = acc
    X64, Y64 = X.astype(np.float64), Y.astype(np.float64)
    one = accs["one"]
    # the sums themselves, against numpy on the dense matrices
    assert (one.totals()["nx"] == (X != 0).sum(0)).all() and (one.totals()["ny"] == (Y != 0).sum(0)).all()
    for got, want in ((one.totals()["sx"], X64.sum(0)), (one.totals()["sy"], Y64.sum(0)), (one.totals()["sxx"], (X64**2).sum(0)),
                      (one.totals()["syy"], (Y64**2).sum(0)), (one.totals()["sxy"], (X64 * Y64).sum(0))):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    for other in ("groups", "many"):
        acc = accs[other]
        assert (acc.totals()["nx"] == one.totals()["nx"]).all() and (acc.totals()["ny"] == one.totals()["ny"]).all()
        for k in ("sx", "sy", "sxx", "syy", "sxy"):
            np.testing.assert_allclose(acc.totals()[k], one.totals()[k], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(acc.pearson(N_TOK), one.pearson(N_TOK), rtol=0, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(one.pearson(N_TOK), scipy_r(X, Y), rtol=0, atol=1e-9, equal_nan=True)


def test_accumulator_row_order_does_not_matter(synth):
    """Rows shuffled within each chunk (not the on-disk order) give the same sums: Σxy must
    still pair x and y by (token, feature), not by position."""
    X, Y, tokens, _, _ = synth
    rng = np.random.default_rng(11)
    bounds = [0, 1500, 3500, N_TOK]
    ordered, shuffled = PearsonAccumulator(D), PearsonAccumulator(D)
    for cx, cy in zip(chunks_of(X, tokens, bounds), chunks_of(Y, tokens, bounds)):
        ordered.add(*cx, *cy)
        px, py = rng.permutation(len(cx[0])), rng.permutation(len(cy[0]))
        shuffled.add(*(a[px] for a in cx), *(a[py] for a in cy))
    np.testing.assert_allclose(shuffled.totals()["sxy"], (X.astype(np.float64) * Y).sum(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(shuffled.pearson(N_TOK), ordered.pearson(N_TOK), rtol=0, atol=1e-12, equal_nan=True)


def test_accumulator_pairs_edge_keys():
    """Matches at the first/last key, y keys beyond x's range, one side empty in a chunk."""
    acc = PearsonAccumulator(3)
    tx, fx, vx = np.array([0, 0, 5]), np.array([0, 2, 1], np.int32), np.array([1.0, 2.0, 3.0], np.float32)
    ty, fy, vy = np.array([0, 5, 9]), np.array([0, 1, 2], np.int32), np.array([10.0, 20.0, 30.0], np.float32)
    acc.add(tx, fx, vx, ty, fy, vy)
    assert list(acc.totals()["sxy"]) == [10.0, 60.0, 0.0]
    acc.add(np.array([12]), np.array([2], np.int32), np.array([4.0], np.float32),
            np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32))
    acc.add(np.array([13, 14]), np.array([2, 2], np.int32), np.array([1.0, 1.0], np.float32),
            np.array([14, 13]), np.array([2, 2], np.int32), np.array([5.0, 7.0], np.float32))
    assert list(acc.totals()["sxy"]) == [10.0, 60.0, 12.0]


def test_accumulator_empty_chunks():
    acc = PearsonAccumulator(4)
    e64, e32, ef = np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32)
    acc.add(e64, e32, ef, e64, e32, ef)
    acc.add(np.array([0, 1]), np.array([1, 1], np.int32), np.array([1.0, 2.0], np.float32), e64, e32, ef)
    assert list(acc.totals()["nx"]) == [0, 2, 0, 0] and list(acc.totals()["ny"]) == [0, 0, 0, 0] and (acc.totals()["sxy"] == 0).all()


def test_misaligned_codes_raise(synth, tmp_path):
    X, Y, tokens, fp, _ = synth
    other_groups = [2000, 1500, 1500]
    shifted = write_codes(tmp_path / "shifted.parquet", split(Y, other_groups), split(tokens, other_groups), D)
    with pytest.raises(AuditError) as e:
        survival_table(fp, shifted)
    first_line_only(e)
    fewer = write_codes(tmp_path / "fewer.parquet", split(Y, [1500, 3500]), split(tokens, [1500, 3500]), D)
    with pytest.raises(AuditError):
        survival_table(fp, fewer)
    wider = np.concatenate([Y, np.zeros((N_TOK, 1), np.float32)], axis=1)
    wide = write_codes(tmp_path / "wide.parquet", split(wider, GROUPS), split(tokens, GROUPS), D + 1)
    with pytest.raises(AuditError):
        survival_table(fp, wide)
    short = write_codes(tmp_path / "short.parquet", split(Y[:4000], [1500, 2000, 500]),
                        split(tokens[:4000], [1500, 2000, 500]), D)
    with pytest.raises(AuditError):
        survival_table(fp, short)


def test_survival_same_codes_is_all_survived(synth):
    X, _, _, fp, _ = synth
    t = survival_table(fp, fp)
    active = (X != 0).sum(0) >= 10
    const = (X == X[:1]).all(0)  # feature 36 (always 0.3): r undefined
    assert (t.status[active & ~const] == "survived").all()
    np.testing.assert_allclose(t.r[active & ~const], 1.0, atol=1e-12)
    assert list(np.flatnonzero(active & const)) == [36]
    assert np.isnan(t.r[const]).all() and t.status[36] == "damaged"


# ----------------------------------------------------------------------------- feature statistics


def test_feature_statistics_match_numpy(synth):
    X, _, _, fp, _ = synth
    sae = write_sae("standard", d_in=D_IN, d_sae=D, seed=4)
    st = feature_statistics(fp, sae)
    X64 = X.astype(np.float64)
    count = (X != 0).sum(0)
    assert list(st.feature) == list(range(D))
    np.testing.assert_allclose(st.peak_activation, X64.max(0), rtol=1e-12, atol=0)
    mean_active = np.array([X64[X[:, j] != 0, j].mean() if count[j] else 0.0 for j in range(D)])
    np.testing.assert_allclose(st.mean_active_activation, mean_active, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(st.firing_frequency, count / N_TOK, rtol=0, atol=1e-15)
    # std over all tokens, zeros included (population std); E[x^2] - E[x]^2 loses ~sqrt(eps) on a constant
    np.testing.assert_allclose(st.std_activation, X64.std(0), rtol=1e-7, atol=1e-7)
    assert st.std_activation[41] == 0 and st.peak_activation[41] == 0 and st.mean_active_activation[41] == 0
    w_dec = sae.W_dec.detach().numpy().astype(np.float64)
    w_enc = sae.W_enc.detach().numpy().astype(np.float64)
    np.testing.assert_allclose(st.decoder_norm, np.linalg.norm(w_dec, axis=1), rtol=1e-6)
    np.testing.assert_allclose(st.encoder_norm, np.linalg.norm(w_enc, axis=0), rtol=1e-6)
    assert st.decoder_norm.std() > 0  # random rows: a per-column norm would not match by chance


@pytest.mark.parametrize("kind,dtype", [("standard", "float32"), ("topk", "float32"), ("topk", "bfloat16")])
def test_saved_weight_norms_equal_saelens_loaded_sae(tmp_path, kind, dtype):
    """The fp_statistics rule reads the norms from the saved weights file (no SAELens import);
    they must be those of the SAE SAELens loads from that folder."""
    from sae_lens import SAE
    from sae_lens.constants import SAE_WEIGHTS_FILENAME

    from featureaudit.integrity import seal_dir
    from featureaudit.measure.fp_statistics import saved_weight_norms
    from featureaudit.sae.frozen import SAE_WEIGHTS

    assert SAE_WEIGHTS == SAE_WEIGHTS_FILENAME
    sae = write_sae(kind, d_in=D_IN, d_sae=D, seed=7)
    if dtype == "bfloat16":  # saved as SAELens saves a bfloat16 SAE: numpy cannot read the file
        sae.cfg.dtype = dtype
        sae = sae.to(torch.bfloat16)
    sae.save_model(str(tmp_path / "sae"))
    seal_dir(tmp_path / "sae")  # the workflow's folders carry a manifest, checked on reading
    loaded = SAE.load_from_disk(str(tmp_path / "sae"), device="cpu")
    assert loaded.W_dec.dtype == getattr(torch, dtype)
    dec, enc = saved_weight_norms(tmp_path / "sae")
    w_dec = loaded.W_dec.detach().double().numpy()
    w_enc = loaded.W_enc.detach().double().numpy()
    # the saved weights exactly (bfloat16 and float32 widen to float64 without rounding), norms
    # summed in float64: a few float64 ulps apart at most
    np.testing.assert_allclose(dec, np.linalg.norm(w_dec, axis=1), rtol=1e-12)
    np.testing.assert_allclose(enc, np.linalg.norm(w_enc, axis=0), rtol=1e-12)
    assert dec.shape == (D,) and enc.shape == (D,) and not np.allclose(dec, enc)
