"""The artifact store on any fsspec filesystem: `s3://bucket/prefix`, `gs://...`, `memory://`.

S3 settings come from the standard AWS environment variables (`AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_DEFAULT_REGION`, ...) and, for S3-compatible servers,
`ARTIFACT_ENDPOINT_URL`. A PUT is atomic on object stores, so no temporary names are used.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from core.artifacts.base import ArtifactStore
from core.errors import BadInput


def check_protocol(url: str, protocol: str) -> None:
    """BadInput unless fsspec knows `protocol` and its implementation is installed."""
    from fsspec.registry import known_implementations, registry

    if protocol in registry:
        return
    known = known_implementations.get(protocol)
    if known is None:
        raise BadInput(f"ARTIFACT_ROOT {url!r}: unsupported storage scheme {protocol!r}")
    module = known["class"].rsplit(".", 1)[0]
    if importlib.util.find_spec(module.split(".", 1)[0]) is None:
        reason = known.get("err") or f"{module} is not installed"
        raise BadInput(f"ARTIFACT_ROOT {url!r}: {reason}")


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
    """Blobs as objects under an fsspec URL.

    The scheme is checked at once, without importing its implementation; the filesystem
    (for S3: `import s3fs`, about 0.7 s, and a client) is made on first use, which a build
    makes in a background thread while its worker trains (`core.builds.DatasetUpload`).
    """

    def __init__(self, url: str) -> None:
        self.protocol = url.split("://", 1)[0].lower()
        check_protocol(url, self.protocol)
        self.url = url
        self.location = url
        self._fs: Any = None
        self._base: str | None = None
        self._lock = threading.Lock()
        self._made_base = False

    @property
    def fs(self) -> Any:
        with self._lock:
            if self._fs is None:
                import fsspec

                try:
                    fs, path = fsspec.core.url_to_fs(self.url, **storage_options(self.protocol))
                except ImportError as exc:
                    raise BadInput(f"ARTIFACT_ROOT {self.url!r}: {exc}") from None
                self._base = path.rstrip("/")
                self._fs = fs
            return self._fs

    @property
    def base(self) -> str:
        if self._base is None:
            self.fs  # noqa: B018 - sets the base
        return self._base or ""

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
