"""Content-addressed joblib artifacts: stored by sha256, verified before every unpickling."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import joblib

from core.errors import IntegrityError, NotFound

CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


class ArtifactStore:
    """Files at `root/ab/abcdef...joblib`, named by the sha256 of their bytes."""

    suffix = ".joblib"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise IntegrityError(f"not a sha256 digest: {sha256!r}")
        return self.root / sha256[:2] / f"{sha256}{self.suffix}"

    def put_file(self, source: Path) -> tuple[str, int]:
        """Copy `source` into the store atomically; return (sha256, size)."""
        sha256 = sha256_of(source)
        target = self.path_for(sha256)
        if target.is_file() and sha256_of(target) == sha256:
            return sha256, target.stat().st_size
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                shutil.copyfileobj(src, out, CHUNK)
                out.flush()
                os.fsync(out.fileno())
            if sha256_of(Path(tmp)) != sha256:
                raise IntegrityError("artifact changed while it was being stored")
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha256, target.stat().st_size

    def verify(self, sha256: str) -> Path:
        """The artifact's path once its bytes are proven to hash to `sha256`."""
        path = self.path_for(sha256)
        if not path.is_file():
            raise NotFound(f"artifact {sha256[:12]} is missing from {self.root}")
        actual = sha256_of(path)
        if actual != sha256:
            raise IntegrityError(
                f"artifact {sha256[:12]} does not match the registry (sha256 now {actual[:12]})"
            )
        return path

    def load(self, sha256: str) -> Any:
        """Unpickle an artifact only after its bytes hash to the registry's `sha256`."""
        path = self.path_for(sha256)
        if not path.is_file():
            raise NotFound(f"artifact {sha256[:12]} is missing from {self.root}")
        data = path.read_bytes()  # hash and unpickle the same bytes: no swap in between
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise IntegrityError(
                f"artifact {sha256[:12]} was modified on disk (its sha256 is now "
                f"{actual[:12]}); refusing to unpickle it"
            )
        return joblib.load(io.BytesIO(data))

    def remove(self, sha256: str) -> bool:
        path = self.path_for(sha256)
        if path.is_file():
            path.unlink()
            return True
        return False

    def all_digests(self) -> list[str]:
        """Digests of every stored artifact (for `check` and `gc`)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name[: -len(self.suffix)] for p in self.root.glob(f"*/*{self.suffix}"))
