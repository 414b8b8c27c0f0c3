"""Shared fixtures: tiny offline projects the real workflow runs on."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import build_tiny_model  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
#: A Python traceback frame line: what must never reach a user's console.
FRAME = re.compile(r'^\s*File "[^"]+", line \d+', re.M)


def save_saelens_sae(out_dir: Path, d_in: int, hook: str, d_sae: int = 128, k: int = 8, seed: int = 0) -> Path:
    """A TopK SAE in SAELens's own save format, metadata naming its hook."""
    import torch
    from sae_lens import TopKSAE, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    torch.manual_seed(seed)
    sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=k, metadata=SAEMetadata(hook_name=hook, prepend_bos=True)))
    with torch.no_grad():
        sae.W_enc.normal_(0, d_in**-0.5)
        sae.W_dec.copy_(sae.W_enc.T)
        sae.b_enc.normal_(0, 0.1)
    sae.save_model(str(out_dir))
    return out_dir


@dataclass
class TinyProject:
    """A working directory with config.yaml for the real Snakefile."""

    workdir: Path
    config: dict = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.workdir / "config.yaml"

    def write(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))

    def add_bits(self, b: int, causal: bool = False) -> None:
        """A bit-width more (and its causal audit, with `causal`)."""
        self.config["quantization"]["bits"] = list(self.config["quantization"]["bits"]) + [b]
        if causal:
            self.config["causal"]["variants"] = list(self.config["causal"]["variants"]) + [f"rtn-w{b}"]
        self.write()

    @classmethod
    def ran(cls, workdir: Path, config: dict) -> "TinyProject":
        """A project with this config, written and run through the whole Snakefile."""
        project = cls(workdir, config)
        project.write()
        project.snakemake()
        return project

    def planned_after(self, edit) -> dict:
        """Jobs a dry run plans after `edit(config)`; the config is restored after."""
        import json

        from test_workflow import job_counts

        original = json.loads(json.dumps(self.config))
        try:
            self.config = json.loads(json.dumps(original))
            edit(self.config)
            self.write()
            return job_counts(self.snakemake("-n").stdout)
        finally:
            self.config = original
            self.write()

    def snakemake(self, *args, check=True, timeout=900) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(self.workdir),
               "--configfile", str(self.config_path), "--cores", "2", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-5000:]}\n{proc.stderr[-5000:]}")
        return proc


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {arch: build_tiny_model(arch, root / arch) for arch in ("neox", "llama", "gemma2")}


def base_config(results: Path) -> dict:
    return {
        "results": str(results),
        "device": "cpu",
        "corpus": {"source": "pydoc", "n_tokens": 1024, "sae_train_tokens": 2048, "context_length": 32, "seed": 0},
        "models": {},
        "quantization": {"bits": [8]},
        "pruning": {"sparsity": [], "match": False, "match_tokens": 128, "match_tolerance": 0.05},
        "survival": {"active_min_tokens": 5},
        "evaluation": {"n_tokens": 256, "batch_size": 8},
        "predictability": {"folds": 3},
        # the causal audit costs two jobs per workflow run; arch_project and test_causal cover it
        "causal": {"variants": []},
    }


@pytest.fixture
def tiny_project(tmp_path, tiny_models) -> TinyProject:
    """One tiny Llama, SAE trained by the workflow, one bit-width: the smallest full DAG."""
    cfg = base_config(tmp_path / "results")
    cfg["models"]["tiny"] = {
        "source": "hf", "path": str(tiny_models["llama"]), "hook": "blocks.2.hook_resid_post",
        "sae": {"source": "train", "train": {"d_sae": 128, "k": 8, "steps": 60, "batch_size": 256, "lr": 0.001}},
    }
    project = TinyProject(tmp_path, cfg)
    project.write()
    return project


@pytest.fixture(scope="session")
def arch_project(tmp_path_factory, tiny_models) -> TinyProject:
    """Pythia-layout GPT-NeoX with an SAE saved by SAELens, and Gemma-2 with a trained SAE;
    RTN and matched-perplexity pruning. The workflow runs once per test session."""
    workdir = tmp_path_factory.mktemp("arch_project")
    neox_sae = save_saelens_sae(workdir / "neox_sae", 64, "blocks.1.hook_resid_post")
    cfg = base_config(workdir / "results")
    cfg["quantization"]["bits"] = [4]
    cfg["causal"] = {"variants": ["rtn-w4"], "features": 8, "pool": 8, "splice_sequences": 4}
    cfg["pruning"]["match"] = True
    cfg["evaluation"]["sliding"] = True
    cfg["models"]["neox"] = {"source": "hf", "path": str(tiny_models["neox"]), "hook": "blocks.1.hook_resid_post",
                             "sae": {"source": "disk", "path": str(neox_sae)}}
    cfg["models"]["gemma2"] = {
        "source": "hf", "path": str(tiny_models["gemma2"]), "hook": "blocks.2.hook_resid_post",
        "sae": {"source": "train", "train": {"d_sae": 128, "k": 8, "steps": 60, "batch_size": 256, "lr": 0.001}},
    }
    project = TinyProject(workdir, cfg)
    project.write()
    project.snakemake()
    return project


#: Test files that use the session's shared workflow run (arch_project): one worker runs them all,
#: so that the run is made once.
SHARED_PROJECT = ("test_workflow.py", "test_browser.py", "test_rerun_triggers.py")
#: The longest groups first, so that no worker is left with a long one at the end.
LONGEST_FIRST = SHARED_PROJECT + ("test_slurm.py", "test_formats.py", "test_reliability.py", "test_producers.py")


def pytest_collection_modifyitems(config, items):
    def rank(item):
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: a module's tests keep their order


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's: no error where it is not installed
def pytest_xdist_make_scheduler(config, log):
    """Under pytest-xdist (`make test` runs three workers): whole test files go to a worker (their
    module-scoped projects and SLURM are made once), the three files of the shared workflow run
    together, in the order above. (xdist's own --dist loadgroup ignores xdist_group marks with
    pytest 9.2 and xdist 3.8 here.)"""
    from xdist.scheduler import LoadScopeScheduling

    class SharedProjectScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            path = nodeid.split("::", 1)[0]
            return "shared-project" if path.endswith(SHARED_PROJECT) else path

    config.option.loadscopereorder = False
    return SharedProjectScheduling(config, log)
