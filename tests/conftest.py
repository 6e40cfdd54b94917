"""Shared fixtures: every test gets its own registry file, artifact store and log folder.

Markers: `docker` tests need a reachable engine, `browser` tests need Chromium and
Playwright. Outside CI they are skipped with the reason; under CI=true they fail instead.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data" / "raop" / "train.json.zip"
SAMPLE = ROOT / "data" / "sample.json"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
from tests.helpers import use_lab  # noqa: E402
from ui.server import browser_status  # noqa: E402


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"required under CI=true but unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


_docker_status: tuple[bool, str] | None = None


def docker_status() -> tuple[bool, str]:
    global _docker_status
    if _docker_status is None:
        from core.builders.docker import engine_status

        _docker_status = engine_status()
    return _docker_status


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("docker"):
        ok, reason = docker_status()
        if not ok:
            _missing(f"Docker tests need an engine: {reason}")
    if item.get_closest_marker("browser"):
        ok, reason = browser_status()
        if not ok:
            _missing(f"browser tests: {reason}")
    if item.get_closest_marker("shared_data") and not SHARED_DATA.is_file():
        pytest.skip(f"shared RAOP data not found at {SHARED_DATA}")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point REGISTRY_URL, ARTIFACT_ROOT, LOG_ROOT and DATA_DIR at a fresh temp folder."""
    home = tmp_path / "lab"
    home.mkdir()
    use_lab(monkeypatch.setenv, home)
    data_dir = home / "data"
    data_dir.mkdir()
    shutil.copy(SAMPLE, data_dir / "sample.json")
    monkeypatch.setenv("DATA_DIR", str(data_dir))
    monkeypatch.setenv("ALTRUISM_ALLOW_FAULTS", "1")
    return home


@pytest.fixture
def lab(isolated_env: Path) -> Path:
    """The isolated folder holding registry.db, artifacts/, logs/ and data/."""
    return isolated_env


@pytest.fixture
def registry(isolated_env: Path):
    from core.registry import Registry

    return Registry()


@pytest.fixture
def store(isolated_env: Path):
    from core.artifacts import open_store

    return open_store()


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_file():
        pytest.skip(f"shared RAOP data not found at {SHARED_DATA}")
    return SHARED_DATA
