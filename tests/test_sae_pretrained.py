"""The pretrained-SAE path (``SAE.from_pretrained``) run offline against a local fake of the hub.

Only ``hf_hub_download`` as imported by ``sae_lens.loading.pretrained_sae_loaders`` is replaced:
it is the one function through which both converters used here (``sae_lens`` for
``pythia-70m-deduped-res-sm``, ``gemma_2`` for ``gemma-scope-2b-pt-res-canonical``) fetch files.
Everything else (release directory lookup, converter choice, config defaulting, SAE class
choice, weight loading) is SAELens's own code.

Layouts reproduced (``<repo_id>/<folder>/...`` as in the real repositories):

* ``ctigges/pythia-70m-deduped__res-sm_processed/3-res-sm/``: ``cfg.json`` (SAELens 5 keys),
  ``sae_weights.safetensors`` (``W_enc`` [d_in, d_sae], ``W_dec`` [d_sae, d_in], ``b_enc``
  [d_sae], ``b_dec`` [d_in]) and optionally ``sparsity.safetensors`` (``sparsity`` [d_sae]).
  The config carries d_in/d_sae, so a small 16 x 64 SAE is used.
* ``google/gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82/params.npz`` (``W_enc``
  [2304, 16384], ``W_dec`` [16384, 2304], ``b_enc``, ``b_dec``, ``threshold``). SAELens takes
  d_in (2304) from the repo name and d_sae (16384) from ``width_16k`` and ``load_state_dict``
  checks shapes, so this file must be full size (about 300 MB, written once per module).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from huggingface_hub import hf_hub_download as real_hf_hub_download
from huggingface_hub.errors import (
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
)
from safetensors.numpy import save_file

import sae_lens.loading.pretrained_sae_loaders as sae_loaders
from featureaudit.errors import AuditError
from featureaudit.sae.frozen import METADATA_KEYS
from featureaudit.sae.pretrained import load_pretrained_sae

PYTHIA_RELEASE = "pythia-70m-deduped-res-sm"
PYTHIA_ID = "blocks.3.hook_resid_post"
PYTHIA_REPO = "ctigges/pythia-70m-deduped__res-sm_processed"
PYTHIA_FOLDER = "3-res-sm"
PYTHIA_D_IN, PYTHIA_D_SAE = 16, 64

GEMMA_RELEASE = "gemma-scope-2b-pt-res-canonical"
GEMMA_ID = "layer_12/width_16k/canonical"
GEMMA_REPO = "google/gemma-scope-2b-pt-res"
GEMMA_FOLDER = "layer_12/width_16k/average_l0_82"
GEMMA_D_IN, GEMMA_D_SAE = 2304, 16384

_MISSING = object()


class FakeHub:
    """Stands in for ``hf_hub_download``: serves ``<root>/<repo_id>/<subfolder>/<filename>``.

    Calls are checked against the real function's signature, and a missing file raises what
    the real hub raises for a missing entry (``RemoteEntryNotFoundError``, an
    ``EntryNotFoundError``).
    """

    def __init__(self, root: Path):
        self.root = root
        self.calls: list[tuple[str, str]] = []

    def __call__(self, *args, **kwargs):
        bound = inspect.signature(real_hf_hub_download).bind(*args, **kwargs)
        repo_id = bound.arguments["repo_id"]
        filename = bound.arguments["filename"]
        subfolder = bound.arguments.get("subfolder")
        rel = f"{subfolder}/{filename}" if subfolder else filename
        self.calls.append((repo_id, rel))
        path = self.root / repo_id / rel
        if not path.is_file():
            url = f"https://huggingface.co/{repo_id}/resolve/main/{rel}"
            response = httpx.Response(
                404, request=httpx.Request("HEAD", url), headers={"X-Error-Code": "EntryNotFound"}
            )
            raise RemoteEntryNotFoundError(
                f"404 Client Error. Entry Not Found for url: {url}.", response=response
            )
        return str(path)


def _pythia_cfg(prepend_bos=True) -> dict:
    # SAELens 5 cfg.json keys, in the order SAELens 5 wrote them. Verified for the real files
    # (SAELens docs table / published configs): architecture standard, model_name, hook_name,
    # hook_layer 3, d_sae 32768, context_size 128, dataset EleutherAI/the_pile_deduplicated,
    # normalize_activations none. Not verifiable offline: prepend_bos,
    # apply_b_dec_to_input (Marks's dictionaries subtract the decoder bias: true),
    # model_from_pretrained_kwargs (SAELens 5 default: {}).
    cfg = {
        "architecture": "standard",
        "d_in": PYTHIA_D_IN,
        "d_sae": PYTHIA_D_SAE,
        "dtype": "float32",
        "device": "cuda",
        "model_name": "pythia-70m-deduped",
        "hook_name": PYTHIA_ID,
        "hook_layer": 3,
        "hook_head_index": None,
        "activation_fn_str": "relu",
        "activation_fn_kwargs": {},
        "apply_b_dec_to_input": True,
        "finetuning_scaling_factor": False,
        "sae_lens_training_version": None,
        "prepend_bos": prepend_bos,
        "dataset_path": "EleutherAI/the_pile_deduplicated",
        "dataset_trust_remote_code": True,
        "context_size": 128,
        "normalize_activations": "none",
        "neuronpedia_id": None,
        "model_from_pretrained_kwargs": {},
        "seqpos_slice": [None],
    }
    if prepend_bos is _MISSING:
        del cfg["prepend_bos"]
    return cfg


def _write_pythia(root: Path, *, prepend_bos=True, sparsity: bool = True, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    folder = root / PYTHIA_REPO / PYTHIA_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    cfg = _pythia_cfg(prepend_bos)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    weights = {
        "W_enc": rng.standard_normal((PYTHIA_D_IN, PYTHIA_D_SAE)).astype(np.float32) * 0.3,
        "W_dec": rng.standard_normal((PYTHIA_D_SAE, PYTHIA_D_IN)).astype(np.float32) * 0.3,
        "b_enc": rng.standard_normal(PYTHIA_D_SAE).astype(np.float32) * 0.1,
        "b_dec": rng.standard_normal(PYTHIA_D_IN).astype(np.float32),
    }
    save_file(weights, str(folder / "sae_weights.safetensors"))
    if sparsity:
        log_density = -rng.uniform(1, 6, PYTHIA_D_SAE).astype(np.float32)
        save_file({"sparsity": log_density}, str(folder / "sparsity.safetensors"))
        weights["sparsity"] = log_density
    return {"cfg": cfg, **weights}


@pytest.fixture(scope="module")
def gemma_hub(tmp_path_factory):
    """A full-size Gemma Scope params.npz (SAELens derives the shapes from the names)."""
    root = tmp_path_factory.mktemp("hub")
    folder = root / GEMMA_REPO / GEMMA_FOLDER
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    scale = np.float32(1 / np.sqrt(GEMMA_D_IN))
    params = {
        "W_enc": rng.standard_normal((GEMMA_D_IN, GEMMA_D_SAE), dtype=np.float32) * scale,
        "W_dec": rng.standard_normal((GEMMA_D_SAE, GEMMA_D_IN), dtype=np.float32) * scale,
        "b_enc": rng.standard_normal(GEMMA_D_SAE, dtype=np.float32) * np.float32(0.2),
        "b_dec": rng.standard_normal(GEMMA_D_IN, dtype=np.float32) * np.float32(0.5),
        "threshold": rng.uniform(0.05, 1.0, GEMMA_D_SAE).astype(np.float32),
    }
    np.savez(folder / "params.npz", **params)
    x = rng.standard_normal((6, GEMMA_D_IN), dtype=np.float32) * np.float32(2.0)
    # Keep only the reference pre-activations, not the 300 MB of arrays.
    ref_pre = x.astype(np.float64) @ params["W_enc"].astype(np.float64) + params["b_enc"]
    del params
    return {"root": root, "x": x, "ref_pre": ref_pre}


def _patch(monkeypatch, fake) -> None:
    # sae_lens does `from huggingface_hub import hf_hub_download` in this module: patch the
    # name there, which is what every pretrained loader calls.
    monkeypatch.setattr(sae_loaders, "hf_hub_download", fake)


@pytest.mark.parametrize(
    "prepend_bos, expected_bos", [(True, True), (False, False), (_MISSING, True)]
)
def test_pythia_release_loads_offline(tmp_path, monkeypatch, prepend_bos, expected_bos):
    raw = _write_pythia(tmp_path, prepend_bos=prepend_bos)
    hub = FakeHub(tmp_path)
    _patch(monkeypatch, hub)

    sae, meta = load_pretrained_sae(PYTHIA_RELEASE, PYTHIA_ID, device="cpu")

    assert set(meta) == set(METADATA_KEYS)
    assert meta["hook_name"] == "blocks.3.hook_resid_post"
    assert meta["model_name"] == "pythia-70m-deduped"
    assert meta["context_size"] == 128
    assert meta["prepend_bos"] is expected_bos  # SAELens < 6 configs default it to True
    assert meta["model_from_pretrained_kwargs"] == {}
    assert (meta["d_in"], meta["d_sae"]) == (PYTHIA_D_IN, PYTHIA_D_SAE)
    assert meta["architecture"] == "standard"
    # From the release directory (pretrained_saes.yaml), applied as a config override.
    assert sae.cfg.metadata.neuronpedia_id == "pythia-70m-deduped/3-res-sm"
    assert sae.cfg.apply_b_dec_to_input is True

    # What sae-lens fetched, in order: exactly the files of the real repository folder.
    assert hub.calls == [
        (PYTHIA_REPO, f"{PYTHIA_FOLDER}/cfg.json"),
        (PYTHIA_REPO, f"{PYTHIA_FOLDER}/sae_weights.safetensors"),
        (PYTHIA_REPO, f"{PYTHIA_FOLDER}/sparsity.safetensors"),
    ]

    x = torch.from_numpy(
        np.random.default_rng(5).standard_normal((32, PYTHIA_D_IN)).astype(np.float32)
    )
    # Independent: ReLU((x - b_dec) @ W_enc + b_enc), in float64 from the raw arrays.
    x64 = x.numpy().astype(np.float64)
    ref = np.maximum((x64 - raw["b_dec"]) @ raw["W_enc"] + raw["b_enc"], 0.0)
    with torch.no_grad():
        got = sae.encode(x).double().numpy()
        recon = sae.decode(sae.encode(x)).double().numpy()
    assert (ref > 0).any() and (ref == 0).any()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(recon, ref @ raw["W_dec"] + raw["b_dec"], rtol=1e-4, atol=1e-4)
    # Without subtracting b_dec the result differs: the test would catch a wrong flag.
    assert not np.allclose(np.maximum(x64 @ raw["W_enc"] + raw["b_enc"], 0.0), ref, atol=1e-3)


def test_pythia_sparsity_file_is_optional_and_read(tmp_path, monkeypatch):
    from sae_lens import SAE

    raw = _write_pythia(tmp_path, sparsity=True)
    _patch(monkeypatch, FakeHub(tmp_path))
    sae, cfg_dict, log_sparsity = SAE.from_pretrained_with_cfg_and_sparsity(
        PYTHIA_RELEASE, PYTHIA_ID, device="cpu"
    )
    np.testing.assert_array_equal(log_sparsity.numpy(), raw["sparsity"])
    assert cfg_dict["metadata"]["hook_name"] == PYTHIA_ID

    other = tmp_path / "nosparsity"
    _write_pythia(other, sparsity=False)
    _patch(monkeypatch, FakeHub(other))
    sae2 = SAE.from_pretrained(PYTHIA_RELEASE, PYTHIA_ID, device="cpu")  # the plain user call
    _, _, log_sparsity2 = SAE.from_pretrained_with_cfg_and_sparsity(PYTHIA_RELEASE, PYTHIA_ID)
    assert log_sparsity2 is None  # RemoteEntryNotFoundError for sparsity is swallowed by SAELens
    assert sae2.W_enc.shape == (PYTHIA_D_IN, PYTHIA_D_SAE)


def test_gemma_scope_release_loads_offline(gemma_hub, monkeypatch):
    hub = FakeHub(gemma_hub["root"])
    _patch(monkeypatch, hub)

    sae, meta = load_pretrained_sae(GEMMA_RELEASE, GEMMA_ID, device="cpu")

    assert hub.calls == [(GEMMA_REPO, f"{GEMMA_FOLDER}/params.npz")]
    assert meta == {
        "hook_name": "blocks.12.hook_resid_post",
        "prepend_bos": True,
        "context_size": 1024,
        "model_name": "gemma-2-2b",
        "model_from_pretrained_kwargs": None,
        "d_in": GEMMA_D_IN,
        "d_sae": GEMMA_D_SAE,
        "architecture": "jumprelu",
    }
    assert sae.cfg.apply_b_dec_to_input is False
    assert sae.cfg.metadata.neuronpedia_id == "gemma-2-2b/12-gemmascope-res-16k"

    x = torch.from_numpy(gemma_hub["x"])
    pre = gemma_hub["ref_pre"]
    threshold = sae.threshold.detach().double().numpy()
    with torch.no_grad():
        got = sae.encode(x).double().numpy()
    # Independent JumpReLU: pre * (pre > threshold), no b_dec subtraction.
    ref = np.where(pre > threshold, np.maximum(pre, 0.0), 0.0)
    near = np.abs(pre - threshold) < 1e-4  # float32 vs float64 ties at the jump: skip
    assert near.sum() < 10
    np.testing.assert_allclose(got[~near], ref[~near], rtol=1e-4, atol=1e-4)
    # The threshold matters here: plain ReLU would differ on many units.
    relu_only = np.maximum(pre, 0.0)
    assert ((relu_only > 0) & (ref == 0)).sum() > 100
    assert (ref > 0).sum() > 100


def _offline_hub(cause: BaseException):
    def fake(*args, **kwargs):
        inspect.signature(real_hf_hub_download).bind(*args, **kwargs)
        raise LocalEntryNotFoundError(
            "An error happened while trying to locate the file on the Hub and we cannot find "
            "the requested files in the local cache. Please check your connection and try "
            "again or make sure your Internet connection is on."
        ) from cause

    return fake


def test_no_hub_access_is_one_line_audit_error(monkeypatch):
    # Exactly what huggingface_hub 2.x raises here without network (measured): a
    # LocalEntryNotFoundError caused by httpx.ConnectError after its retries.
    _patch(monkeypatch, _offline_hub(httpx.ConnectError("[Errno -2] Name or service not known")))
    with pytest.raises(AuditError) as info:
        load_pretrained_sae(PYTHIA_RELEASE, PYTHIA_ID, config_key="pythia")
    msg = str(info.value)
    assert "\n" not in msg
    assert "sae.path" in msg
    assert "models.pythia.sae.source: disk" in msg and "models.pythia.sae.path:" in msg
    assert f"'{PYTHIA_ID}'" in msg and f"'{PYTHIA_RELEASE}'" in msg
    assert "Name or service not known" in msg
    assert info.value.__suppress_context__


def test_offline_mode_is_one_line_audit_error(monkeypatch):
    cause = OfflineModeIsEnabled(
        "Cannot reach https://huggingface.co/google/gemma-scope-2b-pt-res/resolve/main/"
        f"{GEMMA_FOLDER}/params.npz: offline mode is enabled."
    )
    _patch(monkeypatch, _offline_hub(cause))
    with pytest.raises(AuditError) as info:
        load_pretrained_sae(GEMMA_RELEASE, GEMMA_ID)
    msg = str(info.value)
    assert "\n" not in msg and "sae.path" in msg and "HF_HUB_OFFLINE" in msg


def test_plain_connect_error_is_audit_error(monkeypatch):
    def fake(*args, **kwargs):
        raise httpx.ConnectError("[Errno 101] Network is unreachable")

    _patch(monkeypatch, fake)
    with pytest.raises(AuditError, match=r"sae\.path"):
        load_pretrained_sae(PYTHIA_RELEASE, PYTHIA_ID)


def test_unknown_release_and_sae_id(monkeypatch):
    def fake(*args, **kwargs):  # must never be reached
        raise AssertionError("download attempted for an unknown release")

    _patch(monkeypatch, fake)
    with pytest.raises(AuditError) as info:
        load_pretrained_sae("pythia-70m-deduped-res-smm", PYTHIA_ID)
    assert "\n" not in str(info.value) and PYTHIA_RELEASE in str(info.value)

    with pytest.raises(AuditError) as info:
        load_pretrained_sae(PYTHIA_RELEASE, "blocks.9.hook_resid_post", config_key="pythia")
    msg = str(info.value)
    assert "\n" not in msg
    assert "models.pythia.sae.id" in msg
    assert "blocks.3.hook_resid_post" in msg or "blocks.0.hook_resid_post" in msg
