"""The Docker builder against a real engine: build, train, register, reuse, reproduce, fail.

Every failure test checks the same three things: the version ends failed (or cancelled)
with a reason and a log tail, no container labelled with its id is left behind, and no
artifact reached ARTIFACT_ROOT.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from core import builds
from core.builders.docker import (
    CONTAINER_LABEL,
    DockerBuilder,
    current_image_tag,
    image_key,
    image_tag,
)
from core.config import settings
from core.provenance import TRACKED_PACKAGES, code_fingerprint, file_sha256
from core.registry import Registry
from core.schema import ModelVersion
from tests.helpers import ROOT, artifact_files, log_of, run_cli, wait_until

pytestmark = pytest.mark.docker

DOCKER_KEYS = (
    "image_id",
    "base_image_id",
    "dockerfile_sha256",
    "requirements_sha256",
    "docker_server_version",
    "container_exit_code",
    "memory_limit",
    "cpu_limit",
)
MISSING_PACKAGE = "altruism-lab-no-such-package-3f9c"
WAIT_S = 300  # covers an image build when the trainer image is not cached yet


@pytest.fixture(scope="module")
def client() -> Any:
    import docker

    engine = docker.from_env(timeout=120)
    yield engine
    engine.close()


# --- helpers -----------------------------------------------------------------------------
def labelled(client: Any, version_id: int) -> list[Any]:
    """Containers (running or not) carrying this version's label."""
    return client.containers.list(all=True, filters={"label": f"{CONTAINER_LABEL}={version_id}"})


def trainer_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements-trainer.txt").read_text().splitlines():
        name, sep, version = line.split("#")[0].strip().partition("==")
        if sep:
            pins[name.lower()] = version
    return pins


def copy_context(target: Path) -> Path:
    """A private Docker build context: Dockerfile, .dockerignore, requirements, core/."""
    target.mkdir(parents=True)
    for name in (
        "Dockerfile",
        ".dockerignore",
        "requirements-trainer.txt",
        "requirements-serve.txt",
        "requirements.txt",
    ):
        shutil.copy2(ROOT / name, target / name)
    shutil.copytree(ROOT / "core", target / "core", ignore=shutil.ignore_patterns("__pycache__"))
    return target


def context_tag(client: Any, context: Path) -> str:
    """The trainer image tag a build from `context` would use."""
    conf = settings()
    base = client.images.get(conf.docker_base_image)
    return image_tag(image_key(code_fingerprint(context), base.id, conf.build_network))


def submit(registry: Registry, **fields: Any) -> ModelVersion:
    request = builds.TrainRequest(recipe="tfidf-logreg", backend="docker", force=True, **fields)
    submission = builds.submit(request, registry)
    assert submission.builder == "docker"
    return submission.version


def in_background(fn: Callable[[], ModelVersion]) -> tuple[ThreadPoolExecutor, Future]:
    pool = ThreadPoolExecutor(max_workers=1)
    return pool, pool.submit(fn)


def sleeping_container(client: Any, row: ModelVersion) -> Any:
    """Wait until the version's container is running and its worker sleeps in training."""
    wait_until(
        lambda: "injected fault: sleeping" in log_of(row),
        "the worker to start training",
        timeout_s=WAIT_S,
    )
    (container,) = wait_until(
        lambda: labelled(client, row.id), "the training container", timeout_s=WAIT_S
    )
    return container


def remove_layers_of(client: Any, step_text: str, settle_s: float = 3.0) -> None:
    """Remove untagged layers whose history has `step_text` (an aborted build's leftovers).

    The engine may still commit a step or two after the client went away, so look again
    until `settle_s` has passed; remove the newest first (children before parents).
    """
    import docker.errors

    deadline = time.monotonic() + settle_s
    while True:
        found = [
            image
            for image in client.images.list(filters={"dangling": True})
            if step_text in json.dumps(image.history())
        ]
        for image in sorted(found, key=lambda i: i.attrs["Created"], reverse=True):
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(image.id)
        if time.monotonic() > deadline:
            return
        time.sleep(1)


def assert_failed_cleanly(
    row: ModelVersion, lab: Path, client: Any, reason: str, status: str = "failed"
) -> None:
    assert row.status == status, (row.status, row.error)
    assert row.error and reason in row.error, row.error
    assert row.log_tail and row.log_tail.strip(), "no log tail recorded"
    assert row.artifact_sha256 is None
    assert labelled(client, row.id) == [], "a labelled container was left behind"
    assert artifact_files(lab) == [], "an artifact reached ARTIFACT_ROOT"


# --- successful builds -------------------------------------------------------------------
def test_build_train_register_reuse_and_reproduce_on_sample(
    registry: Registry, store: Any, lab: Path, client: Any
) -> None:
    first = builds.execute(submit(registry, memory="1g", cpus=1.0).id, registry, store)
    assert first.status == "ready", first.error
    prov = first.provenance
    assert prov["builder"] == "docker"
    docker_prov = prov["docker"]
    assert set(DOCKER_KEYS) <= set(docker_prov)

    image = client.images.get(docker_prov["image_id"])  # `docker image inspect`
    assert image.id == docker_prov["image_id"]
    assert current_image_tag(client) in image.tags
    assert docker_prov["build_network"] == image.labels["altruism-lab.build-network"]
    assert docker_prov["base_image_id"] == client.images.get(settings().docker_base_image).id
    assert docker_prov["dockerfile_sha256"] == file_sha256(ROOT / "Dockerfile")
    assert docker_prov["requirements_sha256"] == file_sha256(ROOT / "requirements-trainer.txt")
    assert docker_prov["docker_server_version"] == client.version()["Version"]
    assert docker_prov["container_exit_code"] == 0
    assert docker_prov["memory_limit"] == "1g"
    assert docker_prov["cpu_limit"] == 1.0
    assert docker_prov["train_network"] == "none"

    # Python and package versions come from the worker inside the image, not from the host.
    in_image = client.containers.run(
        image.id,
        entrypoint=["python", "-c", "import platform; print(platform.python_version())"],
        network_mode="none",
        remove=True,
    )
    assert prov["python"] == in_image.decode().strip()
    pins = trainer_pins()
    assert prov["packages"] == {name: pins[name] for name in TRACKED_PACKAGES}
    assert "host_environment" in prov
    assert "worker pid 1:" in log_of(first)  # the worker ran as the container's PID 1

    assert store.verify(first.artifact_sha256) == "ok"
    assert labelled(client, first.id) == []
    assert first.metrics["roc_auc"] > 0.5

    second = builds.execute(submit(registry).id, registry, store)
    assert second.status == "ready", second.error
    assert second.provenance["docker"]["image_id"] == docker_prov["image_id"]
    assert second.provenance["docker"]["image_reused"] is True
    assert second.provenance["docker"]["image_build_seconds"] == 0.0
    assert second.artifact_sha256 == first.artifact_sha256
    assert labelled(client, second.id) == []

    done = run_cli("reproduce", str(first.version), "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["identical"] is True, result
    assert result["builder"] == "docker"
    assert result["rebuilt"]["image_id"] == docker_prov["image_id"]
    assert registry.get_by_id(first.id).reproduction["identical"] is True


def test_a_cross_validated_build_runs_its_folds_in_parallel_in_docker_and_reproduces(
    registry: Registry, store: Any, lab: Path, client: Any
) -> None:
    request = builds.TrainRequest(
        recipe="narrative-vote", backend="docker", cpus=2.0, cv_folds=3, cv_repeats=2
    )
    row = builds.execute(builds.submit(request, registry).version.id, registry, store)
    assert row.status == "ready", row.error
    evaluation = row.metrics["evaluation"]
    assert (evaluation["kind"], evaluation["folds"], evaluation["repeats"]) == ("cv", 3, 2)
    log = log_of(row)
    assert "3 folds x 2 repeat(s) on 400 requests" in log
    # 6 folds, each with 5 inner fits choosing its threshold, 2 at a time
    assert "36 fits, 2 at a time" in log and "progress: 36/36 fits" in log
    assert len(registry.details(row.id).test_probabilities) == 400
    assert row.provenance["split"]["cv"] == {"folds": 3, "repeats": 2}
    assert labelled(client, row.id) == []

    done = run_cli("reproduce", str(row.version), "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["identical"] is True


@pytest.mark.shared_data
def test_cli_trains_shared_data_in_docker_and_reproduces(
    shared_data: Path, registry: Registry, store: Any, client: Any
) -> None:
    done = run_cli(
        "train", "--recipe", "tfidf-logreg", "--data", str(shared_data), "--backend", "docker",
        "--json", "--quiet",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "builder: docker" in done.stderr
    out = json.loads(done.stdout)
    assert out["status"] == "ready", out["error"]
    assert out["builder"] == "docker"
    prov = out["provenance"]
    assert prov["builder"] == "docker"
    assert set(DOCKER_KEYS) <= set(prov["docker"])
    assert client.images.get(prov["docker"]["image_id"]).id == prov["docker"]["image_id"]
    assert prov["docker"]["container_exit_code"] == 0
    assert prov["data_rows"] == 3245 and prov["data_positives"] == 808
    assert prov["packages"]["scikit-learn"] == trainer_pins()["scikit-learn"]
    assert 0.55 < out["metrics"]["roc_auc"] < 0.95
    assert store.verify(out["artifact_sha256"]) == "ok"
    assert labelled(client, out["id"]) == []

    again = run_cli("reproduce", str(out["version"]), "--json", "--quiet")
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert result["identical"] is True, result
    assert result["split_identical"] is True


# --- failures ----------------------------------------------------------------------------
def test_missing_requirement_fails_the_image_build(
    tmp_path: Path, registry: Registry, lab: Path, client: Any
) -> None:
    import docker.errors

    context = copy_context(tmp_path / "context")
    requirements = context / "requirements-trainer.txt"
    # First in the file, so pip stops before downloading the real packages.
    requirements.write_text(f"{MISSING_PACKAGE}==0.0.1\n" + requirements.read_text())
    row = submit(registry)
    row = builds.execute(row.id, registry, builder=DockerBuilder(context=context))
    assert_failed_cleanly(row, lab, client, "image build failed")
    assert MISSING_PACKAGE in row.log_tail
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(context_tag(client, context))


def test_training_exception_fails_the_version(registry: Registry, lab: Path, client: Any) -> None:
    row = builds.execute(submit(registry, fault="raise").id, registry)
    assert_failed_cleanly(row, lab, client, "injected training fault")
    assert "RuntimeError" in row.log_tail


def test_container_killed_mid_training(registry: Registry, lab: Path, client: Any) -> None:
    row = submit(registry, fault="sleep:60")
    pool, future = in_background(lambda: builds.execute(row.id, registry))
    with pool:
        container = sleeping_container(client, row)
        assert registry.get_by_id(row.id).status == "running"
        container.kill()
        row = future.result(timeout=60)
    assert_failed_cleanly(row, lab, client, "killed")
    assert "137" in row.error


def test_timeout_stops_the_container(registry: Registry, lab: Path, client: Any) -> None:
    started = time.monotonic()
    row = builds.execute(submit(registry, fault="sleep:60", timeout_s=3).id, registry)
    assert time.monotonic() - started < 45
    assert_failed_cleanly(row, lab, client, "timed out after 3s")


def test_cancel_while_training(registry: Registry, lab: Path, client: Any) -> None:
    row = submit(registry, fault="sleep:60")
    pool, future = in_background(lambda: builds.execute(row.id, registry))
    with pool:
        sleeping_container(client, row)
        requested = time.monotonic()
        assert registry.request_cancel(row.id).cancel_requested is True
        row = future.result(timeout=60)
        assert time.monotonic() - requested < 30
    assert_failed_cleanly(row, lab, client, "cancelled", status="cancelled")


def test_cancel_during_the_image_build(
    tmp_path: Path, registry: Registry, lab: Path, client: Any
) -> None:
    import docker.errors

    context = copy_context(tmp_path / "context")
    dockerfile = context / "Dockerfile"
    nonce = f"slow-step-{time.time_ns()}"  # never cached: the step really runs every time
    text = dockerfile.read_text().replace(
        "# Code layer.", f"RUN echo {nonce} && sleep 3\n# Code layer."
    )
    dockerfile.write_text(text)
    tag = context_tag(client, context)
    row = submit(registry)
    pool, future = in_background(
        lambda: builds.execute(row.id, registry, builder=DockerBuilder(context=context))
    )
    try:
        with pool:
            wait_until(lambda: nonce in log_of(row), "the slow build step", timeout_s=WAIT_S)
            registry.request_cancel(row.id)
            row = future.result(timeout=120)
        assert_failed_cleanly(row, lab, client, "cancelled", status="cancelled")
        with pytest.raises(docker.errors.ImageNotFound):  # build aborted: nothing tagged
            client.images.get(tag)
    finally:
        remove_layers_of(client, nonce)


def test_out_of_memory_is_reported(registry: Registry, lab: Path, client: Any) -> None:
    row = builds.execute(submit(registry, memory="128m", fault="allocate:512").id, registry)
    assert_failed_cleanly(row, lab, client, "out of memory")
    assert "128m" in row.error


@pytest.mark.slow
def test_another_base_image_builds_another_image_and_says_so(
    registry: Registry, store: Any, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BASE_IMAGE is part of the image tag; provenance records the base image the engine
    really used (its id, read back from the image's labels), not today's setting."""
    import io

    default_tag = current_image_tag(client)
    base_name = "altruism-lab-test/base:alt"
    dockerfile = f"FROM {settings().docker_base_image}\nLABEL altruism-lab-test=alt-base\n"
    base, _ = client.images.build(
        fileobj=io.BytesIO(dockerfile.encode()), tag=base_name, network_mode="none", rm=True
    )
    monkeypatch.setenv("BASE_IMAGE", base_name)
    alt_tag = current_image_tag(client)
    try:
        assert alt_tag != default_tag, "a new base image must not reuse the old trainer image"
        row = builds.execute(submit(registry).id, registry, store)
        assert row.status == "ready", row.error
        docker_prov = row.provenance["docker"]
        image = client.images.get(docker_prov["image_id"])
        assert alt_tag in image.tags
        assert docker_prov["base_image"] == base_name
        assert docker_prov["base_image_id"] == base.id == image.labels["altruism-lab.base-image-id"]
        monkeypatch.setenv("BASE_IMAGE", "python:3.11-slim")  # the setting moves on...
        assert registry.get_by_id(row.id).provenance["docker"]["base_image_id"] == base.id
    finally:
        with contextlib.suppress(Exception):
            client.images.remove(alt_tag, force=True)
        with contextlib.suppress(Exception):
            client.images.remove(base_name, force=True)
