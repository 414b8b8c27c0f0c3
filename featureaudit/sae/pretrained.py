"""Load a SAELens *pretrained* SAE (a release in SAELens's ``pretrained_saes.yaml``).

This is the code path a user takes with ``sae.source: saelens``: SAELens maps
``(release, sae_id)`` to a Hugging Face repository and folder, picks the release's converter
(``sae_lens`` for SAELens-format folders, ``gemma_2`` for Gemma Scope, ...), downloads the files
with ``huggingface_hub.hf_hub_download`` and builds the SAE. Without hub access that ends in a
``LocalEntryNotFoundError`` (after about 20 s of retries, or at once with ``HF_HUB_OFFLINE=1``);
here it becomes one :class:`~featureaudit.errors.AuditError` line naming the config keys that
point the audit at a local copy instead.
"""

from __future__ import annotations

import difflib
from typing import Any

from ..errors import AuditError
from .frozen import sae_metadata

_MAX_LISTED = 5


def _download_error_types() -> tuple[type[BaseException], ...]:
    """Exception classes that mean "the files could not be fetched from the hub"."""
    import huggingface_hub.errors as hf_errors

    types: list[type[BaseException]] = [OSError, ConnectionError, TimeoutError]
    for name in (
        "HfHubHTTPError",  # RepositoryNotFoundError, GatedRepoError, RemoteEntryNotFoundError, ...
        "EntryNotFoundError",  # includes LocalEntryNotFoundError (offline, not cached)
        "LocalEntryNotFoundError",
        "OfflineModeIsEnabled",
    ):
        cls = getattr(hf_errors, name, None)
        if isinstance(cls, type):
            types.append(cls)
    try:
        import httpx

        types.append(httpx.HTTPError)  # ConnectError, TimeoutException, ... (not OSError)
    except ImportError:  # pragma: no cover - httpx ships with huggingface_hub >= 1.0
        pass
    try:
        import requests

        types.append(requests.exceptions.RequestException)
    except ImportError:  # pragma: no cover
        pass
    return tuple(types)


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short_cause(exc: BaseException) -> str:
    """A short, one-line reason for a download failure (walks the exception chain)."""
    import huggingface_hub.errors as hf_errors

    chain: list[BaseException] = []
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen and len(chain) < 10:
        chain.append(cur)
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__

    def is_a(name: str, e: BaseException) -> bool:
        cls = getattr(hf_errors, name, None)
        return isinstance(cls, type) and isinstance(e, cls)

    # In priority order: the first kind found anywhere in the chain names the cause.
    for kind, cause in (
        ("OfflineModeIsEnabled", "HF_HUB_OFFLINE is set and the files are not in the local cache"),
        ("GatedRepoError", "the repository is gated: accept its licence and log in with a token"),
        ("RepositoryNotFoundError", "repository not found or not accessible"),
        ("RemoteEntryNotFoundError", "file not found in the repository"),
    ):
        if any(is_a(kind, e) for e in chain):
            return cause
    # A network error below the hub's wrapper (httpx / requests / socket).
    for e in chain[1:]:
        mod = type(e).__module__.split(".")[0]
        if mod in ("httpx", "httpcore", "requests", "urllib3", "socket") or isinstance(
            e, (ConnectionError, TimeoutError)
        ):
            return _one_line(f"no connection to the hub: {type(e).__name__}: {e}")
    if is_a("LocalEntryNotFoundError", exc):
        return "hub unreachable and the files are not in the local cache"
    root = chain[-1]
    return _one_line(f"{type(root).__name__}: {root}")


def download_error_message(
    release: str, sae_id: str, cause: str, config_key: str | None = None
) -> str:
    """The one-line message for an SAE that could not be downloaded."""
    name = config_key or "<name>"
    return (
        f"could not download SAE '{sae_id}' of release '{release}' from the Hugging Face hub "
        f"({cause}); download it where you have access and set "
        f"models.{name}.sae.source: disk and models.{name}.sae.path: <folder saved by SAELens>"
    )


def _listing(options: list[str], wanted: str) -> str:
    close = difflib.get_close_matches(wanted, options, n=_MAX_LISTED, cutoff=0.5)
    shown = close + [o for o in options if o not in close]
    shown = shown[:_MAX_LISTED]
    more = f", ... ({len(options)} in all)" if len(options) > len(shown) else ""
    return ", ".join(shown) + more


def check_release(release: str, sae_id: str, config_key: str | None = None) -> None:
    """Raise AuditError unless ``(release, sae_id)`` is in SAELens's pretrained directory."""
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    directory = get_pretrained_saes_directory()
    where = f"models.{config_key}.sae" if config_key else "sae"
    if release not in directory:
        raise AuditError(
            f"unknown SAELens release '{release}' ({where}.release); "
            f"known releases include: {_listing(sorted(directory), release)}"
        )
    ids = list(directory[release].saes_map)
    if sae_id not in directory[release].saes_map:
        raise AuditError(
            f"unknown sae_id '{sae_id}' for SAELens release '{release}' ({where}.id); "
            f"valid ids include: {_listing(ids, sae_id)}"
        )


def load_pretrained_sae(
    release: str,
    sae_id: str,
    device: str = "cpu",
    config_key: str | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Load ``SAE.from_pretrained(release, sae_id)`` and return ``(sae, metadata)``.

    ``metadata`` has the keys in :data:`featureaudit.sae.frozen.METADATA_KEYS`. An unknown release or sae_id, or any
    failure to fetch the files from the hub, raises :class:`AuditError` with a one-line
    message; ``config_key`` (the model's name in the audit config) is used in that message.
    """
    check_release(release, sae_id, config_key)

    from sae_lens import SAE

    try:
        sae, _cfg_dict, _log_sparsity = SAE.from_pretrained_with_cfg_and_sparsity(
            release, sae_id, device=device
        )
    except _download_error_types() as exc:
        error = AuditError(download_error_message(release, sae_id, _short_cause(exc), config_key))
        error.download_error = exc  # kept for debugging; the chain is hidden from the user
        raise error from None
    return sae, sae_metadata(sae)
