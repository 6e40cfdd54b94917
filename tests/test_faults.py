"""Faults injected into real builds: each ends with a failed (or untouched) version, a clear
message, and `python -m core check` passing afterwards.

(a) the detached build worker is killed with SIGKILL mid-build;
(b) the Docker Engine "stops" mid-build (a socket proxy in front of the real engine is killed;
    the real daemon is never touched);
(c) the disk holding ARTIFACT_ROOT is full while the artifact is written (a tiny tmpfs);
(d) the registry file is read-only (a read-only SQLite URL).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from core import builds
from core.builders import BuildLog
from core.registry import Registry, pid_alive
from core.schema import ModelVersion
from tests.helpers import ROOT, artifact_files, log_of, run_cli, wait_until

WAIT_S = 120
REAL_DOCKER_SOCKET = "/var/run/docker.sock"
DEAD_DOCKER = {"DOCKER_HOST": "unix:///tmp/altruism-lab-nonexistent.sock"}  # gc: no engine


def sleeping(row: ModelVersion) -> bool:
    return "injected fault: sleeping" in log_of(row)


def check_passes() -> dict[str, Any]:
    done = run_cli("check", "--json", env=DEAD_DOCKER)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True and report["findings"] == []
    return report


# --- (a) the build worker killed with SIGKILL ------------------------------------------------
def test_build_worker_killed_with_sigkill(registry: Registry, lab: Path, monkeypatch) -> None:
    monkeypatch.setenv("WORK_ROOT", str(lab / "tmp"))  # where builds make their work folders
    (lab / "tmp").mkdir()
    request = builds.TrainRequest(recipe="nb-bow", backend="local", fault="sleep:60")
    row = builds.submit(request, registry).version
    runner = builds.launch(row.id, registry)
    wait_until(lambda: sleeping(row), "the worker to start training", timeout_s=WAIT_S)
    trainer = int(re.search(r"worker pid (\d+):", log_of(row)).group(1))
    assert registry.get_by_id(row.id).status == "running"
    assert registry.get_by_id(row.id).worker_pid == runner

    os.killpg(runner, signal.SIGKILL)  # run-build leads its own process group (session)
    os.waitpid(runner, 0)  # launch() made it our child: reap it
    try:
        # The training subprocess (its own session) notices its parent died and stops.
        wait_until(
            lambda: not pid_alive(trainer),
            "the orphaned training process to stop",
            timeout_s=15,
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(trainer, signal.SIGKILL)
    assert registry.get_by_id(row.id).status == "running"  # nobody has noticed yet

    found = run_cli("check", "--json", env=DEAD_DOCKER)
    assert found.returncode == 1
    stuck, leftover = sorted(json.loads(found.stdout)["findings"], key=lambda f: f["kind"])[::-1]
    assert stuck["kind"] == "stuck_build" and f"pid {runner}" in stuck["message"]
    assert leftover["kind"] == "leftover_work_dir"  # the killed build's private work folder
    work_dir = Path(leftover["path"])
    assert work_dir.is_dir()

    listed = run_cli("list", "--json", env=DEAD_DOCKER)  # opening the registry marks orphans
    assert listed.returncode == 0, listed.stderr
    assert f"the build worker (pid {runner}) died before finishing" in listed.stderr
    assert "Traceback" not in listed.stderr
    (out,) = json.loads(listed.stdout)
    print(f"\nSIGKILL -> {out['error']}")
    assert out["status"] == "failed" and out["artifact_sha256"] is None
    assert f"build worker (pid {runner}) died" in out["error"]
    assert registry.mark_orphans() == []  # idempotent
    assert artifact_files(lab) == []
    assert not work_dir.exists()  # recovery (run by `list`) removed the work folder too
    check_passes()


# --- (b) the Docker Engine stops answering mid-build -----------------------------------------
PROXY = r"""
import socket, sys, threading
listen, target = sys.argv[1], sys.argv[2]
server = socket.socket(socket.AF_UNIX)
server.bind(listen)
server.listen(64)

def pipe(src, dst):
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

def serve(client):
    upstream = socket.socket(socket.AF_UNIX)
    upstream.connect(target)
    threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
    pipe(client, upstream)

print("ready", flush=True)
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


@contextlib.contextmanager
def engine_proxy() -> Iterator[tuple[str, subprocess.Popen]]:
    """A unix-socket proxy process in front of the real engine: (DOCKER_HOST, process)."""
    folder = Path(tempfile.mkdtemp(prefix="al-proxy-", dir="/tmp"))  # short: sun_path limit
    sock = folder / "docker.sock"
    proc = subprocess.Popen(
        [sys.executable, "-c", PROXY, str(sock), REAL_DOCKER_SOCKET],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield f"unix://{sock}", proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        sock.unlink(missing_ok=True)
        folder.rmdir()


def our_containers(client: Any, registry: Registry, version_id: int) -> list[Any]:
    """Trainer containers of this registry's version (ids repeat across registries, and
    other people's builds may share the engine)."""
    from core.builders.docker import registry_containers

    return registry_containers(client, registry.identity, version_id)


@pytest.mark.docker
def test_docker_engine_stops_mid_build(registry: Registry, lab: Path, monkeypatch) -> None:
    import docker

    from core.builders.docker import DockerBuilder

    if not Path(REAL_DOCKER_SOCKET).exists():
        pytest.skip(f"the proxy needs the engine's socket at {REAL_DOCKER_SOCKET}")
    if not os.environ.get("BUILD_NETWORK"):
        monkeypatch.setenv("BUILD_NETWORK", "host")
    DockerBuilder().ensure_image(BuildLog())  # not via the proxy
    data = lab / "data" / "sample.json"
    real = docker.from_env(timeout=60)
    real_host = os.environ.get("DOCKER_HOST")
    row: ModelVersion | None = None
    try:
        with engine_proxy() as (docker_host, proxy):
            monkeypatch.setenv("DOCKER_HOST", docker_host)
            request = builds.TrainRequest(
                recipe="nb-bow", backend="docker", fault="sleep:60", data_path=data, cpus=0.5
            )
            row = builds.submit(request, registry).version
            with ThreadPoolExecutor(max_workers=1) as pool:
                future = pool.submit(builds.execute, row.id, registry)
                wait_until(
                    lambda: sleeping(row), "the container to start training", timeout_s=WAIT_S
                )
                assert our_containers(real, registry, row.id), "no running trainer container"
                proxy.send_signal(signal.SIGKILL)  # the "engine" is gone mid-training
                proxy.wait()
                row = future.result(timeout=60)
        print(f"\nengine stopped -> {row.error}")
        assert row.status == "failed", (row.status, row.error)
        assert row.error.startswith("Docker Engine error:"), row.error
        assert "\n" not in row.error and "Traceback" not in row.error
        assert row.log_tail and "injected fault: sleeping" in row.log_tail
        assert row.artifact_sha256 is None and artifact_files(lab) == []

        # The builder could not remove its container through a dead engine; with the real
        # engine back, `check` reports it and `gc` removes it.
        if real_host:
            monkeypatch.setenv("DOCKER_HOST", real_host)
        else:
            monkeypatch.delenv("DOCKER_HOST")
        assert len(our_containers(real, registry, row.id)) == 1, "the container is gone already"
        found = run_cli("check", "--json")
        assert [f["kind"] for f in json.loads(found.stdout)["findings"]] == ["leftover_container"]
        collected = run_cli("gc", "--json")
        assert collected.returncode == 0, collected.stderr
        wait_until(lambda: not our_containers(real, registry, row.id), "gc to remove it", 30)
    finally:
        for container in our_containers(real, registry, row.id) if row is not None else []:
            container.remove(force=True)
        real.close()
    check_passes()


# --- (c) disk full while the artifact is written ---------------------------------------------
@contextlib.contextmanager
def tiny_tmpfs(target: Path, size: str) -> Iterator[Path]:
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(target)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        reason = f"cannot mount a tmpfs (needs root/CAP_SYS_ADMIN): {done.stderr.strip()}"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"required under CI=true: {reason}", pytrace=False)
        pytest.skip(reason)
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_disk_full_while_storing_the_artifact(registry: Registry, lab: Path) -> None:
    """The dataset fits; then the disk fills up (another tenant's file) and the model does not."""
    from core.artifacts import open_store

    with tiny_tmpfs(lab / "mnt", "2m") as mount:
        store = open_store(str(mount / "store"))
        request = builds.TrainRequest(
            recipe="tfidf-logreg", backend="local", params={"min_df": 1}
        )  # its artifact (~15 KB) will not fit in the 8 KB left
        row = builds.submit(request, registry, store).version
        assert list(store.digests("dataset")) == [row.data_sha256]
        free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
        # another tenant fills the device (outside the store): 8 KB stay free
        with open(mount / "filler", "wb") as filler, contextlib.suppress(OSError):
            filler.write(b"\0" * max(0, free - 8192))
        row = builds.execute(row.id, registry, store)
        print(f"\ndisk full -> {row.error}")
        assert row.status == "failed", (row.status, row.error)
        assert "No space left on device" in row.error, row.error
        assert row.error.startswith("OSError: [Errno 28]")
        assert row.artifact_sha256 is None
        assert "wrote model.joblib" in row.log_tail  # training itself had finished
        left = sorted(p.relative_to(mount / "store") for p in (mount / "store").rglob("*.*"))
        assert [p.parts[0] for p in left] == ["datasets"], f"partial files left: {left}"
        assert list(store.digests()) == []
        from core.maintenance import check

        report = check(registry, store)
        assert report.ok, report.findings
    check_passes()


# --- (d) the registry file is read-only -------------------------------------------------------
def db_rows(url: str) -> list[tuple]:
    registry = Registry(url, migrate=False)
    try:
        with registry.engine.connect() as conn:
            tables = [
                r[0]
                for r in conn.exec_driver_sql(
                    "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"
                )
            ]
            return [
                (table, *row)
                for table in tables
                for row in conn.exec_driver_sql(f'SELECT * FROM "{table}" ORDER BY 1')
            ]
    finally:
        registry.engine.dispose()


def test_read_only_registry(registry: Registry, lab: Path) -> None:
    row, _ = builds.train(builds.TrainRequest(recipe="nb-bow", backend="local"), registry)
    assert row.status == "ready"
    registry.engine.dispose()  # last connection closed: the WAL is checkpointed into the file
    db = lab / "registry.db"
    url = f"sqlite:///{db}"
    before_rows, before_bytes = db_rows(url), hashlib.sha256(db.read_bytes()).hexdigest()
    read_only = {"REGISTRY_URL": f"sqlite:///file:{db}?mode=ro&uri=true", **DEAD_DOCKER}

    shown = run_cli("show", "1", "--json", env=read_only)  # reading still works
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "ready"
    for args in (
        ("promote", "1", "--alias", "champion"),
        ("train", "--recipe", "nb-bow", "--backend", "local", "--seed", "7"),
        ("import", str(lab / "missing.zip")),  # BadInput comes first: exit 2, as usual
    ):
        done = run_cli(*args, env=read_only)
        if args[0] == "import":
            assert done.returncode == 2, done.stderr
            continue
        assert done.returncode == 1, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, (args, done.stderr)
        print(f"\nread-only {args[0]} -> {lines[0]}")
        assert lines[0].startswith("error: the registry is read-only"), lines[0]
        assert "Traceback" not in done.stderr and "Warning" not in done.stderr

    assert hashlib.sha256(db.read_bytes()).hexdigest() == before_bytes
    wal = Path(f"{db}-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    assert db_rows(url) == before_rows
    junk = ROOT / "file:" / str(db.parent).lstrip("/")  # cwd of the CLI is ROOT
    assert not junk.exists(), "the URI filename was taken for a folder name"
    assert artifact_files(lab) and len(artifact_files(lab)) == 1
    check_passes()
