"""The Docker builder: the worker inside `altruism-lab/trainer:<code fingerprint>`.

The image is built from the top-level Dockerfile (dependency layer before the code layer)
once per code fingerprint and reused afterwards. Training runs with network mode `none`,
the dataset mounted read-only and a work folder mounted for the job and the results.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.builders.base import (
    WORKER_ENV,
    Builder,
    BuildJob,
    BuildLog,
    BuildOutcome,
    collect,
    wait_until,
    write_job,
)
from core.config import PROJECT_ROOT, settings
from core.errors import BuildCancelled, BuildFailed
from core.provenance import code_fingerprint, file_sha256, git_state

IMAGE_REPOSITORY = "altruism-lab/trainer"
LABEL_PREFIX = "altruism-lab"
CONTAINER_LABEL = f"{LABEL_PREFIX}.version-id"
REGISTRY_LABEL = f"{LABEL_PREFIX}.registry"  # version ids repeat across registries
ANSI_ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
WORK_MOUNT = "/work"
DATA_MOUNT = "/data"
PING_TIMEOUT_S = 3


def docker_client(timeout: int = 120) -> Any:
    import docker

    return docker.from_env(timeout=timeout)


def engine_status() -> tuple[bool, str]:
    """(True, 'Docker Engine X reachable') or (False, why not)."""
    try:
        client = docker_client(timeout=PING_TIMEOUT_S)
        client.ping()
        return True, f"Docker Engine {client.version().get('Version', '?')} reachable"
    except Exception as exc:  # the SDK raises many kinds when no engine answers
        return False, f"no Docker Engine answered ({type(exc).__name__})"


def remove_containers(registry_id: str, version_id: int) -> int:
    """Remove the trainer containers of one version (after its worker died); how many."""
    try:
        client = docker_client(timeout=30)
        labels = [f"{CONTAINER_LABEL}={version_id}", f"{REGISTRY_LABEL}={registry_id}"]
        containers = client.containers.list(all=True, filters={"label": labels})
    except Exception:  # no engine now: `gc` removes them once they have stopped
        return 0
    for container in containers:
        with contextlib.suppress(Exception):
            container.remove(force=True)
    return len(containers)


def image_tag(fingerprint: str | None = None) -> str:
    return f"{IMAGE_REPOSITORY}:{(fingerprint or code_fingerprint())[:16]}"


def _engine_error(exc: Exception) -> BuildFailed:
    return BuildFailed(f"Docker Engine error: {type(exc).__name__}: {exc}")


class DockerBuilder(Builder):
    """Builds (or reuses) the trainer image, then trains in a throwaway container."""

    name = "docker"

    def __init__(self, context: Path = PROJECT_ROOT) -> None:
        self.settings = settings()
        self.context = Path(context)  # holds Dockerfile, requirements-trainer.txt, core/

    def ensure_image(
        self,
        log: BuildLog,
        should_cancel: Callable[[], bool] | None = None,
        image_id: str | None = None,
    ) -> tuple[Any, bool, float]:
        """The trainer image for the current code (or `image_id`): (image, reused, seconds)."""
        import docker.errors

        client = docker_client()
        if image_id:
            try:
                image = client.images.get(image_id)
                log(f"reusing recorded image {image_id[:19]}")
                return image, True, 0.0
            except docker.errors.ImageNotFound:
                raise BuildFailed(f"the recorded image {image_id[:19]} no longer exists") from None
        fingerprint = code_fingerprint(self.context)
        tag = image_tag(fingerprint)
        try:
            image = client.images.get(tag)
            log(f"reusing image {tag} ({image.id[:19]})")
            return image, True, 0.0
        except docker.errors.ImageNotFound:
            pass
        log(f"building image {tag} (network mode {self.settings.build_network or 'default'})")
        started = time.perf_counter()
        labels = {
            f"{LABEL_PREFIX}.fingerprint": fingerprint,
            f"{LABEL_PREFIX}.git-commit": str(git_state(self.context).get("commit")),
        }
        stream = client.api.build(
            path=str(self.context),
            dockerfile="Dockerfile",
            tag=tag,
            rm=True,
            forcerm=True,
            decode=True,
            labels=labels,
            network_mode=self.settings.build_network,
            buildargs={"BASE_IMAGE": self.settings.docker_base_image},
        )
        for chunk in stream:
            if "stream" in chunk and chunk["stream"].strip():
                log(ANSI_ESCAPES.sub("", chunk["stream"]).rstrip())
            if "error" in chunk:
                raise BuildFailed(f"image build failed: {chunk['error'].strip()}")
            if should_cancel and should_cancel():
                raise BuildCancelled("cancelled by a user during the image build")
        return client.images.get(tag), False, time.perf_counter() - started

    def run(
        self, job: BuildJob, work_dir: Path, log: BuildLog, should_cancel: Callable[[], bool]
    ) -> BuildOutcome:
        try:
            return self._run(job, work_dir, log, should_cancel)
        except BuildFailed:
            raise
        except Exception as exc:
            import docker.errors
            import requests

            if isinstance(exc, (docker.errors.DockerException, requests.RequestException)):
                raise _engine_error(exc) from exc
            raise

    def _run(
        self, job: BuildJob, work_dir: Path, log: BuildLog, should_cancel: Callable[[], bool]
    ) -> BuildOutcome:
        client = docker_client()
        server = client.version()
        image, reused, build_seconds = self.ensure_image(log, should_cancel, job.image_id)
        data_in_container = f"{DATA_MOUNT}/{job.data_path.name}"
        _, out = write_job(job, work_dir, data_in_container)
        os.chmod(work_dir, 0o755)
        os.chmod(out, 0o777)  # the container's non-root user writes here
        limits = job.limits
        container = client.containers.create(
            image.id,
            command=[f"{WORK_MOUNT}/job.json", f"{WORK_MOUNT}/out"],
            network_mode="none",
            labels={CONTAINER_LABEL: str(job.version_id), REGISTRY_LABEL: job.registry_id},
            volumes={
                str(work_dir): {"bind": WORK_MOUNT, "mode": "rw"},
                str(job.data_path): {"bind": data_in_container, "mode": "ro"},
            },
            mem_limit=limits.memory or None,
            memswap_limit=limits.memory or None,
            nano_cpus=int(limits.cpus * 1e9) if limits.cpus else None,
            environment={
                **WORKER_ENV,
                "ALTRUISM_ALLOW_FAULTS": os.environ.get("ALTRUISM_ALLOW_FAULTS", ""),
            },
        )
        log.stage("training")
        log(
            f"training in container {container.short_id} (network none, memory "
            f"{limits.memory or 'unlimited'}, cpus {limits.cpus or 'all'})"
        )
        try:
            container.start()
            follower = threading.Thread(target=self._follow, args=(container, log), daemon=True)
            follower.start()
            wait_until(
                lambda: self._exited(container), job, should_cancel, lambda: self._stop(container)
            )
            follower.join(timeout=5)
            state = container.attrs["State"]
            exit_code, oom = state.get("ExitCode"), state.get("OOMKilled")
        finally:
            self._remove(container)
        if oom:
            raise BuildFailed(f"training was killed: out of memory (limit {limits.memory})")
        if exit_code in (137, 143) and not (out / "error.json").is_file():
            raise BuildFailed(f"training container was killed (exit code {exit_code})")
        provenance = {
            "image_id": image.id,
            "image_tags": list(image.tags),
            "image_reused": reused,
            "image_build_seconds": round(build_seconds, 3),
            "base_image": self.settings.docker_base_image,
            "base_image_id": _image_id(client, self.settings.docker_base_image),
            "dockerfile_sha256": file_sha256(self.context / "Dockerfile"),
            "requirements_sha256": file_sha256(self.context / "requirements-trainer.txt"),
            "docker_server_version": server.get("Version"),
            "container_exit_code": exit_code,
            "memory_limit": limits.memory,
            "cpu_limit": limits.cpus,
            "build_network": self.settings.build_network or "default",
            "train_network": "none",
        }
        return collect(out, exit_code, log, provenance)

    @staticmethod
    def _follow(container: Any, log: BuildLog) -> None:
        try:
            for raw in container.logs(stream=True, follow=True):
                for line in raw.decode("utf-8", errors="replace").splitlines():
                    log(line)
        except Exception:  # the container went away: the waiter reports why
            return

    @staticmethod
    def _exited(container: Any) -> bool:
        container.reload()
        return container.status in ("exited", "dead")

    @staticmethod
    def _stop(container: Any) -> None:
        with contextlib.suppress(Exception):
            container.kill()

    @staticmethod
    def _remove(container: Any) -> None:
        with contextlib.suppress(Exception):
            container.remove(force=True)


def _image_id(client: Any, name: str) -> str | None:
    try:
        return client.images.get(name).id
    except Exception:
        return None
