"""Helpers shared by test modules."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600):
    """Run `python -m core ARGS` in a subprocess with the current (isolated) environment."""
    return subprocess.run(
        [sys.executable, "-m", "core", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def artifact_files(home: Path) -> list[Path]:
    root = home / "artifacts"
    return sorted(root.rglob("*.joblib")) if root.exists() else []
