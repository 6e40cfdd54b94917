"""The Docker builder: the worker inside `altruism-lab/trainer:<image key>`, on any engine.

The image is built from the top-level Dockerfile (dependency layer before the code layer)
once per image key (code fingerprint, base image id, build settings) and reused afterwards;
its labels record what it was built from. Nothing is bind-mounted: the job and the dataset
go into the container with the engine's archive API and the results come back the same
way, so `DOCKER_HOST=tcp://...` or `ssh://...` engines work, and no host folder is shared
with anything. Training runs with network mode `none` and memory/CPU limits.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from core.builders.base import (
    MAX_RESULT_BYTES,
    WORKER_ENV,
    Builder,
    BuildJob,
    BuildLog,
    BuildOutcome,
    collect,
    job_json,
    wait_until,
)
from core.config import PROJECT_ROOT, settings
from core.errors import BadInput, BuildCancelled, BuildFailed
from core.provenance import code_fingerprint, file_sha256, git_state
from core.workfiles import (
    DATA_NAME,
    ERROR_NAME,
    JOB_NAME,
    OUT_DIR,
    OUTPUT_NAMES,
    TRAINER_UID,
)

IMAGE_REPOSITORY = "altruism-lab/trainer"
LABEL_PREFIX = "altruism-lab"
CONTAINER_LABEL = f"{LABEL_PREFIX}.version-id"
REGISTRY_LABEL = f"{LABEL_PREFIX}.registry"  # version ids repeat across registries
FINGERPRINT_LABEL = f"{LABEL_PREFIX}.fingerprint"
BASE_IMAGE_LABEL = f"{LABEL_PREFIX}.base-image"
BASE_IMAGE_ID_LABEL = f"{LABEL_PREFIX}.base-image-id"
BUILD_NETWORK_LABEL = f"{LABEL_PREFIX}.build-network"
IMAGE_KEY_LABEL = f"{LABEL_PREFIX}.image-key"
RECIPE_REQUIREMENTS_LABEL = f"{LABEL_PREFIX}.recipe-requirements"
ANSI_ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
IMAGE_ID = re.compile(r"^sha256:[0-9a-f]{64}$")
WORK = "/work"
PING_TIMEOUT_S = 3
MAX_ARTIFACT_BYTES = 2 << 30


def docker_client(timeout: int = 120) -> Any:
    import docker

    if not os.environ.get("DOCKER_TLS_VERIFY"):
        return docker.from_env(timeout=timeout)
    return _own_ca(docker.from_env(timeout=timeout, version=TLS_API_VERSION))


# With TLS the API version is fixed (Docker 20.10's; newer engines accept it) rather than
# asked for while the client is made, before `_own_ca` can pin its CA.
TLS_API_VERSION = "1.41"


def _own_ca(client: Any) -> Any:
    """Verify the engine against the CA its TLS settings name: requests would otherwise let
    REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (often set machine-wide) replace it, and a private
    engine's certificate would then fail to verify."""
    if isinstance(client.api.verify, str):
        client.api.trust_env = False
    return client


def engine_client(url: str, cert_dir: str | None = None, timeout: int = 120) -> Any:
    """A client for the engine at `url`; with `cert_dir` (ca.pem, cert.pem, key.pem, as in
    DOCKER_CERT_PATH) over TLS, verifying the engine's certificate."""
    import docker

    tls = None
    if cert_dir:
        folder = Path(cert_dir)
        missing = [n for n in ("ca.pem", "cert.pem", "key.pem") if not (folder / n).is_file()]
        if missing:
            raise BadInput(f"TLS folder {folder} lacks {', '.join(missing)}")
        tls = docker.tls.TLSConfig(
            client_cert=(str(folder / "cert.pem"), str(folder / "key.pem")),
            ca_cert=str(folder / "ca.pem"),
            verify=True,
        )
    if tls is None:
        return docker.DockerClient(base_url=url, timeout=timeout)
    return _own_ca(
        docker.DockerClient(base_url=url, tls=tls, timeout=timeout, version=TLS_API_VERSION)
    )


def engine_problem(exc: BaseException, url: str | None = None) -> str:
    """Why an engine did not answer, in words that name the real cause."""
    url = url if url is not None else os.environ.get("DOCKER_HOST", "")
    text = f"{type(exc).__name__}: {exc}"
    if url.startswith("ssh://") and ("paramiko" in text or isinstance(exc, ImportError)):
        return f"{url} needs paramiko (pip install 'docker[ssh]'): {text}"[:400]
    if "SSL" in text or "certificate" in text.lower() or "tls" in text.lower():
        return f"TLS to {url or 'the engine'} failed (certificates?): {text}"[:400]
    return type(exc).__name__  # no engine there: the usual case, said briefly


def engine_status() -> tuple[bool, str]:
    """(True, 'Docker Engine X reachable') or (False, why not)."""
    try:
        client = docker_client(timeout=PING_TIMEOUT_S)
        client.ping()
        return True, f"Docker Engine {client.version().get('Version', '?')} reachable"
    except Exception as exc:  # the SDK raises many kinds when no engine answers
        return False, f"no Docker Engine answered ({engine_problem(exc)})"


def version_labels(job: BuildJob) -> dict[str, str]:
    """The labels naming a build's registry and version (on containers and services)."""
    return {CONTAINER_LABEL: str(job.version_id), REGISTRY_LABEL: job.registry_id}


def labelled_version_id(raw: str) -> int:
    """The version id a build label's value names (-1 when it is not a number)."""
    return int(raw) if raw.isdigit() else -1


def label_filter(registry_id: str, version_id: int | None = None) -> list[str]:
    """A `label` filter for what this registry started (all, or one version's)."""
    version = f"{CONTAINER_LABEL}={version_id}" if version_id is not None else CONTAINER_LABEL
    return [f"{REGISTRY_LABEL}={registry_id}", version]


def registry_containers(client: Any, registry_id: str, version_id: int | None = None) -> list:
    """Trainer containers this registry started (all, or one version's)."""
    return client.containers.list(
        all=True, filters={"label": label_filter(registry_id, version_id)}
    )


def remove_containers(registry_id: str, version_id: int) -> int:
    """Remove the trainer containers of one version (after its worker died); how many."""
    try:
        containers = registry_containers(docker_client(timeout=30), registry_id, version_id)
    except Exception:  # no engine now: `gc` removes them later
        return 0
    for container in containers:
        with contextlib.suppress(Exception):
            container.remove(force=True)
    return len(containers)


def image_key(fingerprint: str, base_image_id: str, network: str | None) -> str:
    """What decides the image's content: code, base image (by id) and build settings."""
    payload = f"{fingerprint}\n{base_image_id}\n{network or 'default'}"
    return hashlib.sha256(payload.encode()).hexdigest()


def requirements_key(trainer_image_id: str, requirements: list[str]) -> str:
    """Key of a trainer image plus a team recipe's extra requirements (sorted, deduped):
    the same trainer and the same requirements reuse one image."""
    payload = "\n".join([trainer_image_id, *sorted(set(requirements))])
    return hashlib.sha256(payload.encode()).hexdigest()


def requirements_context(trainer_image_id: str, requirements: list[str], spool: IO[bytes]):
    """A build context: the trainer image plus `pip install -r` of the requirements (a
    file, never a shell string), back to the non-root user."""
    dockerfile = (
        f"FROM {trainer_image_id}\nUSER root\n"
        "COPY recipe-requirements.txt /app/recipe-requirements.txt\n"
        "RUN python -m pip install --no-cache-dir -r /app/recipe-requirements.txt\n"
        "USER trainer\n"
    ).encode()
    listing = "".join(f"{r}\n" for r in sorted(set(requirements))).encode()
    with tarfile.open(fileobj=spool, mode="w") as tar:
        for name, data in (("Dockerfile", dockerfile), ("recipe-requirements.txt", listing)):
            _tar_entry(tar, name, io.BytesIO(data), len(data), 0o644)
    spool.seek(0)
    return spool


def image_tag(key: str) -> str:
    return f"{IMAGE_REPOSITORY}:{key[:16]}"


def current_image_tag(client: Any) -> str | None:
    """The tag the next build would use (None when the base image is not on the engine)."""
    conf = settings()
    try:
        base = client.images.get(conf.docker_base_image)
    except Exception:
        return None
    return image_tag(image_key(code_fingerprint(), base.id, conf.build_network))


def is_trainer_image(image: Any) -> bool:
    """Whether an image was built by this project (reproduce runs nothing else)."""
    labels = image.labels or {}
    return bool(labels.get(FINGERPRINT_LABEL)) and IMAGE_REPOSITORY in " ".join(
        image.tags or [IMAGE_REPOSITORY]
    )


def worker_environment() -> dict[str, str]:
    """The worker's environment in a container (faults only where the tests allow them)."""
    return {**WORKER_ENV, "ALTRUISM_ALLOW_FAULTS": os.environ.get("ALTRUISM_ALLOW_FAULTS", "")}


def _engine_error(exc: Exception) -> str:
    return f"Docker Engine error: {type(exc).__name__}: {exc}"


@contextlib.contextmanager
def engine_errors(describe: Callable[[Exception], str] = _engine_error) -> Iterator[None]:
    """Raise what the Docker SDK or its HTTP layer raises inside as BuildFailed with
    `describe(exc)`; anything else passes through."""
    try:
        yield
    except Exception as exc:
        import docker.errors
        import requests

        if isinstance(exc, (docker.errors.DockerException, requests.RequestException)):
            raise BuildFailed(describe(exc)) from exc
        raise


def image_facts(image: Any) -> dict[str, Any]:
    """What an image really is, read from the engine (its id and build labels)."""
    labels = image.labels or {}
    return {
        "image_id": image.id,
        "image_tags": list(image.tags),
        "code_fingerprint": labels.get(FINGERPRINT_LABEL),
        "base_image": labels.get(BASE_IMAGE_LABEL),
        "base_image_id": labels.get(BASE_IMAGE_ID_LABEL),
        "build_network": labels.get(BUILD_NETWORK_LABEL),
        "git_commit": labels.get(f"{LABEL_PREFIX}.git-commit"),
        **(
            {"recipe_requirements": labels[RECIPE_REQUIREMENTS_LABEL]}
            if RECIPE_REQUIREMENTS_LABEL in labels
            else {}
        ),
    }


def _tar_entry(tar: tarfile.TarFile, name: str, data: IO[bytes] | None, size: int, mode: int):
    info = tarfile.TarInfo(name)
    info.uid = info.gid = TRAINER_UID
    info.mtime = int(time.time())
    info.mode = mode
    if data is None:
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    else:
        info.size = size
        tar.addfile(info, data)


def add_work(tar: tarfile.TarFile, job: BuildJob) -> None:
    """`work/` (private to the trainer user) with job.json, the dataset and an empty out/."""
    _tar_entry(tar, "work", None, 0, 0o700)
    _tar_entry(tar, f"work/{OUT_DIR}", None, 0, 0o700)
    spec = job_json(job, f"{WORK}/{DATA_NAME}")
    _tar_entry(tar, f"work/{JOB_NAME}", io.BytesIO(spec), len(spec), 0o600)
    with open(job.data_file, "rb") as data:
        size = os.fstat(data.fileno()).st_size
        _tar_entry(tar, f"work/{DATA_NAME}", data, size, 0o400)


def input_archive(job: BuildJob, spool: IO[bytes]) -> IO[bytes]:
    """A tar of `add_work`, for `put_archive` at /."""
    with tarfile.open(fileobj=spool, mode="w") as tar:
        add_work(tar, job)
    spool.seek(0)
    return spool


def read_output_archive(chunks: Any) -> dict[str, bytes]:
    """The worker's known output files from a `get_archive` stream (size-bounded)."""
    with tempfile.TemporaryFile() as spool:
        total = 0
        for chunk in chunks:
            total += len(chunk)
            if total > MAX_ARTIFACT_BYTES + MAX_RESULT_BYTES:
                raise BuildFailed("the worker's output is larger than the limit")
            spool.write(chunk)
        spool.seek(0)
        files = {}
        with tarfile.open(fileobj=spool, mode="r|") as tar:
            for member in tar:
                name = member.name.rsplit("/", 1)[-1]
                if member.isfile() and member.name == f"{OUT_DIR}/{name}" and name in OUTPUT_NAMES:
                    handle = tar.extractfile(member)
                    files[name] = handle.read() if handle is not None else b""
        return files


class DockerBuilder(Builder):
    """Builds (or reuses) the trainer image, then trains in a throwaway container."""

    name = "docker"

    def __init__(self, context: Path = PROJECT_ROOT) -> None:
        self.settings = settings()
        self.context = Path(context)  # holds Dockerfile, requirements-trainer.txt, core/

    def _base_image(self, client: Any, log: BuildLog) -> Any:
        import docker.errors

        name = self.settings.docker_base_image
        try:
            return client.images.get(name)
        except docker.errors.ImageNotFound:
            log(f"pulling base image {name}")
            try:
                return client.images.pull(name)
            except docker.errors.APIError as exc:
                raise BuildFailed(
                    f"base image {name} is not on the engine and could not be pulled ({exc})"
                ) from None

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
            return self._recorded_image(client, image_id, log), True, 0.0
        fingerprint = code_fingerprint(self.context)
        base = self._base_image(client, log)
        network = self.settings.build_network
        key = image_key(fingerprint, base.id, network)
        tag = image_tag(key)
        try:
            image = client.images.get(tag)
            log(f"reusing image {tag} ({image.id[:19]})")
            return image, True, 0.0
        except docker.errors.ImageNotFound:
            pass
        log(
            f"building image {tag} from {self.settings.docker_base_image} ({base.id[:19]}, "
            f"network mode {network or 'default'})"
        )
        started = time.perf_counter()
        labels = {
            FINGERPRINT_LABEL: fingerprint,
            IMAGE_KEY_LABEL: key,
            BASE_IMAGE_LABEL: self.settings.docker_base_image,
            BASE_IMAGE_ID_LABEL: base.id,
            BUILD_NETWORK_LABEL: network or "default",
            f"{LABEL_PREFIX}.git-commit": str(git_state(self.context).get("commit")),
        }
        stream = client.api.build(
            path=str(self.context),
            dockerfile="Dockerfile",
            target="trainer",  # not the serve stages after it
            tag=tag,
            rm=True,
            forcerm=True,
            decode=True,
            labels=labels,
            network_mode=network,
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

    def job_image(
        self, job: BuildJob, log: BuildLog, should_cancel: Callable[[], bool]
    ) -> tuple[Any, bool, float]:
        """The image a job runs in: the trainer image, plus its team recipe's extra
        requirements when it declares any (its own image, keyed by them)."""
        image, reused, seconds = self.ensure_image(log, should_cancel, job.image_id)
        if job.image_id or not job.recipe_requirements:
            return image, reused, seconds
        return self._with_requirements(image, job.recipe_requirements, log, should_cancel)

    def _with_requirements(
        self, trainer: Any, requirements: list[str], log: BuildLog, should_cancel: Callable
    ) -> tuple[Any, bool, float]:
        import docker.errors

        client = docker_client()
        key = requirements_key(trainer.id, requirements)
        tag = image_tag(key)
        try:
            image = client.images.get(tag)
            log(f"reusing image {tag} with the recipe's requirements")
            return image, True, 0.0
        except docker.errors.ImageNotFound:
            pass
        log(f"building image {tag}: the trainer plus {', '.join(requirements)}")
        started = time.perf_counter()
        with tempfile.TemporaryFile() as spool:
            stream = client.api.build(
                fileobj=requirements_context(trainer.id, requirements, spool),
                custom_context=True,
                tag=tag,
                rm=True,
                forcerm=True,
                decode=True,
                labels={IMAGE_KEY_LABEL: key, RECIPE_REQUIREMENTS_LABEL: " ".join(requirements)},
                network_mode=self.settings.build_network,
            )
            for chunk in stream:
                if "stream" in chunk and chunk["stream"].strip():
                    log(ANSI_ESCAPES.sub("", chunk["stream"]).rstrip())
                if "error" in chunk:
                    raise BuildFailed(
                        f"installing the recipe's requirements failed: {chunk['error'].strip()}"
                    )
                if should_cancel and should_cancel():
                    raise BuildCancelled("cancelled by a user during the image build")
        return client.images.get(tag), False, time.perf_counter() - started

    @staticmethod
    def _recorded_image(client: Any, image_id: str, log: BuildLog) -> Any:
        import docker.errors

        if not isinstance(image_id, str) or not IMAGE_ID.match(image_id):
            raise BuildFailed(f"the recorded image id {str(image_id)[:80]!r} is not an image id")
        try:
            image = client.images.get(image_id)
        except docker.errors.ImageNotFound:
            raise BuildFailed(f"the recorded image {image_id[:19]} no longer exists") from None
        if not is_trainer_image(image):
            raise BuildFailed(
                f"the recorded image {image_id[:19]} is not an Altruism Lab trainer image; "
                "refusing to run it"
            )
        log(f"reusing recorded image {image_id[:19]}")
        return image

    def run(
        self, job: BuildJob, work_dir: Path, log: BuildLog, should_cancel: Callable[[], bool]
    ) -> BuildOutcome:
        with engine_errors():
            return self._run(job, work_dir, log, should_cancel)

    def _run(
        self, job: BuildJob, work_dir: Path, log: BuildLog, should_cancel: Callable[[], bool]
    ) -> BuildOutcome:
        client = docker_client()
        server = client.version()
        image, reused, build_seconds = self.job_image(job, log, should_cancel)
        limits = job.limits
        container = client.containers.create(
            image.id,
            command=[f"{WORK}/{JOB_NAME}", f"{WORK}/{OUT_DIR}"],
            network_mode="none",
            labels=version_labels(job),
            mem_limit=limits.memory or None,
            memswap_limit=limits.memory or None,
            nano_cpus=int(limits.cpus * 1e9) if limits.cpus else None,
            environment=worker_environment(),
        )
        try:
            with tempfile.TemporaryFile(dir=work_dir) as spool:
                container.put_archive("/", input_archive(job, spool))
            log.stage("training")
            log(
                f"training in container {container.short_id} (network none, memory "
                f"{limits.memory or 'unlimited'}, cpus {limits.cpus or 'all'})"
            )
            container.start()
            follower = threading.Thread(target=self._follow, args=(container, log), daemon=True)
            follower.start()
            wait_until(
                lambda: self._exited(container),
                job.limits.timeout_s,
                should_cancel,
                lambda: self._stop(container),
            )
            follower.join(timeout=5)
            state = container.attrs["State"]
            exit_code, oom = state.get("ExitCode"), state.get("OOMKilled")
            if oom:
                raise BuildFailed(f"training was killed: out of memory (limit {limits.memory})")
            chunks, _ = container.get_archive(f"{WORK}/{OUT_DIR}")
            files = read_output_archive(chunks)
        finally:
            self._remove(container)
        if exit_code in (137, 143) and ERROR_NAME not in files:
            raise BuildFailed(f"training container was killed (exit code {exit_code})")
        provenance = {
            **image_facts(image),
            "image_reused": reused,
            "image_build_seconds": round(build_seconds, 3),
            "dockerfile_sha256": file_sha256(self.context / "Dockerfile"),
            "requirements_sha256": file_sha256(self.context / "requirements-trainer.txt"),
            "docker_server_version": server.get("Version"),
            "docker_host": _engine_host(client),
            "container_exit_code": exit_code,
            "memory_limit": limits.memory,
            "cpu_limit": limits.cpus,
            "train_network": "none",
            "transfer": "archive",
        }
        return collect(files, exit_code, provenance)

    @staticmethod
    def _follow(container: Any, log: BuildLog) -> None:
        follow_lines(lambda: container.logs(stream=True, follow=True), log)

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


def follow_lines(stream: Callable[[], Any], log: BuildLog) -> None:
    """Log every line of a container's or service's log stream until it ends."""
    try:
        for raw in stream():
            for line in raw.decode("utf-8", errors="replace").splitlines():
                log(line)
    except Exception:  # the container or service went away: the waiter reports why
        return


def _engine_host(client: Any) -> str:
    base = str(getattr(client.api, "base_url", "") or "")
    return "local socket" if base.startswith(("http+docker://", "unix")) else base
