"""Builds on a real two-node Docker Swarm (issue 25, items 3 and 4).

The swarm (`two_node_swarm`) is two private engines: a manager in this machine's network
namespace and a worker in its own network namespace, under its own hostname, joined over a
veth pair; the registry listens on the veth's host side. SWARM_NODE_HOSTS names the worker's
engine by its hostname. Builds are sent to the worker by draining the manager while they
are scheduled. The node-down test kills the worker's engine like a dead host and starts it
again at its end.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from core import builds
from core.maintenance import check, gc
from core.registry import Registry
from core.schema import ModelVersion
from tests.helpers import log_of, run_cli, wait_until

pytestmark = pytest.mark.docker
LABELLED = ("ps", "-aq", "--filter", "label=altruism-lab.version-id")


@pytest.fixture
def nodes(two_node_swarm, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """This test's process and its children talk to the two-node swarm's manager."""
    cluster = two_node_swarm
    env = {
        "DOCKER_HOST": cluster.manager.host,
        "SWARM_IMAGE_REGISTRY": cluster.registry.address,
        "SWARM_NODE_HOSTS": f"{cluster.worker_hostname}={cluster.worker.host}",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield cluster
    cluster.set_availability(cluster.manager, "active")
    left = cluster.manager.docker("service", "ls", "-q").stdout.split()
    for service in left:
        cluster.manager.docker("service", "rm", service)
    assert left == [], "a build service was left behind"


@contextmanager
def on_the_worker(cluster: Any) -> Iterator[None]:
    """New tasks go to the worker: the manager is drained meanwhile."""
    cluster.set_availability(cluster.manager, "drain")
    try:
        yield
    finally:
        cluster.set_availability(cluster.manager, "active")


def _json(done: Any) -> Any:
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def _job_images(engine: Any) -> list[str]:
    listed = engine.docker("images", "--format", "{{.Repository}}@{{.Digest}}").stdout.split()
    return [name for name in listed if "altruism-lab/job" in name]


def test_two_node_sweep_leaves_nothing_on_the_worker(nodes: Any, lab: Path) -> None:
    cluster = nodes
    with on_the_worker(cluster):
        out = _json(
            run_cli("train", "--recipe", "nb-bow", "--backend", "swarm", "--grid",
                    "alpha=0.5,1", "--json", "--quiet")
        )  # fmt: skip
    versions = out["versions"]
    assert [v["status"] for v in versions] == ["ready", "ready"], [v["error"] for v in versions]
    ran_on = {v["provenance"]["swarm"]["node_hostname"] for v in versions}
    assert ran_on == {cluster.worker_hostname}, ran_on
    for engine in (cluster.worker, cluster.manager):
        assert engine.docker(*LABELLED).stdout.split() == [], "a task container was left"
        assert _job_images(engine) == [], "a job image (it holds the dataset) was left"
    from core.artifacts import open_store

    registry, store = Registry(), open_store()
    report = check(registry, store)
    assert report.ok, report.findings
    assert gc(registry, store).findings == []


def _submit(registry: Registry, retries: int, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, int]:
    """A sleeping build launched in its own process with SWARM_RETRIES=`retries`."""
    monkeypatch.setenv("SWARM_RETRIES", str(retries))
    request = builds.TrainRequest(recipe="nb-bow", backend="swarm", force=True,
                                  fault="sleep:40", seed=retries)  # fmt: skip
    row = builds.submit(request, registry).version
    return row, builds.launch(row.id, registry)


def _ended(registry: Registry, row: ModelVersion) -> ModelVersion | None:
    now = registry.get_by_id(row.id)
    return now if now.status in ("ready", "failed", "cancelled") else None


def _flagged(registry: Registry, row: ModelVersion) -> list[dict[str, Any]]:
    from core.artifacts import open_store

    found = check(registry, open_store()).findings
    return [f for f in found if f["kind"] == "build_on_down_node" and f["version_id"] == row.id]


def test_node_down_build_is_retried_elsewhere_or_fails_naming_the_node(
    nodes: Any, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = nodes
    worker = cluster.worker_hostname
    with on_the_worker(cluster):
        retried, retried_pid = _submit(registry, 1, monkeypatch)
        failing, failing_pid = _submit(registry, 0, monkeypatch)
        assert failing.id != retried.id
        for row in (retried, failing):
            wait_until(lambda r=row: "injected fault: sleeping" in log_of(r), "training",
                       timeout_s=180)  # fmt: skip
    assert len(cluster.worker.docker(*LABELLED).stdout.split()) == 2, "not both on the worker"
    os.killpg(failing_pid, signal.SIGSTOP)  # its driver sleeps through the node's death
    try:
        cluster.worker.kill()
        killed = time.monotonic()
        wait_until(lambda: "went down; retrying" in log_of(retried), "a retry", timeout_s=60)
        retry_s = time.monotonic() - killed
        flagged = wait_until(lambda: _flagged(registry, failing), "check to flag it", 60)
        flag_s = time.monotonic() - killed
    finally:
        os.killpg(failing_pid, signal.SIGCONT)
    assert flagged[0]["node"] == worker and worker in flagged[0]["message"], flagged
    failed = wait_until(lambda: _ended(registry, failing), "the build to fail", timeout_s=30)
    fail_s = time.monotonic() - killed
    assert failed.status == "failed" and failed.error == f"node {worker} went down", failed.error
    assert f"node {worker} went down; retrying the build on another node" in log_of(retried)
    ready = wait_until(lambda: _ended(registry, retried), "the retried build", timeout_s=240)
    assert ready.status == "ready", ready.error
    prov = ready.provenance["swarm"]
    assert (prov["retries"], prov["down_nodes"]) == (1, [worker]), prov
    assert prov["node_hostname"] == socket.gethostname(), prov  # the manager's node
    for pid in (retried_pid, failing_pid):
        os.waitpid(pid, 0)
    print(f"node down -> retry {retry_s:.1f}s, check flagged {flag_s:.1f}s, "
          f"failed {fail_s:.1f}s after the worker was killed")  # fmt: skip
    assert retry_s < 60 and fail_s < 60
    _the_worker_comes_back_and_gc_clears_it(cluster, registry)


def _the_worker_comes_back_and_gc_clears_it(cluster: Any, registry: Registry) -> None:
    """What the lost tasks left on the worker (their containers, the job images it pulled:
    they hold the dataset) goes with `gc` once the worker's engine answers again."""
    from core.artifacts import open_store

    cluster.worker.start()
    ready = f"{cluster.worker_hostname} Ready"
    listing = ("node", "ls", "--format", "{{.Hostname}} {{.Status}}")
    wait_until(lambda: ready in cluster.manager.docker(*listing).stdout, "the worker", 60)
    store = open_store()
    report = gc(registry, store)
    assert not report.count("error", "unreachable_engine"), report.findings
    assert cluster.worker.docker(*LABELLED).stdout.split() == [], "a task container stayed"
    assert _job_images(cluster.worker) == [], "a job image stayed on the worker"
    assert check(registry, store).ok, check(registry, store).findings
    print(f"gc after the worker came back: {[f['kind'] for f in report.findings]}")
