"""Build lifecycle with the local builder: auto fallback, detached builds, cancel, timeout,
and a worker killed with SIGKILL (marked failed by the next command that opens the registry).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from core import builds
from core.registry import Registry
from core.schema import ModelVersion
from tests.helpers import artifact_files, log_of, run_cli, wait_until

DEAD_DOCKER = {"DOCKER_HOST": "unix:///tmp/altruism-lab-nonexistent.sock"}
WAIT_S = 120
pytestmark = pytest.mark.both_backends


def worker_pid(row: ModelVersion) -> int:
    """The pid of the `core.worker` process, once it has started sleeping in training."""
    wait_until(
        lambda: "injected fault: sleeping" in log_of(row),
        "the worker to start training",
        timeout_s=WAIT_S,
    )
    return int(re.search(r"worker pid (\d+):", log_of(row)).group(1))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as handle:
        return handle.read().split(") ")[-1][:1] != "Z"
    return True


def submit_local(registry: Registry, **fields: Any) -> ModelVersion:
    request = builds.TrainRequest(recipe="nb-bow", backend="local", force=True, **fields)
    return builds.submit(request, registry).version


def assert_failed_cleanly(row: ModelVersion, lab: Path, reason: str, status: str = "failed"):
    assert row.status == status, (row.status, row.error)
    assert row.error and reason in row.error, row.error
    assert row.log_tail and row.log_tail.strip(), "no log tail recorded"
    assert row.artifact_sha256 is None
    assert artifact_files(lab) == [], "an artifact reached ARTIFACT_ROOT"


def test_auto_falls_back_to_local_without_an_engine(lab: Path) -> None:
    done = run_cli("train", "--recipe", "nb-bow", "--backend", "auto", "--json", env=DEAD_DOCKER)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["status"] == "ready"
    assert out["builder"] == "local"
    assert "worker" in out["provenance"] and "docker" not in out["provenance"]
    assert re.search(
        r"builder: local \(auto: no Docker Engine answered.*local builder", done.stderr
    )
    assert len(artifact_files(lab)) == 1


def test_docker_backend_without_an_engine_is_bad_input(lab: Path) -> None:
    done = run_cli("train", "--recipe", "nb-bow", "--backend", "docker", "--json", env=DEAD_DOCKER)
    assert done.returncode == 2
    assert "docker backend requested but no Docker Engine answered" in done.stderr
    assert done.stdout == ""
    assert Registry().all_versions() == []


def test_detached_build_returns_at_once_and_finishes(registry: Registry, lab: Path) -> None:
    started = time.monotonic()
    done = run_cli("train", "--recipe", "tfidf-logreg", "--backend", "local", "--detach", "--json")
    returned_after = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["status"] in ("queued", "running"), out
    assert "building in the background" in done.stderr
    row = builds.wait_for(out["id"], registry, timeout_s=WAIT_S, poll_s=0.2)
    assert row.status == "ready", row.error
    assert row.worker_pid is None
    assert len(artifact_files(lab)) == 1
    log = registry.log_text(row.id)
    assert "fit done" in log and "registered artifact" in log
    assert len(log.splitlines()) == len(set(log.splitlines())), "a line was logged twice"
    assert not log.rstrip().endswith("}"), "the version record was appended to the log"
    launcher = builds.launcher_log(registry, row.id)
    assert not launcher.exists() or launcher.read_text() == "", launcher.read_text()[:500]
    assert returned_after < 60


def test_cancel_a_detached_local_build(registry: Registry, lab: Path) -> None:
    row = submit_local(registry, fault="sleep:60")
    runner = builds.launch(row.id, registry)
    pid = worker_pid(row)
    started = time.monotonic()
    done = run_cli("cancel", str(row.version), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["cancel_requested"] is True
    row = builds.wait_for(row.id, registry, timeout_s=30, poll_s=0.2)
    assert time.monotonic() - started < 20
    assert_failed_cleanly(row, lab, "cancelled", status="cancelled")
    assert os.waitpid(runner, 0)[1] != 0  # `run-build` exits 1 for a cancelled build
    wait_until(lambda: not alive(pid), "the worker process to exit", timeout_s=10)


def test_cancel_a_queued_build_before_it_starts(registry: Registry, lab: Path) -> None:
    row = registry.request_cancel(submit_local(registry).id)
    assert row.status == "cancelled"
    assert "before it started" in row.error
    assert artifact_files(lab) == []


def test_local_build_timeout(registry: Registry, lab: Path) -> None:
    row = submit_local(registry, fault="sleep:60", timeout_s=3)
    started = time.monotonic()
    row = builds.execute(row.id, registry)
    assert time.monotonic() - started < 30
    assert_failed_cleanly(row, lab, "timed out after 3s")
    worker = re.search(r"worker pid (\d+):", row.log_tail)  # absent if imports took > 3 s
    assert worker is None or not alive(int(worker.group(1)))


def test_local_training_exception(registry: Registry, lab: Path) -> None:
    row = builds.execute(submit_local(registry, fault="raise").id, registry)
    assert_failed_cleanly(row, lab, "injected training fault")


def gone(pid: int) -> bool:
    """No such process, or a zombie nobody has reaped yet (it runs no more)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


WORKER_WITH_A_FOLD = """
import subprocess, sys, time
from core.worker import _exit_with_parent
_exit_with_parent(0.1)
fold = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print(fold.pid, flush=True)
time.sleep(120)
"""
LAUNCHER = """
import subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-c", sys.argv[1]], start_new_session=True)
print(worker.pid, flush=True)
time.sleep(120)
"""


def test_a_worker_whose_launcher_dies_takes_its_fold_processes_with_it() -> None:
    """A launcher killed outright: its worker (in a session of its own) stops, and so does
    what the worker forked for cross-validation folds (its process group)."""
    import subprocess
    import sys

    from core.builders.local import worker_env

    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, WORKER_WITH_A_FOLD],
        env=worker_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    worker = int(launcher.stdout.readline())
    fold = int(launcher.stdout.readline())  # the worker's stdout is the launcher's
    try:
        assert not gone(worker) and not gone(fold)
        assert os.getpgid(fold) == worker  # the fold is in the worker's process group
        launcher.kill()
        launcher.wait()
        wait_until(lambda: gone(worker) and gone(fold), "worker and fold to stop", timeout_s=10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker, signal.SIGKILL)
        launcher.stdout.close()


def test_killed_worker_is_marked_failed_by_list(registry: Registry, lab: Path) -> None:
    row = submit_local(registry, fault="sleep:60")
    pid = builds.launch(row.id, registry)
    child = worker_pid(row)
    assert registry.get_by_id(row.id).status == "running"
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)  # launch() made it our child: reap it
        # the worker lives in its own session: it notices its launcher is gone and stops
        wait_until(lambda: gone(child), "the worker to stop with its launcher", timeout_s=10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child, signal.SIGKILL)
    assert registry.get_by_id(row.id).status == "running"  # nobody noticed yet

    done = run_cli("list", "--json")
    assert done.returncode == 0, done.stderr
    listed = {v["id"]: v for v in json.loads(done.stdout)}
    assert listed[row.id]["status"] == "failed"
    assert f"build worker (pid {pid}) died" in listed[row.id]["error"]
    assert f"version {row.version}:" in done.stderr
    row = registry.get_by_id(row.id)
    assert row.status == "failed" and row.worker_pid is None
    assert artifact_files(lab) == []


@pytest.mark.parametrize("verb", ["list", "show"])
def test_a_live_worker_is_not_an_orphan(registry: Registry, verb: str) -> None:
    row = submit_local(registry, fault="sleep:60")
    runner = builds.launch(row.id, registry)
    worker_pid(row)
    try:
        args = [verb, "--json"] if verb == "list" else [verb, str(row.version), "--json"]
        done = run_cli(*args)
        assert done.returncode == 0, done.stderr
        assert registry.get_by_id(row.id).status == "running"
    finally:
        registry.request_cancel(row.id)
        assert builds.wait_for(row.id, registry, timeout_s=30, poll_s=0.2).status == "cancelled"
        os.waitpid(runner, 0)
