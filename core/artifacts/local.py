"""The artifact store in a local folder (the embedded default, `<checkout>/artifacts`)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from core.artifacts.base import CHUNK, INCOMING, UNREADABLE, ArtifactStore, blob_rel


class LocalStore(ArtifactStore):
    """Blobs as files under `root`; writes go to a temporary file, fsync, then rename."""

    remote = False

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.location = str(self.root)

    def _path(self, rel: str) -> Path:
        return self.root / rel

    def local_path(self, sha256: str, kind: str = "model") -> Path | None:
        return self._path(blob_rel(sha256, kind))

    def _write(self, rel: str, fill) -> None:
        target = self._path(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=INCOMING, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                fill(out)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _write_bytes(self, rel: str, data: bytes) -> None:
        self._write(rel, lambda out: out.write(data))

    def _write_file(self, rel: str, source: Path) -> None:
        def fill(out: IO[bytes]) -> None:
            with open(source, "rb") as src:
                shutil.copyfileobj(src, out, CHUNK)

        self._write(rel, fill)

    def _open(self, rel: str) -> IO[bytes]:
        path = self._path(rel)
        if not path.is_file():
            raise FileNotFoundError(rel)
        return open(path, "rb")

    def _size(self, rel: str) -> int | None:
        try:
            return self._path(rel).stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _list(self, prefix: str = "") -> Iterator[tuple[str, int, float]]:
        base = self._path(prefix) if prefix else self.root
        if not base.is_dir():
            return
        for folder, dirs, files in os.walk(base):
            dirs.sort()
            for name in sorted(files):
                path = Path(folder, name)
                try:
                    stat = path.stat()
                except FileNotFoundError:  # removed while we walked
                    continue
                except OSError:  # a symbolic link loop, say: reported by `scan`, never followed
                    yield path.relative_to(self.root).as_posix(), UNREADABLE, 0.0
                    continue
                yield path.relative_to(self.root).as_posix(), stat.st_size, stat.st_mtime

    def _delete(self, rel: str) -> bool:
        try:
            self._path(rel).unlink()
            return True
        except FileNotFoundError:
            return False
