"""What would come from the Hugging Face hub, said at start-up: a model or tokenizer named by
hub id, a SAELens pretrained SAE, a streamed dataset. When such files are not in the local
cache and the hub is switched off (HF_HUB_OFFLINE) or cannot be reached within a few seconds,
one line per config key says so and how to point it at a local copy, before any job; where the
hub is reachable, or the files are cached, nothing changes (the real hub paths stay the user's).

Pure Python and cheap: the cache is looked up on disk, SAELens's directory of releases is
searched as text (no import of SAELens), and the hub is probed once, only when something is
missing from the cache."""

from __future__ import annotations

import os
import re
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from ..paths import looks_local

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class HubNeed:
    key: str  # the config key that names it
    kind: str  # model | dataset
    repo: str  # the hub repository
    local: str  # how to point the key at a local copy


def offline_variable(kind: str = "model") -> str | None:
    """The environment variable that switches the hub off, if one is set."""
    names = OFFLINE_VARIABLES + (("HF_DATASETS_OFFLINE",) if kind == "dataset" else ())
    return next((n for n in names if os.environ.get(n, "").strip().lower() in ("1", "true", "yes", "on")), None)


def hub_cache() -> Path:
    """huggingface_hub's cache folder, by its own precedence of variables."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def in_cache(repo: str, kind: str = "model") -> bool:
    """Some revision of `repo` has been downloaded (a snapshot folder with files in it)."""
    snapshots = hub_cache() / f"{kind}s--{repo.replace('/', '--')}" / "snapshots"
    return snapshots.is_dir() and any(any(s.iterdir()) for s in snapshots.iterdir() if s.is_dir())


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """A TCP connection to the hub's endpoint opens within `timeout` seconds (name lookup
    included: it runs in a thread, since the resolver ignores socket time-outs)."""
    url = urlparse(endpoint())
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    result: list[bool] = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(result and result[0])


def saelens_repo(release: str) -> str | None:
    """The hub repository of a SAELens pretrained release, from SAELens's own directory of
    releases (pretrained_saes.yaml), read as text: importing SAELens costs seconds."""
    import importlib.util

    spec = importlib.util.find_spec("sae_lens")
    if spec is None or not spec.origin:
        return None
    directory = Path(spec.origin).parent / "pretrained_saes.yaml"
    if not directory.is_file():
        return None
    m = re.search(rf"^{re.escape(release)}:\n(?:[ \t].*\n)*?  repo_id: (\S+)", directory.read_text(), re.M)
    return m[1] if m else None


def hub_needs(cfg) -> list[HubNeed]:
    needs = []
    for name, m in cfg.models.items():
        if m.source == "hf" and not looks_local(m.path):
            needs.append(HubNeed(f"models.{name}.path", "model", m.path,
                                 "a transformers folder saved with save_pretrained, or a GGUF file with source: gguf"))
        for hook, sae in m.saes.items():
            if sae.source == "saelens":
                repo = saelens_repo(sae.release) or sae.release
                needs.append(HubNeed(m.sae_key(hook), "model", repo,
                                     "{source: disk, path: <the SAE's folder saved by SAELens>}"))
    if cfg.corpus.source == "hf_dataset":
        needs.append(HubNeed("corpus.name", "dataset", cfg.corpus.name,
                             "corpus.source: text_files with corpus.paths: [<text files>]"))
    return needs


def hub_problems(cfg, probe=reachable) -> list[str]:
    """One line for each thing the run would download and cannot."""
    out, online = [], None
    for need in hub_needs(cfg):
        # a streamed dataset is read from the hub every time; models are used from the cache
        if need.kind == "model" and in_cache(need.repo, need.kind):
            continue
        variable = offline_variable(need.kind)
        if variable:
            why = f"{variable} is set and it is not in the local cache ({hub_cache()})"
        else:
            online = probe() if online is None else online
            if online:
                continue
            why = f"the hub ({endpoint()}) cannot be reached from this machine and it is not in the local cache"
        out.append(f"{need.key}: {need.repo} would be downloaded from the Hugging Face hub, but {why}; "
                   f"point {need.key} at a local copy: {need.local}")
    return out
