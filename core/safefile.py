"""Write an output file that a user named (`export -o`, `sample -o`) without trusting what
another local account may have planted in its folder.

The bytes go to a temporary file created exclusively (`O_CREAT | O_EXCL`, which never
follows a symlink) under an unpredictable name in the target folder, then renamed over the
target, which replaces a name and never writes through one. An existing target that is not
a regular file (a symlink, a FIFO, a device such as /dev/null, a folder) is refused.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from core.errors import BadInput


def check_output(path: Path) -> None:
    """BadInput unless `path` is absent or a regular file (not followed if a symlink)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise BadInput(f"cannot write {path}: {exc.strerror or exc}") from None
    if stat.S_ISLNK(mode):
        raise BadInput(f"{path} is a symbolic link; refusing to write through it")
    if not stat.S_ISREG(mode):
        raise BadInput(f"{path} exists and is not a regular file; refusing to replace it")


def _umask() -> int:
    """The process umask, read without changing it (Linux); 0o022 where unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _prepare_folder(path: Path) -> Path:
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"cannot create the folder of {path}: {exc.strerror or exc}") from None
    if not folder.is_dir():
        raise BadInput(f"{folder} is not a folder")
    return folder


@contextmanager
def _exclusive_temp(path: Path) -> Iterator[tuple[IO[bytes], str]]:
    folder = _prepare_folder(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name[:100]}.", suffix=".tmp")
    except OSError as exc:
        raise BadInput(f"cannot write in {folder}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o666 & ~_umask())
            yield handle, tmp
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_output(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call write(handle) on an exclusive temporary file, then rename it to `path`."""
    check_output(path)
    with _exclusive_temp(path) as (handle, tmp):
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    try:
        check_output(path)  # planted meanwhile? rename would replace it, but say so
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
