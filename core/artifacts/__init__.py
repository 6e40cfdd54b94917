"""The artifact store: content-addressed models, datasets and prediction files.

`open_store()` picks the implementation from ARTIFACT_ROOT: a local folder (the default) or
any fsspec URL such as `s3://bucket/prefix`; `file:///path` is that folder. Unknown schemes,
and (from ARTIFACT_ROOT) schemes that do not persist across processes, are refused.
"""

from __future__ import annotations

from core.artifacts.base import KINDS, ArtifactStore, Entry, check_digest, sha256_of
from core.errors import BadInput

LOCAL_SCHEMES = ("file",)
PROCESS_LOCAL_SCHEMES = ("memory",)  # fsspec filesystems held by one process


def _check_shared(url: str) -> None:
    """ARTIFACT_ROOT is shared by separate processes (CLI, workers, dashboard): refuse a
    store that lives in one process's memory."""
    schemes = {part.split("://", 1)[0].lower() for part in url.split("::") if "://" in part}
    local = sorted(schemes & set(PROCESS_LOCAL_SCHEMES))
    if local:
        raise BadInput(
            f"ARTIFACT_ROOT {url!r}: {local[0]}:// does not persist across processes (the next "
            "process would find the artifact missing); use a folder or an object store (s3://)"
        )


def open_store(url: str | None = None) -> ArtifactStore:
    """The store at `url` (default: the ARTIFACT_ROOT setting)."""
    if url is None:
        from core.config import settings

        url = settings().artifact_root
        _check_shared(url)
    url = str(url)
    if "://" not in url:
        from core.config import SCHEME_LIKE

        if SCHEME_LIKE.match(url):
            raise BadInput(f"ARTIFACT_ROOT {url!r} looks like a URL without '//'")
        from core.artifacts.local import LocalStore

        return LocalStore(url)
    scheme = url.split("://", 1)[0].lower()
    if scheme in LOCAL_SCHEMES:
        from core.artifacts.local import LocalStore
        from core.config import file_url_path

        try:
            return LocalStore(file_url_path(url))
        except ValueError as exc:
            raise BadInput(f"ARTIFACT_ROOT {url!r}: a file URL {exc}") from None
    from core.artifacts.remote import FsspecStore

    return FsspecStore(url)


__all__ = ["KINDS", "ArtifactStore", "Entry", "check_digest", "open_store", "sha256_of"]
