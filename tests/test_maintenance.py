"""`check` and `gc` find and clean what builds leave behind, and never stop half way.

* a stray file in the artifact store is reported, left alone, and `gc` goes on;
* a version queued with no worker (the process died between creating it and launching its
  worker) is flagged by `check` after the grace period and ended as failed by `gc`;
* work folders and trainer containers of builds that ended are reported and removed;
* one item that cannot be removed is reported as an error; the rest still go.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from core import builds
from core.artifacts import ArtifactStore
from core.maintenance import check, gc
from core.registry import Registry
from core.schema import FAILED
from tests.conftest import SAMPLE
from tests.helpers import ROOT, log_of, run_cli, wait_until

NO_ENGINE = {"DOCKER_HOST": "unix:///tmp/altruism-lab-nonexistent.sock"}

pytestmark = pytest.mark.both_backends


def kinds(report: Any) -> list[str]:
    return sorted(f["kind"] for f in report.findings)


def test_a_stray_file_is_reported_and_gc_goes_on(lab: Path, registry: Registry, store) -> None:
    stray = lab / "artifacts" / "zz" / "notes.joblib"
    stray.parent.mkdir(parents=True)
    stray.write_text("a note someone left here")
    unreferenced, _ = store.put_bytes(b"nothing refers to this", "model")
    assert kinds(check(registry, store)) == ["stray_file", "unreferenced_artifact"]
    done = run_cli("gc", "--json", env=NO_ENGINE)
    assert done.returncode == 0, done.stderr
    assert sorted(f["kind"] for f in json.loads(done.stdout)["findings"]) == [
        "artifact",
        "stray_file",
    ]
    assert stray.is_file(), "gc removed a file it does not own"
    assert not store.exists(unreferenced)


def test_one_failing_removal_is_reported_and_the_rest_still_go(
    registry: Registry, store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = store.put_bytes(b"first unreferenced", "model")
    second, _ = store.put_bytes(b"second unreferenced", "model")
    real_remove = store.remove

    def remove(sha256: str, kind: str = "model") -> bool:
        if sha256 == min(first, second):
            raise PermissionError("read-only file")
        return real_remove(sha256, kind)

    monkeypatch.setattr(store, "remove", remove)
    report = gc(registry, store)
    assert kinds(report) == ["artifact", "error"]
    assert store.exists(min(first, second)) and not store.exists(max(first, second))


def test_a_queued_version_without_a_worker_is_ended(
    registry: Registry, store, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = builds.TrainRequest(recipe="nb-bow", backend="local", data_path=SAMPLE)
    row = builds.submit(request, registry, store).version  # ...and the process dies here
    assert check(registry, store).ok, "a fresh queued build is not stuck yet"
    monkeypatch.setenv("QUEUED_GRACE_S", "0")
    findings = check(registry, store).findings
    assert [f["kind"] for f in findings] == ["stuck_build"]
    assert "queued" in findings[0]["message"]
    report = gc(registry, store)
    assert "stuck_build" in kinds(report)
    ended = registry.get_by_id(row.id)
    assert ended.status == FAILED and "no worker" in ended.error
    assert check(registry, store).ok


def test_a_sigkilled_build_leaves_nothing_after_gc(lab: Path, registry: Registry, store) -> None:
    """SIGKILL `run-build` mid-training: gc fails the version and removes its work folder."""
    request = builds.TrainRequest(recipe="nb-bow", backend="local", fault="sleep:60")
    row = builds.submit(request, registry, store).version
    runner = builds.launch(row.id, registry)
    wait_until(lambda: "injected fault: sleeping" in log_of(row), "training", timeout_s=120)
    assert [v for _, v in builds.work_dirs(registry)] == [row.id]
    os.killpg(runner, signal.SIGKILL)
    os.waitpid(runner, 0)
    found = kinds(check(registry, store))
    assert found == ["leftover_work_dir", "stuck_build"], found
    report = gc(registry, store)
    assert registry.get_by_id(row.id).status == FAILED
    assert not [f for f in report.findings if f["kind"] == "error"], report.findings
    assert builds.work_dirs(registry) == []
    wait_until(lambda: check(registry, store).ok, "a clean check", timeout_s=30)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.docker
def test_a_container_of_an_ended_build_is_found_and_removed(
    registry: Registry, store: ArtifactStore
) -> None:
    """A trainer container whose version is no longer active (its run-build was SIGKILLed)
    is reported by `check` and `gc --dry-run`, removed by `gc`; other registries' are not."""
    from core.builders.docker import CONTAINER_LABEL, REGISTRY_LABEL, docker_client

    client = docker_client()
    row = registry.create_version(
        recipe="nb-bow", params={}, threshold=0.5, builder="docker", fingerprint="0" * 64,
        data_path="", data_sha256="0" * 64, split_seed=1, split_test_size=0.2,
    )  # fmt: skip
    registry.fail(row.id, "its run-build process was killed")
    base = builds.settings().docker_base_image
    ours = client.containers.run(
        base, ["sleep", "600"], detach=True, network_mode="none",
        labels={CONTAINER_LABEL: str(row.id), REGISTRY_LABEL: registry.identity},
    )  # fmt: skip
    theirs = client.containers.run(
        base, ["sleep", "600"], detach=True, network_mode="none",
        labels={CONTAINER_LABEL: str(row.id), REGISTRY_LABEL: "another-registry"},
    )  # fmt: skip
    try:
        assert kinds(check(registry, store)) == ["leftover_container"]
        assert kinds(gc(registry, store, dry_run=True)) == ["leftover_container"]
        client.containers.get(ours.id)  # a dry run removes nothing
        assert kinds(gc(registry, store)) == ["leftover_container"]
        wait_until(lambda: not _exists(client, ours.id), "the container to go", timeout_s=30)
        assert _exists(client, theirs.id), "gc removed another registry's container"
        assert check(registry, store).ok
    finally:
        for container in (ours, theirs):
            if _exists(client, container.id):
                container.remove(force=True)


@pytest.mark.docker
def test_a_container_left_on_another_swarm_node_is_found_and_removed(
    registry: Registry, store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finished build task's container on a worker node (an engine only SWARM_NODE_HOSTS
    names; this machine's own engine is out of reach) is reported and removed too."""
    from core.builders.docker import CONTAINER_LABEL, REGISTRY_LABEL, docker_client

    client = docker_client()
    node_url = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    row = registry.create_version(
        recipe="nb-bow", params={}, threshold=0.5, builder="swarm", fingerprint="1" * 64,
        data_path="", data_sha256="0" * 64, split_seed=1, split_test_size=0.2,
    )  # fmt: skip
    registry.fail(row.id, "its driver was killed")
    left = client.containers.create(
        builds.settings().docker_base_image, ["true"], network_mode="none",
        labels={CONTAINER_LABEL: str(row.id), REGISTRY_LABEL: registry.identity},
    )  # fmt: skip
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setenv("SWARM_NODE_HOSTS", f"worker-1={node_url}")
    try:
        found = check(registry, store)
        assert kinds(found) == ["leftover_container"]
        assert kinds(gc(registry, store)) == ["leftover_container"]
        wait_until(lambda: not _exists(client, left.id), "the container to go", timeout_s=30)
        assert check(registry, store).ok
    finally:
        if _exists(client, left.id):
            left.remove(force=True)


def _exists(client: Any, container_id: str) -> bool:
    import docker.errors

    try:
        client.containers.get(container_id)
        return True
    except docker.errors.NotFound:
        return False


def test_gc_beside_a_starting_build_spares_its_work_folder(registry: Registry, store) -> None:
    """A work folder of a build that is running is not a leftover."""
    request = builds.TrainRequest(recipe="nb-bow", backend="local", data_path=SAMPLE)
    row = builds.submit(request, registry, store).version
    registry.claim_for(row.id, os.getpid())
    registry.mark_running(row.id, "training")
    folder = builds.new_work_dir(registry, row)
    try:
        assert check(registry, store).ok
        gc(registry, store)
        assert folder.is_dir()
    finally:
        folder.rmdir()


def test_check_during_a_build_does_not_call_its_files_unreferenced(lab: Path) -> None:
    """`check` in a loop from another process while a build registers: never a finding."""
    loop = (
        "import json,sys,time\n"
        "from core.artifacts import open_store\n"
        "from core.maintenance import check\n"
        "from core.registry import Registry\n"
        "r, s, seen, end = Registry(), open_store(), [], time.time() + float(sys.argv[1])\n"
        "while time.time() < end:\n"
        "    seen += [f['kind'] for f in check(r, s).findings]\n"
        "print(json.dumps(seen))\n"
    )
    checker = subprocess.Popen(
        [sys.executable, "-c", loop, "20"], cwd=ROOT, env=dict(os.environ),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 15
    seed = 0
    while time.monotonic() < deadline:
        seed += 1
        request = builds.TrainRequest(recipe="nb-bow", backend="local", data_path=SAMPLE, seed=seed)
        row, _ = builds.train(request, Registry())
        assert row.status == "ready", row.error
    out, err = checker.communicate(timeout=60)
    assert checker.returncode == 0, err[-2000:]
    assert json.loads(out) == [], f"check reported {sorted(set(json.loads(out)))} mid-build"


def test_a_build_running_on_another_host_is_left_to_that_host(
    registry: Registry, store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shared registry: a pid means nothing on another machine, so check, gc and list
    leave its build alone; the same dead pid on this host is a stuck build."""
    import socket

    monkeypatch.setenv("QUEUED_GRACE_S", "0")
    dead_pid = 2**22 + 4711  # above the largest pid_max Linux allows: never a live process
    request = builds.TrainRequest(recipe="nb-bow", backend="local", data_path=SAMPLE)
    row = builds.submit(request, registry, store).version
    registry._update(row.id, status="running", worker_pid=dead_pid, worker_host="builder-2")
    assert check(registry, store).ok, "a build on another host is not ours to judge"
    assert "stuck_build" not in kinds(gc(registry, store))
    assert run_cli("list", "--json").returncode == 0
    assert registry.get_by_id(row.id).status == "running"

    registry._update(row.id, worker_host=socket.gethostname())
    findings = check(registry, store).findings
    assert [f["kind"] for f in findings] == ["stuck_build"], findings
    assert f"pid {dead_pid}" in findings[0]["message"]
