"""The swarm builder on a real single-node Docker Swarm (issue 13, part 2).

The swarm is the private second engine (`remote_engine`: it cannot see this machine's files)
after `docker swarm init` on loopback ports, with Debian's docker-registry as the registry
every node pulls from (`swarm_cluster`). The shared engine never joins a swarm.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from core import builds
from core.maintenance import check, gc
from core.modelcard import model_card, model_card_markdown
from core.registry import Registry
from core.schema import ModelVersion
from tests.helpers import artifact_files, log_of, run_cli, wait_until

pytestmark = pytest.mark.docker
SWARM_KEYS = ("swarm_id", "node_id", "node_hostname", "service_id", "service_name", "task_id")


@pytest.fixture
def swarm(swarm_cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """This test's process and its CLI children talk to the swarm manager."""
    engine, image_registry = swarm_cluster
    env = {"DOCKER_HOST": engine.host, "SWARM_IMAGE_REGISTRY": image_registry.address}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield env
    left = engine.docker("service", "ls", "-q").stdout.split()
    for service in left:  # never let one test's service leak into the next
        engine.docker("service", "rm", service)
    labelled = ("ps", "-aq", "--filter", "label=altruism-lab.version-id")
    containers = engine.docker(*labelled).stdout.split()
    for container in containers:
        engine.docker("rm", "-f", container)
    assert left == [], "a build service was left behind"
    assert containers == [], "a finished task's container was left behind"


def _json(done: Any) -> Any:
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def _registry_tags(address: str, repository: str) -> list[str]:
    url = f"http://{address}/v2/{repository}/tags/list"
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read()).get("tags") or []


def test_swarm_build_is_a_one_off_job_whose_artifact_matches_the_docker_builder(
    swarm: dict[str, str], swarm_cluster, lab: Path
) -> None:
    engine, image_registry = swarm_cluster
    train = ("train", "--recipe", "tfidf-logreg", "--json", "--quiet")
    built = _json(run_cli(*train, "--backend", "swarm", "--cpus", "1", "--memory", "1g"))
    assert built["status"] == "ready", built["error"]
    assert built["builder"] == "swarm"
    prov = built["provenance"]["swarm"]
    assert all(prov.get(key) for key in SWARM_KEYS), prov
    info = json.loads(engine.docker("info", "--format", "{{json .Swarm}}").stdout)
    assert prov["swarm_id"] == info["Cluster"]["ID"] and prov["node_id"] == info["NodeID"]
    assert prov["trainer_image"].startswith(f"{image_registry.address}/altruism-lab/trainer@")
    assert (prov["memory_limit"], prov["cpu_limit"]) == ("1g", 1.0)
    assert prov["train_network"] == "altruism-lab-jobs"
    network = json.loads(engine.docker("network", "inspect", "altruism-lab-jobs").stdout)[0]
    assert network["Driver"] == "overlay" and network["Internal"] is True  # no route out
    # the trainer stays in the registry for every node; the per-build image (it holds the
    # dataset) is gone from the registry and from the engine
    assert _registry_tags(image_registry.address, "altruism-lab/trainer")
    assert _registry_tags(image_registry.address, "altruism-lab/job") == []
    assert engine.docker("images", "-q", "*/altruism-lab/job").stdout.strip() == ""
    registry = Registry()
    text = registry.log_text(built["id"])
    assert "task complete" in text and "fit done" in text  # task states and `service logs`
    card = model_card_markdown(model_card(registry.get_by_id(built["id"]), registry))
    assert f"service `{prov['service_name']}`" in card and prov["trainer_image"] in card

    again = _json(run_cli("reproduce", str(built["version"]), "--json", "--quiet"))
    assert again["identical"] is True

    # the docker builder on the same engine gives the same bytes from the same image
    docker = _json(run_cli(*train, "--backend", "docker", "--force"))
    assert docker["artifact_sha256"] == built["artifact_sha256"]
    assert docker["provenance"]["docker"]["image_id"] == prov["image_id"]


def _submit(registry: Registry, **fields: Any) -> ModelVersion:
    request = builds.TrainRequest(recipe="nb-bow", backend="swarm", force=True, **fields)
    return builds.submit(request, registry).version


def _sleeping(row: ModelVersion) -> None:
    wait_until(lambda: "injected fault: sleeping" in log_of(row), "training", timeout_s=300)


def _services(engine: Any, row: ModelVersion) -> list[str]:
    found = engine.docker(
        "service", "ls", "-q", "--filter", f"label=altruism-lab.version-id={row.id}"
    )
    return found.stdout.split()


def _assert_ended_cleanly(row: ModelVersion, lab: Path, engine: Any, status: str, why: str) -> None:
    assert row.status == status and why in (row.error or ""), (row.status, row.error)
    assert row.artifact_sha256 is None and artifact_files(lab) == []
    assert _services(engine, row) == []


def test_swarm_cancel_and_timeout_remove_the_service(
    swarm: dict[str, str], swarm_cluster, registry: Registry, lab: Path
) -> None:
    engine, _ = swarm_cluster
    row = _submit(registry, fault="sleep:120")
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(builds.execute, row.id, registry)
        _sleeping(row)
        assert len(_services(engine, row)) == 1
        requested = time.monotonic()
        registry.request_cancel(row.id)
        row = future.result(timeout=120)
    assert time.monotonic() - requested < 30
    _assert_ended_cleanly(row, lab, engine, "cancelled", "cancelled")

    started = time.monotonic()
    row = builds.execute(_submit(registry, fault="sleep:120", timeout_s=8).id, registry)
    assert time.monotonic() - started < 90
    _assert_ended_cleanly(row, lab, engine, "failed", "timed out after 8s")


def _kill_driver(row: ModelVersion, registry: Registry) -> int:
    """Launch the version's build detached, SIGKILL its driver while the task sleeps."""
    runner = builds.launch(row.id, registry)
    _sleeping(row)
    os.killpg(runner, signal.SIGKILL)  # run-build leads its own session
    os.waitpid(runner, 0)
    return runner


def test_reconcile_adopts_a_swarm_build_whose_driver_was_killed(
    swarm: dict[str, str], swarm_cluster, registry: Registry, store: Any
) -> None:
    """Issue 25 item 2: the swarm is the durable queue. The driver dies mid-build, the task
    runs on; `reconcile` collects it, registers the version ready with the artifact an
    uninterrupted build makes (byte for byte), and removes the service."""
    engine, _ = swarm_cluster
    whole = builds.execute(_submit(registry, fault="sleep:6").id, registry)
    assert whole.status == "ready", whole.error
    row = _submit(registry, fault="sleep:6")
    runner = _kill_driver(row, registry)
    assert registry.get_by_id(row.id).status == "running"
    assert len(_services(engine, row)) == 1  # the task runs on without its driver
    done = run_cli("reconcile", timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"v{row.version}: adopted, ready" in done.stdout, done.stdout
    adopted = registry.get_by_id(row.id)
    assert adopted.status == "ready", adopted.error
    assert adopted.artifact_sha256 == whole.artifact_sha256
    assert store.read_verified(adopted.artifact_sha256, "model")  # stored, hash verified
    swarm_facts = adopted.provenance["swarm"]
    assert swarm_facts["adopted_after_s"] > 0 and swarm_facts["trainer_image"]
    assert swarm_facts["image_id"] == whole.provenance["swarm"]["image_id"]
    assert "its launcher is gone" in log_of(adopted)
    assert adopted.worker_pid != runner
    assert _services(engine, row) == []
    again = run_cli("reconcile")
    assert again.returncode == 0 and "no swarm build to adopt" in again.stdout
    assert check(registry, store).ok


def test_reconcile_hands_an_orphan_to_a_process_that_honours_cancel(
    swarm: dict[str, str], swarm_cluster, registry: Registry, store: Any
) -> None:
    """Recovery (`check` here; also gc, list, the dashboard) adopts instead of failing: a
    detached `reconcile` takes the lease; a cancel then stops the task and the service."""
    engine, _ = swarm_cluster
    row = _submit(registry, fault="sleep:300")
    runner = _kill_driver(row, registry)
    assert len(_services(engine, row)) == 1
    kinds = sorted(f["kind"] for f in check(registry, store).findings)
    assert "adopted_build" in kinds, kinds
    adopted = registry.get_by_id(row.id)
    assert adopted.status == "running" and adopted.worker_pid not in (None, runner)
    wait_until(lambda: _held_by_its_worker(registry, row), "the reconcile process", timeout_s=30)
    assert not check(registry, store).findings  # adopted, alive: nothing to report
    report = gc(registry, store)
    assert not [f for f in report.findings if f["kind"] == "error"], report.findings
    assert registry.get_by_id(row.id).status == "running"  # gc leaves an adopted build be
    registry.request_cancel(row.id)
    wait_until(lambda: registry.get_by_id(row.id).status == "cancelled", "the cancel", timeout_s=60)
    wait_until(lambda: _services(engine, row) == [], "the service to go", timeout_s=30)
    wait_until(lambda: check(registry, store).ok, "a clean check", timeout_s=30)


def _held_by_its_worker(registry: Registry, row: ModelVersion) -> bool:
    """Whether the version's lease is held by its recorded worker process (the detached
    `reconcile`, once the process that handed it over has claimed it for that one)."""
    from core.registry.lifecycle import pid_namespace

    now = registry.get_by_id(row.id)
    holder = f"{socket.gethostname()} pid {now.worker_pid} ns {pid_namespace() or '?'}"
    return now.lease_holder == holder


def test_swarm_build_whose_service_is_gone_fails_as_an_orphan(
    swarm: dict[str, str], swarm_cluster, registry: Registry, store: Any
) -> None:
    """With nothing left to adopt (the service was removed too), recovery fails the build
    as any orphan and gc leaves nothing behind."""
    engine, _ = swarm_cluster
    row = _submit(registry, fault="sleep:300")
    _kill_driver(row, registry)
    for service in _services(engine, row):
        engine.docker("service", "rm", service)
    report = gc(registry, store)
    assert not [f for f in report.findings if f["kind"] == "error"], report.findings
    ended = registry.get_by_id(row.id)
    assert ended.status == "failed" and "died before finishing" in (ended.error or "")
    wait_until(lambda: check(registry, store).ok, "a clean check", timeout_s=30)


def test_swarm_is_refused_clearly_without_a_registry_or_a_manager(
    swarm: dict[str, str], lab: Path
) -> None:
    train = ("train", "--recipe", "nb-bow", "--backend", "swarm")
    unset = run_cli(*train, env={"SWARM_IMAGE_REGISTRY": ""})
    assert unset.returncode == 2 and "SWARM_IMAGE_REGISTRY" in unset.stderr, unset.stderr
    bad = run_cli(*train, env={"SWARM_IMAGE_REGISTRY": "http://x/y"})
    assert bad.returncode == 2 and "host[:port]" in bad.stderr, bad.stderr
    plain = run_cli(*train, env={"DOCKER_HOST": ""})  # the shared engine: not a swarm
    assert plain.returncode == 2 and "not part of a swarm" in plain.stderr, plain.stderr
    for done in (unset, bad, plain):
        assert "Traceback" not in done.stderr
    assert _json(run_cli("list", "--json")) == []  # nothing was queued


def test_swarm_sweep_runs_every_combination_on_the_cluster(
    swarm: dict[str, str], lab: Path
) -> None:
    out = _json(
        run_cli("train", "--recipe", "nb-bow", "--backend", "swarm", "--grid", "alpha=0.5,1,2",
                "--json", "--quiet")
    )  # fmt: skip
    assert out["builds"] == 3
    versions = out["versions"]
    assert [v["status"] for v in versions] == ["ready"] * 3
    assert {v["builder"] for v in versions} == {"swarm"}
    assert {v["params"]["alpha"] for v in versions} == {0.5, 1.0, 2.0}
    spans = [(v["started_at"], v["finished_at"]) for v in versions]
    assert any(s2 < f1 for (s1, f1) in spans for (s2, _) in spans if s2 > s1), (
        "the cluster ran the sweep one build at a time",
        spans,
    )
