"""Content-addressed blobs: models, datasets and prediction files named by their sha256.

One store holds every kind of blob under its root (a local folder or any fsspec URL):

    <root>/ab/abcdef....joblib                 fitted pipelines (kind "model")
    <root>/datasets/ab/abcdef....jsonl         canonical training data (kind "dataset")
    <root>/predictions/ab/abcdef....npz        per-request scores (kind "predictions")

`ArtifactStore` implements the content addressing and verification once; a backend only
provides the few file operations at the bottom (`LocalStore`, `FsspecStore`). Callers never
see a path: they put bytes or a file, get back verified bytes, ask whether a digest exists,
iterate digests and remove them.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from core.errors import IntegrityError, NotFound

CHUNK = 1 << 20
SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Kind:
    """Where one kind of blob lives under the root, and its file suffix."""

    prefix: str
    suffix: str


KINDS = {
    "model": Kind("", ".joblib"),
    "dataset": Kind("datasets/", ".jsonl"),
    "predictions": Kind("predictions/", ".npz"),
}
INCOMING = ".incoming-"


@dataclass(frozen=True)
class Entry:
    """One file under the root: a blob (kind, sha256), a partial upload or a stray file."""

    rel: str
    kind: str  # a KINDS key, "partial", "stray" or "unreadable" (a symbolic link loop, say)
    sha256: str | None
    size: int
    mtime: float


def sha256_of(path: Path) -> str:
    """sha256 of a local file, read in chunks."""
    with open(path, "rb") as handle:
        return sha256_stream(handle)


def sha256_stream(handle: IO[bytes]) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: handle.read(CHUNK), b""):
        digest.update(block)
    return digest.hexdigest()


def check_digest(sha256: str) -> str:
    if not isinstance(sha256, str) or not SHA256.match(sha256):
        raise IntegrityError(f"not a sha256 digest: {sha256!r}")
    return sha256


def blob_rel(sha256: str, kind: str = "model") -> str:
    """The blob's path relative to the root."""
    spec = KINDS[kind]
    check_digest(sha256)
    return f"{spec.prefix}{sha256[:2]}/{sha256}{spec.suffix}"


UNREADABLE = -1  # the size `_list` gives a file it cannot stat (a symbolic link loop, say)


def classify(rel: str) -> tuple[str, str | None]:
    """(kind, sha256) of a path relative to the root; kind 'partial' or 'stray' otherwise."""
    name = rel.rsplit("/", 1)[-1]
    if name.startswith(INCOMING):
        return "partial", None
    for kind, spec in KINDS.items():
        rest = rel[len(spec.prefix) :] if rel.startswith(spec.prefix) else None
        if rest is None or not rest.endswith(spec.suffix):
            continue
        folder, _, file = rest.partition("/")
        sha = file[: -len(spec.suffix)]
        if SHA256.match(sha) and folder == sha[:2] and "/" not in file:
            return kind, sha
    return "stray", None


class ArtifactStore(ABC):
    """Content addressing and verification over a backend's few file operations."""

    location: str
    remote: bool = True  # blobs live off this machine (uploads are worth overlapping)

    # --- backend primitives (paths are relative to the root, '/'-separated) ------------
    @abstractmethod
    def _write_bytes(self, rel: str, data: bytes) -> None:
        """Create or replace `rel` atomically: readers see the old or the new bytes."""

    @abstractmethod
    def _write_file(self, rel: str, source: Path) -> None:
        """Like `_write_bytes`, from a local file."""

    @abstractmethod
    def _open(self, rel: str) -> IO[bytes]:
        """Open `rel` for reading; FileNotFoundError when absent."""

    @abstractmethod
    def _size(self, rel: str) -> int | None:
        """Size of `rel`, or None when absent."""

    @abstractmethod
    def _list(self, prefix: str = "") -> Iterator[tuple[str, int, float]]:
        """(rel, size, mtime) of every file under `prefix`."""

    @abstractmethod
    def _delete(self, rel: str) -> bool:
        """Remove `rel`; whether it was there."""

    def local_path(self, sha256: str, kind: str = "model") -> Path | None:
        """The blob's local file when the store is a local folder (else None); unverified."""
        return None

    # --- content-addressed blobs ---------------------------------------------------------
    def put_bytes(self, data: bytes, kind: str = "model") -> tuple[str, int]:
        """Store `data` under its sha256; return (sha256, size)."""
        sha256 = hashlib.sha256(data).hexdigest()
        rel = blob_rel(sha256, kind)
        if self._size(rel) != len(data) or not self._matches(rel, sha256):
            self._write_bytes(rel, data)
        return sha256, len(data)

    def put_file(
        self, source: Path, kind: str = "model", sha256: str | None = None
    ) -> tuple[str, int]:
        """Store a local file under its sha256 (checked when given); return (sha256, size)."""
        actual = sha256_of(source)
        if sha256 is not None and actual != sha256:
            raise IntegrityError(
                f"{source.name} changed before it was stored (sha256 {actual[:12]}, "
                f"expected {sha256[:12]})"
            )
        rel = blob_rel(actual, kind)
        size = source.stat().st_size
        if self._size(rel) != size or not self._matches(rel, actual):
            self._write_file(rel, source)
        return actual, size

    def _matches(self, rel: str, sha256: str) -> bool:
        try:
            with self._open(rel) as handle:
                return sha256_stream(handle) == sha256
        except FileNotFoundError:
            return False

    def exists(self, sha256: str, kind: str = "model") -> bool:
        return self._size(blob_rel(sha256, kind)) is not None

    def read_verified(self, sha256: str, kind: str = "model") -> bytes:
        """The blob's bytes, once they are proven to hash to `sha256` (these exact bytes)."""
        rel = blob_rel(sha256, kind)
        try:
            with self._open(rel) as handle:
                data = handle.read()
        except FileNotFoundError:
            raise NotFound(f"{kind} {sha256[:12]} is missing from {self.location}") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            use = "unpickle" if kind == "model" else "use"
            raise IntegrityError(
                f"{kind} {sha256[:12]} was modified in the store (its sha256 is now "
                f"{actual[:12]}); refusing to {use} it"
            )
        return data

    def load(self, sha256: str, before_unpickle: Callable[[], None] | None = None) -> Any:
        """Unpickle a model only after its bytes hash to the registry's `sha256`;
        `before_unpickle` runs between the check and the unpickling (it makes a team
        recipe's recorded classes importable)."""
        import joblib

        data = self.read_verified(sha256, "model")
        if before_unpickle is not None:
            before_unpickle()
        return joblib.load(io.BytesIO(data))

    def fetch_verified(self, sha256: str, kind: str, target: Path) -> Path:
        """Copy a blob to the local file `target`, checking its sha256 on the way."""
        rel = blob_rel(sha256, kind)
        digest = hashlib.sha256()
        try:
            with self._open(rel) as source, open(target, "wb") as out:
                for block in iter(lambda: source.read(CHUNK), b""):
                    digest.update(block)
                    out.write(block)
        except FileNotFoundError:
            raise NotFound(f"{kind} {sha256[:12]} is missing from {self.location}") from None
        if digest.hexdigest() != sha256:
            target.unlink(missing_ok=True)
            raise IntegrityError(f"{kind} {sha256[:12]} was modified in the store")
        return target

    def verify(self, sha256: str, kind: str = "model") -> str:
        """'ok', 'missing' or 'tampered' (streams the bytes; nothing is kept)."""
        rel = blob_rel(sha256, kind)
        try:
            with self._open(rel) as handle:
                return "ok" if sha256_stream(handle) == sha256 else "tampered"
        except FileNotFoundError:
            return "missing"

    def remove(self, sha256: str, kind: str = "model") -> bool:
        return self._delete(blob_rel(sha256, kind))

    def digests(self, kind: str = "model") -> Iterator[str]:
        """Every stored digest of one kind (streamed)."""
        for entry in self.scan(KINDS[kind].prefix):
            if entry.kind == kind and entry.sha256:
                yield entry.sha256

    def scan(self, prefix: str = "") -> Iterator[Entry]:
        """Every file under the root, classified (blobs, partial uploads, strays)."""
        for rel, size, mtime in self._list(prefix):
            if size == UNREADABLE:
                yield Entry(rel, "unreadable", None, 0, mtime)
                continue
            kind, sha = classify(rel)
            yield Entry(rel, kind, sha, size, mtime)

    def remove_entry(self, rel: str) -> bool:
        """Remove a partial upload found by `scan` (never a blob: use `remove`)."""
        if classify(rel)[0] != "partial":
            raise IntegrityError(f"refusing to remove {rel!r}: not a partial upload")
        return self._delete(rel)


def copy_stream(source: IO[bytes], target: IO[bytes]) -> None:
    shutil.copyfileobj(source, target, CHUNK)


def private_tempdir(prefix: str) -> Path:
    """A new folder only this user can enter (mode 0700, from mkdtemp)."""
    return Path(tempfile.mkdtemp(prefix=prefix))
