"""Shared fixtures: every test gets its own registry file, artifact store and log folder.

Markers: `docker` tests need a reachable engine, `browser` tests need Chromium and
Playwright, `postgres` and `s3` tests a private PostgreSQL cluster and an S3-protocol server
(rclone), both started here once per session on loopback. Outside CI missing parts are
skipped with the reason; under CI=true they fail instead.

Modules marked `both_backends` run every test twice, on SQLite and on PostgreSQL (a fresh
database per test); `sqlite_only` keeps one test on SQLite.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data" / "raop" / "train.json.zip"
SAMPLE = ROOT / "data" / "sample.json"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
from tests import servers  # noqa: E402
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
    backend = getattr(item, "callspec", None) and item.callspec.params.get("registry_backend")
    if item.get_closest_marker("postgres") or backend == "postgresql":
        ok, reason = servers.postgres_status()
        if not ok:
            _missing(f"PostgreSQL tests: {reason}")
    if item.get_closest_marker("s3"):
        ok, reason = servers.s3_status()
        if not ok:
            _missing(f"S3 tests: {reason}")
    if item.get_closest_marker("shared_data") and not SHARED_DATA.is_file():
        pytest.skip(f"shared RAOP data not found at {SHARED_DATA}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests of `both_backends` modules run on SQLite and PostgreSQL."""
    if "registry_backend" not in metafunc.fixturenames:
        return
    both = metafunc.definition.get_closest_marker("both_backends")
    if both and not metafunc.definition.get_closest_marker("sqlite_only"):
        metafunc.parametrize("registry_backend", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture(scope="session")
def pg_server():
    """One private PostgreSQL cluster for the session, stopped by pid at the end."""
    server = servers.start_postgres()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server():
    """One `rclone serve s3` for the session, stopped at the end."""
    server = servers.start_s3()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def remote_engine():
    """A private second Docker Engine that cannot see the checkout or the temp folder, with
    the base image and the current trainer image copied in (`docker save | docker load`);
    stopped by its pid at the end."""
    ok, reason = docker_status()
    if not ok:
        _missing(f"Docker tests need an engine: {reason}")
    ok, reason = servers.private_dockerd_status()
    if not ok:
        _missing(f"remote-engine tests: {reason}")
    from core.builders.base import BuildLog
    from core.builders.docker import DockerBuilder
    from core.config import settings

    image, _, _ = DockerBuilder().ensure_image(BuildLog(echo=lambda _: None))
    engine = servers.start_private_dockerd([ROOT, Path(tempfile.gettempdir())])
    try:
        engine.copy_image(settings().docker_base_image)
        engine.copy_image(image.tags[0])
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def swarm_cluster(remote_engine):
    """The private second engine made a single-node swarm, with a container registry
    (Debian's docker-registry on loopback); both undone by pid at the end. The shared
    engine other tests use is never part of a swarm."""
    ok, reason = servers.registry_status()
    if not ok:
        _missing(f"swarm tests: {reason}")
    image_registry = servers.start_registry()
    try:
        servers.init_swarm(remote_engine)
        yield remote_engine, image_registry
    finally:
        remote_engine.docker("swarm", "leave", "--force", timeout=120)
        image_registry.stop()


@pytest.fixture(scope="session")
def two_node_swarm():
    """A two-node swarm of private engines (never the shared one, never `swarm_cluster`'s):
    a manager here and a worker in its own network namespace and hostname, with a registry
    both reach (`servers.start_two_node_swarm`); the base and trainer images copied into
    both. Stopped by pid, its namespace removed, at the end."""
    ok, reason = docker_status()
    if not ok:
        _missing(f"Docker tests need an engine: {reason}")
    for status in (servers.private_dockerd_status, servers.netns_status, servers.registry_status):
        ok, reason = status()
        if not ok:
            _missing(f"two-node swarm tests: {reason}")
    from core.builders.base import BuildLog
    from core.builders.docker import DockerBuilder
    from core.config import settings

    image, _, _ = DockerBuilder().ensure_image(BuildLog(echo=lambda _: None))
    hidden = [ROOT, Path(tempfile.gettempdir())]
    cluster = servers.start_two_node_swarm(hidden, [settings().docker_base_image, image.tags[0]])
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def registry_backend(request: pytest.FixtureRequest) -> str:
    """'sqlite' (the default) or 'postgresql' where the test is parametrized over both."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
def pg_url(request: pytest.FixtureRequest, pg_server) -> str:
    """The URL of a fresh, empty PostgreSQL database, dropped after the test."""
    name = pg_server.create_database()
    request.addfinalizer(lambda: pg_server.drop_database(name))
    return pg_server.url(name)


@pytest.fixture
def s3_root(s3_server, monkeypatch: pytest.MonkeyPatch) -> str:
    """ARTIFACT_ROOT in a fresh bucket of the session's S3 server, with its AWS settings."""
    for name, value in s3_server.environment().items():
        monkeypatch.setenv(name, value)
    root = f"s3://{s3_server.create_bucket()}/artifacts"
    monkeypatch.setenv("ARTIFACT_ROOT", root)
    return root


@pytest.fixture(autouse=True)
def isolated_env(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    registry_backend: str,
    request: pytest.FixtureRequest,
) -> Path:
    """Point REGISTRY_URL, ARTIFACT_ROOT, LOG_ROOT and DATA_DIR at a fresh temp folder (and
    REGISTRY_URL at a fresh PostgreSQL database for the PostgreSQL run of a test)."""
    home = tmp_path / "lab"
    home.mkdir()
    use_lab(monkeypatch.setenv, home)
    if registry_backend == "postgresql":
        monkeypatch.setenv("REGISTRY_URL", request.getfixturevalue("pg_url"))
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
