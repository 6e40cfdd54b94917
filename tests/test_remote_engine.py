"""The Docker builder on an engine that cannot see this machine's files (issue 13, part 1).

The job and the dataset go into the container through the engine's archive API and the
results come back the same way, so a build works on any engine DOCKER_HOST names. The engine
here is a private second dockerd in its own mount namespace, with the checkout and the temp
folder hidden under empty tmpfs mounts (`tests.servers.start_private_dockerd`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.config import settings
from tests.conftest import _missing
from tests.helpers import ROOT, run_cli

pytestmark = pytest.mark.docker


def _train(*args: str, env: dict[str, str] | None = None) -> dict:
    done = run_cli("train", "--recipe", "tfidf-logreg", "--backend", "docker", "--json",
                   "--quiet", *args, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_remote_engine_builds_what_the_local_engine_builds_without_seeing_our_files(
    remote_engine, lab: Path
) -> None:
    # the engine really cannot see the checkout or the lab: their paths are empty there
    base = settings().docker_base_image
    for folder in (ROOT, lab):
        seen = remote_engine.docker(
            "run", "--rm", "--network", "none", "-v", f"{folder}:/seen:ro", base, "ls", "-A",
            "/seen",
        )  # fmt: skip
        assert seen.returncode == 0 and seen.stdout.strip() == "", (folder, seen.stdout)

    remote = {"DOCKER_HOST": remote_engine.host}
    built = _train(env=remote)
    assert built["status"] == "ready", built["error"]
    docker = built["provenance"]["docker"]
    trainer = remote_engine.docker("image", "inspect", "--format", "{{.Id}}", docker["image_id"])
    assert trainer.returncode == 0 and trainer.stdout.strip() == docker["image_id"]
    assert docker["image_reused"] is True  # the copied image, found by its tag
    left = remote_engine.docker("ps", "-aq", "--filter", "label=altruism-lab.version-id")
    assert left.stdout.strip() == ""  # the container is gone

    again = run_cli("reproduce", str(built["version"]), "--json", "--quiet", env=remote)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["identical"] is True

    # the same request on this machine's engine gives a byte-identical artifact
    local = _train("--force")
    assert local["artifact_sha256"] == built["artifact_sha256"]
    assert local["provenance"]["docker"]["image_id"] == docker["image_id"]


@pytest.fixture(scope="module")
def tls_engine(tmp_path_factory: pytest.TempPathFactory):
    """A private engine that answers only over TLS with a client certificate (certificates
    made with openssl), plus its unix socket for the test's own setup; stopped by pid."""
    from tests import servers

    ok, reason = servers.private_dockerd_status()
    if not ok:
        _missing(f"TLS engine tests: {reason}")
    folder = tmp_path_factory.mktemp("tls")
    server_certs, client_certs = servers.make_tls_certificates(folder)
    port = servers.free_port()
    engine = servers.start_private_dockerd([], tls=(port, server_certs))
    try:
        yield engine, f"tcp://127.0.0.1:{port}", client_certs
    finally:
        engine.stop()


def _empty_image(engine: Any, folder: Path) -> str:
    """A one-file image imported into `engine` (enough to create a container)."""
    import tarfile

    tar = folder / "rootfs.tar"
    (folder / "marker").write_text("x")
    with tarfile.open(tar, "w") as archive:
        archive.add(folder / "marker", arcname="marker")
    done = engine.docker("import", str(tar), "altruism-test/empty:1")
    assert done.returncode == 0, done.stderr
    return "altruism-test/empty:1"


def test_tls_engine_answers_with_certificates_and_says_why_without(
    tls_engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from core.builders.docker import engine_status

    _, url, certs = tls_engine
    monkeypatch.setenv("DOCKER_HOST", url)
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(certs))
    ok, message = engine_status()
    assert ok, message
    # another CA's client certificate: refused, and the message says TLS
    from tests import servers

    _, stranger = servers.make_tls_certificates(tmp_path / "other")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(stranger))
    ok, message = engine_status()
    assert not ok and "TLS" in message, message


def test_tls_engine_of_a_swarm_node_is_inspected_by_check_and_gc(
    tls_engine, registry: Any, store: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A build task's container left on a node whose engine needs TLS (SWARM_NODE_HOSTS +
    SWARM_NODE_CERTS) is found by `check` and removed by `gc`; without the certificates
    the node is reported unreachable, never silently skipped."""
    from core.builders.docker import CONTAINER_LABEL, REGISTRY_LABEL
    from core.maintenance import check, gc

    engine, url, certs = tls_engine
    image = _empty_image(engine, tmp_path)
    row = registry.create_version(
        recipe="nb-bow", params={}, threshold=0.5, builder="swarm", fingerprint="2" * 64,
        data_path="", data_sha256="0" * 64, split_seed=1, split_test_size=0.2,
    )  # fmt: skip
    registry.fail(row.id, "its driver was killed")
    labels = f"--label={CONTAINER_LABEL}={row.id}", f"--label={REGISTRY_LABEL}={registry.identity}"
    made = engine.docker("create", *labels, "--network", "none", image, "/marker")
    assert made.returncode == 0, made.stderr
    container = made.stdout.strip()
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setenv("SWARM_NODE_HOSTS", f"node-b={url}")

    found = check(registry, store)  # no certificates yet
    assert [f["kind"] for f in found.findings] == ["unreachable_engine"], found.findings
    assert "node-b" in found.findings[0]["message"]

    monkeypatch.setenv("SWARM_NODE_CERTS", f"node-b={certs}")
    found = check(registry, store)
    assert [f["kind"] for f in found.findings] == ["leftover_container"], found.findings
    cleaned = gc(registry, store)
    assert [f["kind"] for f in cleaned.findings] == ["leftover_container"], cleaned.findings
    left = engine.docker("ps", "-aq", "--filter", f"id={container}")
    assert left.stdout.strip() == ""
    assert check(registry, store).ok


def test_ssh_engine_builds_through_a_private_sshd(remote_engine, lab: Path) -> None:
    """DOCKER_HOST=ssh://... through a private sshd on loopback (Debian's openssh-server) in
    front of the private engine: docker-py's paramiko transport (docker[ssh]) reaches it, a
    build runs there and matches the one made through the engine's own socket."""
    from tests import servers

    ok, reason = servers.sshd_status()
    if not ok:
        _missing(f"ssh engine tests: {reason}")
    gate = servers.start_sshd(remote_engine.host)
    try:
        env = {"DOCKER_HOST": gate.docker_host, "HOME": str(gate.home)}
        built = _train("--seed", "7", env=env)
        assert built["status"] == "ready", built["error"]
        direct = _train("--seed", "7", "--force", env={"DOCKER_HOST": remote_engine.host})
        assert built["artifact_sha256"] == direct["artifact_sha256"]
        assert (
            built["provenance"]["docker"]["image_id"] == direct["provenance"]["docker"]["image_id"]
        )
        log = (gate.folder / "sshd.log").read_text(errors="replace")
        assert "Accepted publickey" in log, log[-1000:]
    finally:
        gate.stop()


def test_ssh_engine_without_paramiko_names_the_cause() -> None:
    from core.builders.docker import engine_problem

    url = "ssh://ops@build-host"
    message = engine_problem(ImportError("No module named 'paramiko'"), url)
    assert "needs paramiko" in message and "docker[ssh]" in message
