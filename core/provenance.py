"""Facts about the code and environment that built a version."""

from __future__ import annotations

import hashlib
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from core.config import PROJECT_ROOT

TRACKED_PACKAGES = ("scikit-learn", "numpy", "scipy", "pandas", "joblib")
# Files whose content defines what a trainer does: hashed into the code fingerprint.
CODE_FILES = (
    "Dockerfile",
    "requirements-trainer.txt",
    "requirements-serve.txt",
    "requirements.txt",
)


def package_versions() -> dict[str, str]:
    """Installed versions of the libraries that decide what a model predicts."""
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def environment() -> dict[str, Any]:
    """Python, platform and library versions of the running interpreter."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
    }


def git_state(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """Commit and dirty flag of the checkout, or a note that it is not a git checkout."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(
            git("status", "--porcelain", "--untracked-files=no", "--", "core", *CODE_FILES)
        )
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None, "note": "not a git checkout"}


def code_files(root: Path = PROJECT_ROOT) -> list[Path]:
    """The files hashed into the code fingerprint: core/ sources, Dockerfile, requirements."""
    files = sorted(p for p in (root / "core").rglob("*.py") if "__pycache__" not in p.parts)
    return files + [root / name for name in CODE_FILES if (root / name).is_file()]


def code_fingerprint(root: Path = PROJECT_ROOT) -> str:
    """sha256 over the relative paths and contents of `code_files()`."""
    digest = hashlib.sha256()
    for path in code_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
