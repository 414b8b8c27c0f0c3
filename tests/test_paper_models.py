"""The paper's configuration and the hub paths, verified offline: the DAG builds without the
network, and a user without hub access gets one line naming the config key to change."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from featureaudit.errors import AuditError
from featureaudit.model.reference import load_model
from test_workflow import job_counts


def test_paper_config_builds_the_full_dag_offline(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
         "--configfile", str(REPO / "config" / "paper.yaml")],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # a plan needs no download: what a run would have to fetch is said as notes, one per key
    notes = [line for line in proc.stderr.splitlines() if line.startswith("featureaudit: note: ")]
    keys = ("models.pythia70m.path", "models.gemma2_2b.path", "corpus.name",
            *(f"models.pythia70m.hooks.blocks.{i}.hook_resid_post" for i in range(6)),
            *(f"models.gemma2_2b.hooks.blocks.{i}.hook_resid_post" for i in (6, 12, 18)))
    assert len(notes) == len(keys) and all(sum(f"note: {k}: " in n for n in notes) == 1 for k in keys), notes
    counts = job_counts(proc.stdout)
    # 2 models x (fp + 5 RTN + 3 per-tensor RTN + 6 pruning + 5 matched) variants; every block of
    # Pythia-70M (6 hooks) and three depths of Gemma-2-2B, a survival table per variant and hook.
    assert counts["variant"] == 2 * 20 and counts["survival"] == (6 + 3) * 20
    assert counts["sae"] == 6 + 3 and counts["match_pruning"] == 2 * 5 and counts["overlap"] == (6 + 3) * 5


@pytest.fixture
def offline(monkeypatch):
    """No hub, as on a machine without access. The libraries read HF_HUB_OFFLINE when first
    imported; if another test imported them already, patch the values they read (else each
    lookup waits for network timeouts, ~45 s here, before the same error)."""
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)


def test_missing_hub_model_is_one_line_naming_the_key(offline):
    with pytest.raises(AuditError) as err:
        load_model("hf", "EleutherAI/pythia-70m-deduped", name="pythia70m")
    msg = str(err.value)
    assert "\n" not in msg and "models.pythia70m.path" in msg and "could not download" in msg


def test_gguf_neox_is_refused_with_the_fix(tmp_path):
    import gguf

    path = tmp_path / "pythia.gguf"
    w = gguf.GGUFWriter(str(path), "gptneox")
    w.add_block_count(2)
    w.add_embedding_length(16)
    w.add_tensor("token_embd.weight", np.zeros((10, 16), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(AuditError) as err:
        load_model("gguf", str(path), name="pythia")
    msg = str(err.value)
    assert "gptneox" in msg and "models.pythia.source: hf" in msg and "\n" not in msg


def test_missing_hub_dataset_is_one_line_naming_the_key(offline):
    from featureaudit.inputs.tokens import hf_dataset_text

    with pytest.raises(AuditError) as err:
        hf_dataset_text("monology/pile-uncopyrighted", "train", "text", max_chars=1000)
    msg = str(err.value)
    assert "\n" not in msg and "corpus.source: text_files" in msg
