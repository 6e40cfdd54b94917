"""Helpers shared by test modules."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def use_lab(setenv: Callable[[str, str], None], home: Path) -> None:
    """Point REGISTRY_URL, ARTIFACT_ROOT and LOG_ROOT at `home` (a monkeypatch's setenv)."""
    setenv("REGISTRY_URL", f"sqlite:///{home / 'registry.db'}")
    setenv("ARTIFACT_ROOT", str(home / "artifacts"))
    setenv("LOG_ROOT", str(home / "logs"))


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


def run_bench(script: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `bench/SCRIPT ARGS` in a subprocess with the current (isolated) environment."""
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
    )


def artifact_files(home: Path) -> list[Path]:
    root = home / "artifacts"
    return sorted(root.rglob("*.joblib")) if root.exists() else []


def wait_until(
    condition: Callable[[], Any], what: str, timeout_s: float = 120, poll_s: float = 0.1
) -> Any:
    """Poll `condition` until it returns something truthy; fail naming `what` on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def log_of(row: Any) -> str:
    """The build log of a version so far ('' before it has one)."""
    from core.registry import Registry

    return Registry().log_text(row.id)


def render_page(path: str, **query: str) -> Any:
    """Run a dashboard page (relative to the checkout) in AppTest with `query` as its query
    parameters; it must not raise."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / path), default_timeout=60)
    at.query_params.update(query)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def build_serve_image(tag: str, timeout: int = 600) -> None:
    """Build the Dockerfile's serve stage as `tag` on the shared engine (BUILD_NETWORK)."""
    import docker

    from core.config import settings

    conf = settings()
    client = docker.from_env(timeout=timeout)
    try:
        for chunk in client.api.build(
            path=str(ROOT),
            target="serve",
            tag=tag,
            rm=True,
            forcerm=True,  # a failed step leaves no intermediate container behind either
            decode=True,
            network_mode=conf.build_network,
            buildargs={"BASE_IMAGE": conf.docker_base_image},
        ):
            assert "error" not in chunk, chunk["error"]
    finally:
        client.close()
