"""The allow-listed data folder: list datasets, resolve names safely, store validated uploads."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from core.config import SAMPLE_DATA, settings
from core.dataset import SUFFIXES, Dataset, scan_dataset
from core.errors import BadInput

UPLOADS = "uploads"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def data_dir() -> Path:
    return settings().data_dir


def list_data_files() -> list[str]:
    """Dataset files under the data folder, as paths relative to it (no symlinks out): the
    team's own files first, uploads after them. The bundled synthetic sample (`sample.json`
    at the top, or anything resolving to it) is left out: it has its own choice, so the first
    file offered is never fake data."""
    root = data_dir()
    if not root.is_dir():
        return []
    found: list[str] = []
    for path in sorted(root.rglob("*"), key=lambda p: (UPLOADS in p.parts, str(p))):
        if not path.is_file() or path.suffix.lower() not in SUFFIXES:
            continue
        try:
            real = resolve_data_file(str(path.relative_to(root)))
        except BadInput:
            continue  # a symlink pointing outside the folder is not offered
        relative = str(real.relative_to(root.resolve()))
        if relative == SAMPLE_DATA.name or real == SAMPLE_DATA.resolve() or relative in found:
            continue
        found.append(relative)
    return found


def resolve_data_file(name: str) -> Path:
    """The real path of `name` inside the data folder; BadInput for anything escaping it."""
    if not name or "\x00" in name:
        raise BadInput("choose a dataset file")
    root = data_dir().resolve()
    candidate = Path(name)
    if candidate.is_absolute() or ".." in candidate.parts:
        raise BadInput(f"dataset {name!r} must be a file inside the data folder")
    real = (root / candidate).resolve()
    if not real.is_relative_to(root):
        raise BadInput(f"dataset {name!r} resolves outside the data folder")
    if not real.is_file():
        raise BadInput(f"dataset {name!r} not found in the data folder")
    if real.suffix.lower() not in SUFFIXES:
        raise BadInput(f"dataset {name!r} must be .json, .jsonl or .zip")
    return real


def save_upload(filename: str, content: bytes) -> tuple[Path, Dataset]:
    """Validate an uploaded dataset and only then store it under `data/uploads/`."""
    limit = settings().upload_limit_mb
    if len(content) > limit * 1024 * 1024:
        raise BadInput(f"upload is {len(content) / 1e6:.1f} MB; the limit is {limit:g} MB")
    suffix = Path(filename).suffix.lower()
    if suffix not in SUFFIXES:
        raise BadInput(f"upload {filename!r} must be .json, .jsonl or .zip")
    stem = _SAFE_NAME.sub("_", Path(filename).stem)[:60] or "upload"
    digest = hashlib.sha256(content).hexdigest()[:12]
    target_dir = data_dir() / UPLOADS
    target_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target_dir, prefix=".incoming-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        dataset = scan_dataset(tmp)  # raises BadInput: nothing is kept
        target = target_dir / f"{stem}-{digest}{suffix}"
        os.replace(tmp, target)
    except BadInput as exc:  # name the user's file, not the temporary one
        Path(tmp).unlink(missing_ok=True)
        raise BadInput(str(exc).replace(tmp, filename).replace(Path(tmp).name, filename)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target, Dataset(str(target), dataset.rows, dataset.positives, dataset.sha256)
