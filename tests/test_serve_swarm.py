"""Two replicas of `python -m core serve` as one Swarm service, sharing one registry (issue 24,
part 4): both answer with the champion's version, and both follow a promote.

The swarm is the tests' private single-node swarm (`swarm_cluster`: a second dockerd in its
own mount namespace, started with `--bridge=none --iptables=false`, so there is no ingress
routing mesh and no bridge network). What is tested is therefore the closest faithful setup:
`docker service create --replicas 2 --network host` from the Dockerfile's serve image; each
replica binds its own loopback port (a base port plus `{{.Task.Slot}}`, since two tasks on one
host network cannot share one), and both bind-mount the same folder holding the SQLite
registry and the artifact store (outside the folders the private engine cannot see). The
test promotes through the registry from this process, as a person would with the CLI.
docs/deploy.md says the same.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.registry import Registry
from tests.helpers import build_serve_image, wait_until
from tests.test_serving import BODY, free_port, two_versions

pytestmark = pytest.mark.docker
IMAGE_USER = 10001  # the Dockerfile's `trainer` user
TOKEN = "swarm-token"


def _serve_image() -> tuple[str, bool]:
    """The Dockerfile's serve stage on the shared engine; whether this call created the tag."""
    import docker

    from core.provenance import code_fingerprint

    client = docker.from_env(timeout=600)
    tag = f"altruism-lab/serve:swarm-test-{code_fingerprint()[:12]}"
    try:
        existed = bool(client.images.list(name=tag))
    finally:
        client.close()
    build_serve_image(tag)
    return tag, not existed


@pytest.fixture
def shared_lab() -> Iterator[Path]:
    """A registry with two versions in a folder the private engine can bind-mount (not under
    the checkout or the temporary folder, which it sees as empty), owned by the image's user."""
    home = Path(f"/var/lib/altruism-serve-swarm-{uuid.uuid4().hex[:10]}")
    home.mkdir(parents=True)
    try:
        two_versions(home)
        (home / "logs").mkdir(exist_ok=True)
        for path in [home, *home.rglob("*")]:
            os.chown(path, IMAGE_USER, IMAGE_USER)
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _answer(port: int) -> dict:
    out = httpx.post(
        f"http://127.0.0.1:{port}/v1/models/champion/predict",
        json=BODY,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert out.status_code == 200, out.text
    return out.json()


def _ready(port: int) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    return False


def test_serve_two_replica_swarm_service_follows_a_promote(swarm_cluster, shared_lab: Path) -> None:
    engine, _ = swarm_cluster
    tag, created = _serve_image()
    name = f"altruism-serve-{uuid.uuid4().hex[:8]}"
    base = free_port()
    while not all(_port_free(base + slot) for slot in (1, 2)):
        base = free_port()
    try:
        engine.copy_image(tag)
        done = engine.docker(
            "service", "create", "--detach", "--name", name, "--replicas", "2",
            "--network", "host", "--no-resolve-image",
            "--mount", f"type=bind,source={shared_lab},target=/lab",
            "--env", "REGISTRY_URL=sqlite:////lab/registry.db",
            "--env", "ARTIFACT_ROOT=/lab/artifacts", "--env", "LOG_ROOT=/lab/logs",
            "--env", f"SERVE_TOKEN={TOKEN}", "--env", "SERVE_POLL_SECONDS=0.25",
            "--env", "SERVE_FLUSH_SECONDS=0.5", "--env", "SERVE_HOST_NAME={{.Task.Name}}",
            "--env", "SLOT={{.Task.Slot}}", "--env", f"BASE_PORT={base}",
            tag, "sh", "-c",
            'exec python -m core serve --host 127.0.0.1 --port "$((BASE_PORT + SLOT))"',
            timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-1000:]
        ports = [base + 1, base + 2]
        wait_until(
            lambda: all(_ready(p) for p in ports) or _failed(engine, name),
            "both replicas to be ready",
            timeout_s=120,
            poll_s=0.5,
        )
        assert not _failed(engine, name), _tasks(engine, name)
        tasks = [t for t in _tasks(engine, name) if t["DesiredState"] == "Running"]
        assert len(tasks) == 2, tasks
        registry = Registry(f"sqlite:///{shared_lab / 'registry.db'}")
        champion = registry.resolve("champion")
        answers = [_answer(p) for p in ports]
        assert [a["version"] for a in answers] == [champion.version] * 2
        assert {a["artifact_sha256"] for a in answers} == {champion.artifact_sha256}

        registry.promote(2, "champion")
        promoted = time.monotonic()
        wait_until(
            lambda: all(_answer(p)["version"] == 2 for p in ports),
            "both replicas to answer with v2",
            timeout_s=10,
            poll_s=0.1,
        )
        assert time.monotonic() - promoted < 3  # each polls every 0.25 s; a busy machine
        hosts = wait_until(
            lambda: len(h := _hosts(registry)) == 2 and h, "both replicas' aggregates", 30
        )
        assert all(h.startswith(f"{name}.") for h in hosts), hosts
        registry.engine.dispose()
    finally:
        engine.docker("service", "rm", name, timeout=60)
        wait_until(
            lambda: not engine.docker("ps", "-aq", "--filter", f"name={name}").stdout.strip(),
            "the replicas' containers to be removed",
            timeout_s=60,
        )
        engine.docker("rmi", "-f", tag, timeout=120)
        if created:
            subprocess.run(["docker", "rmi", tag], capture_output=True, timeout=120)


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _tasks(engine, name: str) -> list[dict]:
    done = engine.docker("service", "ps", name, "--no-trunc", "--format", "{{json .}}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def _failed(engine, name: str) -> bool:
    return any(t["CurrentState"].startswith(("Failed", "Rejected")) for t in _tasks(engine, name))


def _hosts(registry: Registry) -> set[str]:
    return {m.host for m in registry.served_minutes()}
