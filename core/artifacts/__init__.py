"""The artifact store: content-addressed models, datasets and prediction files.

`open_store()` picks the implementation from ARTIFACT_ROOT: a local folder (the default) or
any fsspec URL such as `s3://bucket/prefix`. Unknown schemes are refused.
"""

from __future__ import annotations

from core.artifacts.base import KINDS, ArtifactStore, Entry, check_digest, sha256_of
from core.errors import BadInput

LOCAL_SCHEMES = ("file",)


def open_store(url: str | None = None) -> ArtifactStore:
    """The store at `url` (default: the ARTIFACT_ROOT setting)."""
    if url is None:
        from core.config import settings

        url = settings().artifact_root
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

        return LocalStore(url.split("://", 1)[1])
    from core.artifacts.remote import FsspecStore

    return FsspecStore(url)


__all__ = ["KINDS", "ArtifactStore", "Entry", "check_digest", "open_store", "sha256_of"]
