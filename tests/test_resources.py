"""Resource requests grow with model size, token count and retry attempt."""

import pytest

from featureaudit.pipeline.resources import STAGES, estimate_resources

PYTHIA = dict(n_params=70_000_000, d_model=512)
GEMMA = dict(n_params=2_600_000_000, d_model=2304)
TOKENS = 1 << 20


@pytest.mark.parametrize("stage", STAGES)
def test_shape_and_types(stage):
    r = estimate_resources(**PYTHIA, n_tokens=TOKENS, stage=stage)
    assert set(r) == {"mem_mb", "runtime"}
    assert all(isinstance(v, int) and v > 0 for v in r.values())


@pytest.mark.parametrize("stage", STAGES)
def test_gemma_asks_for_more_than_pythia(stage):
    p = estimate_resources(**PYTHIA, n_tokens=TOKENS, stage=stage)
    g = estimate_resources(**GEMMA, n_tokens=TOKENS, stage=stage)
    assert g["mem_mb"] > p["mem_mb"]
    assert g["runtime"] > p["runtime"]


@pytest.mark.parametrize("stage", STAGES)
def test_gemma_on_gpu_not_less_than_pythia(stage):
    # On a GPU fixed start-up costs dominate the small stages: never less, often equal.
    p = estimate_resources(**PYTHIA, n_tokens=TOKENS, stage=stage, device="cuda")
    g = estimate_resources(**GEMMA, n_tokens=TOKENS, stage=stage, device="cuda")
    assert g["mem_mb"] > p["mem_mb"]
    assert g["runtime"] >= p["runtime"]


@pytest.mark.parametrize("stage", STAGES)
def test_monotonic_in_params_and_tokens(stage):
    prev = None
    for n_params in (10**6, 10**7, 10**8, 10**9, 10**10):
        r = estimate_resources(n_params, 1024, TOKENS, stage)
        if prev:
            assert r["mem_mb"] >= prev["mem_mb"] and r["runtime"] >= prev["runtime"]
        prev = r
    prev = None
    for n_tokens in (10**3, 10**4, 10**5, 10**6, 10**7):
        r = estimate_resources(10**8, 1024, n_tokens, stage)
        if prev:
            assert r["mem_mb"] >= prev["mem_mb"] and r["runtime"] >= prev["runtime"]
        prev = r


def test_model_stages_grow_strictly_with_params():
    for stage in ("variant", "fp_heldout", "pruning_curve", "match_pruning"):
        small = estimate_resources(10**8, 1024, TOKENS, stage)
        big = estimate_resources(10**9, 1024, TOKENS, stage)
        assert big["mem_mb"] > small["mem_mb"] and big["runtime"] > small["runtime"]


def test_activation_stages_grow_strictly_with_tokens():
    for stage in ("variant", "fp_heldout", "train_sae"):
        few = estimate_resources(10**8, 1024, 10**5, stage)
        many = estimate_resources(10**8, 1024, 10**7, stage)
        assert many["mem_mb"] > few["mem_mb"] and many["runtime"] > few["runtime"]


@pytest.mark.parametrize("stage", STAGES)
def test_retry_asks_for_more(stage):
    rs = [estimate_resources(**GEMMA, n_tokens=TOKENS, stage=stage, attempt=a) for a in (1, 2, 3)]
    assert rs[0]["mem_mb"] < rs[1]["mem_mb"] < rs[2]["mem_mb"]
    assert rs[0]["runtime"] < rs[1]["runtime"] < rs[2]["runtime"]


def test_gpu_is_faster_for_model_stages():
    cpu = estimate_resources(**GEMMA, n_tokens=TOKENS, stage="variant")
    gpu = estimate_resources(**GEMMA, n_tokens=TOKENS, stage="variant", device="cuda")
    assert gpu["runtime"] < cpu["runtime"] and gpu["mem_mb"] == cpu["mem_mb"]


def test_explicit_sae_width():
    narrow = estimate_resources(**PYTHIA, n_tokens=TOKENS, stage="variant", d_sae=4096)
    wide = estimate_resources(**PYTHIA, n_tokens=TOKENS, stage="variant", d_sae=32768)
    assert wide["mem_mb"] > narrow["mem_mb"]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(stage="nope"),
        dict(stage="variant", attempt=0),
        dict(stage="variant", device="tpu"),
        dict(stage="variant", n_tokens=0),
    ],
)
def test_rejects_bad_arguments(kwargs):
    args = dict(n_params=10**8, d_model=512, n_tokens=TOKENS) | kwargs
    with pytest.raises(ValueError):
        estimate_resources(**args)
