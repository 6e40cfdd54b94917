"""The artifact store on any fsspec filesystem: `s3://bucket/prefix`, `gs://...`, `memory://`.

S3 settings come from the standard AWS environment variables (`AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_DEFAULT_REGION`, ...) and, for S3-compatible servers,
`ARTIFACT_ENDPOINT_URL`. A PUT is atomic on object stores, so no temporary names are used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from core.artifacts.base import ArtifactStore
from core.errors import BadInput


def storage_options(protocol: str) -> dict[str, Any]:
    """fsspec options for `protocol` from the environment (no caches shared across calls)."""
    options: dict[str, Any] = {"skip_instance_cache": True}
    if protocol in ("s3", "s3a"):
        options["use_listings_cache"] = False
        endpoint = os.environ.get("ARTIFACT_ENDPOINT_URL")
        if endpoint:
            options["endpoint_url"] = endpoint
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region:
            options.setdefault("client_kwargs", {})["region_name"] = region
    return options


class FsspecStore(ArtifactStore):
    """Blobs as objects under an fsspec URL."""

    def __init__(self, url: str) -> None:
        import fsspec

        protocol = url.split("://", 1)[0].lower()
        try:
            fsspec.get_filesystem_class(protocol)
        except (ValueError, ImportError) as exc:
            raise BadInput(
                f"ARTIFACT_ROOT {url!r}: unsupported storage scheme {protocol!r} ({exc})"
            ) from None
        self.fs, path = fsspec.core.url_to_fs(url, **storage_options(protocol))
        self.base = path.rstrip("/")
        self.location = url
        self._made_base = False

    def _full(self, rel: str) -> str:
        return f"{self.base}/{rel}" if self.base else rel

    def _ensure_base(self) -> None:
        if not self._made_base:
            if self.fs.protocol in ("file", "local") or "memory" in self.fs.protocol:
                self.fs.makedirs(self.base, exist_ok=True)
            self._made_base = True

    def _write_bytes(self, rel: str, data: bytes) -> None:
        self._ensure_base()
        self.fs.pipe_file(self._full(rel), data)

    def _write_file(self, rel: str, source: Path) -> None:
        self._ensure_base()
        self.fs.put_file(str(source), self._full(rel))

    def _open(self, rel: str) -> IO[bytes]:
        try:
            return self.fs.open(self._full(rel), "rb")
        except FileNotFoundError:
            raise
        except OSError as exc:
            if "not found" in str(exc).lower() or "nosuchkey" in str(exc).lower():
                raise FileNotFoundError(rel) from exc
            raise

    def _size(self, rel: str) -> int | None:
        try:
            return int(self.fs.info(self._full(rel))["size"])
        except FileNotFoundError:
            return None

    def _list(self, prefix: str = "") -> Iterator[tuple[str, int, float]]:
        root = self._full(prefix.rstrip("/")) if prefix else self.base
        try:
            found = self.fs.find(root, detail=True)
        except FileNotFoundError:
            return
        start = len(self.base) + 1 if self.base else 0
        for full in sorted(found):
            info = found[full]
            if info.get("type") == "directory":
                continue
            yield full[start:], int(info.get("size") or 0), _mtime(info)

    def _delete(self, rel: str) -> bool:
        if self._size(rel) is None:  # S3's DeleteObject succeeds for a missing key too
            return False
        try:
            self.fs.rm_file(self._full(rel))
            return True
        except FileNotFoundError:
            return False


def _mtime(info: dict[str, Any]) -> float:
    for key in ("LastModified", "mtime", "created", "last_modified"):
        value = info.get(key)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, datetime):
            return value.timestamp()
    return 0.0
