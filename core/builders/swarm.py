"""The Swarm builder: each build is a `replicated-job` service on a Docker Swarm cluster.

The trainer image (built as the Docker builder builds it, on the manager's engine) is pushed
to a container registry every node can reach (`SWARM_IMAGE_REGISTRY`, e.g. 127.0.0.1:5000).
The job reaches its task without a host path: a per-build image `FROM` the trainer image
with job.json and the dataset copied in, pushed to the same registry. The service runs once
(restart condition `none`) with CPU/memory limits on an internal overlay network (services
cannot use network `none`), labelled with the registry and version. The results come back
from the task's container with `get_archive`, through the engine of the node that ran it.
Afterwards the service, the per-build image and its registry manifest are removed.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import re
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from core.builders.base import (
    BuildJob,
    BuildLimits,
    BuildLog,
    BuildOutcome,
    collect,
    wait_until,
)
from core.builders.docker import (
    CONTAINER_LABEL,
    IMAGE_REPOSITORY,
    LABEL_PREFIX,
    WORK,
    DockerBuilder,
    add_work,
    docker_client,
    engine_client,
    engine_errors,
    engine_problem,
    follow_lines,
    image_facts,
    label_filter,
    labelled_version_id,
    read_output_archive,
    version_labels,
    worker_environment,
)
from core.config import settings
from core.errors import BadInput, BuildFailed
from core.provenance import file_sha256
from core.workfiles import ERROR_NAME, JOB_NAME, OUT_DIR, TRAINER_UID

JOB_REPOSITORY = "altruism-lab/job"
JOB_OF_LABEL = f"{LABEL_PREFIX}.job-of"
REGISTRY_ADDRESS = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
DONE_STATES = ("complete", "failed", "rejected", "shutdown", "orphaned", "remove")
BUILD_FACTS_LABEL = f"{LABEL_PREFIX}.build-facts"  # what an adopter needs (JSON)
PRIVATE_FACTS = ("job_repository", "job_tag", "image_registry")  # not provenance


def image_registry() -> str:
    """SWARM_IMAGE_REGISTRY (host[:port]), checked; a clear error when unset or malformed."""
    address = settings().swarm_image_registry
    if not address:
        raise BadInput(
            "the swarm builder needs SWARM_IMAGE_REGISTRY, a container registry every node "
            "can reach (e.g. 127.0.0.1:5000)"
        )
    if not REGISTRY_ADDRESS.match(address):
        raise BadInput(f"SWARM_IMAGE_REGISTRY must be host[:port], got {address[:80]!r}")
    return address


def manager_problem(swarm: dict[str, Any]) -> str | None:
    """Why an engine whose `info()["Swarm"]` is `swarm` cannot take builds (None: it can)."""
    if swarm.get("LocalNodeState") != "active":
        return "the Docker Engine is not part of a swarm (docker swarm init)"
    if not swarm.get("ControlAvailable"):
        return "the Docker Engine is a swarm worker; point DOCKER_HOST at a manager"
    return None


def swarm_status() -> tuple[bool, str]:
    """Whether the engine DOCKER_HOST names is a Swarm manager, and a one-line reason."""
    try:
        swarm = docker_client(timeout=5).info().get("Swarm") or {}
    except Exception as exc:  # the SDK raises many kinds when no engine answers
        return False, f"no Docker Engine answered ({engine_problem(exc)})"
    problem = manager_problem(swarm)
    if problem:
        return False, problem
    return True, f"swarm {swarm.get('Cluster', {}).get('ID', '?')[:12]} manager reachable"


def registry_services(registry_id: str, version_id: int | None = None) -> list:
    """Build services this registry started (all, or one version's); none when no swarm
    manager answers (one request: an engine outside a swarm refuses the listing)."""
    try:
        client = docker_client(timeout=10)
        return client.services.list(filters={"label": label_filter(registry_id, version_id)})
    except Exception:  # no engine, or not a manager
        return []


def remove_services(registry_id: str, version_id: int) -> int:
    """Remove the build services of one version (after its driver died); how many. With no
    manager answering now, `gc` removes them later."""
    services = registry_services(registry_id, version_id)
    for service in services:
        with contextlib.suppress(Exception):
            service.remove()
    return len(services)


def cluster_cpus() -> int | None:
    """The CPUs of the swarm's ready, active nodes (None when no manager answers).

    Sweeps keep at most this many builds in flight instead of asking the scheduler with CPU
    reservations: engines before swarmkit#3237 count finished `replicated-job` tasks against
    a node's reservations and reject running builds ("assigned node no longer meets
    constraints", moby/moby#52652)."""
    try:
        nodes = docker_client(timeout=10).nodes.list()
    except Exception:  # no engine, or not a manager
        return None
    total = 0
    for node in nodes:
        attrs = node.attrs
        if attrs.get("Status", {}).get("State") == "ready" and (
            attrs.get("Spec", {}).get("Availability") == "active"
        ):
            total += attrs.get("Description", {}).get("Resources", {}).get("NanoCPUs", 0)
    return int(total // 1e9) or None


def parse_bytes(text: str | None) -> int | None:
    """'2g' -> bytes, as the Docker CLI reads a memory limit."""
    if not text:
        return None
    from docker.utils import parse_bytes as docker_parse_bytes

    return int(docker_parse_bytes(text))


def _push(client: Any, repository: str, tag: str, log: BuildLog) -> str:
    """Push repository:tag; the digest the registry reports."""
    digest = None
    for chunk in client.images.push(repository, tag=tag, stream=True, decode=True):
        if "error" in chunk:
            raise BuildFailed(f"could not push {repository}:{tag}: {chunk['error'].strip()}")
        digest = (chunk.get("aux") or {}).get("Digest") or digest
    if not digest:
        raise BuildFailed(f"the registry reported no digest for {repository}:{tag}")
    log(f"pushed {repository}:{tag} ({digest[:19]})")
    return digest


def _job_context(job: BuildJob, trainer_ref: str, spool: IO[bytes]) -> IO[bytes]:
    """A build context: a Dockerfile FROM the trainer image plus the job's `work/` folder."""
    owner = f"{TRAINER_UID}:{TRAINER_UID}"
    dockerfile = f"FROM {trainer_ref}\nCOPY --chown={owner} work {WORK}\n".encode()
    with tarfile.open(fileobj=spool, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size, info.mtime = len(dockerfile), int(time.time())
        tar.addfile(info, io.BytesIO(dockerfile))
        add_work(tar, job)
    spool.seek(0)
    return spool


def unique_tag(job: BuildJob) -> str:
    """`v<version number>-<random>`: names the job image and the service."""
    return f"v{job.version_number or job.version_id}-{uuid.uuid4().hex[:12]}"


def service_name(job: BuildJob, tag: str) -> str:
    """`altruism-<registry>-v<version number>-<unique>`: the number the CLI and pages show
    (`tag` starts with it), a registry-unique suffix."""
    return f"altruism-{job.registry_id[:8]}-{tag}"


def node_client(node: str, timeout: int = 120) -> Any:
    """A client for the engine SWARM_NODE_HOSTS names for `node` (a hostname or node id),
    over TLS when SWARM_NODE_CERTS gives the node a certificate folder."""
    conf = settings()
    return engine_client(conf.swarm_node_hosts[node], conf.swarm_node_certs.get(node), timeout)


def node_hostname(client: Any, task: dict[str, Any]) -> str | None:
    """The hostname of the node a task ran on (None when the manager does not know it)."""
    with contextlib.suppress(Exception):
        node = client.nodes.get(task["NodeID"])
        return node.attrs.get("Description", {}).get("Hostname")
    return None


def registry_scheme(address: str, config: dict[str, Any]) -> str:
    """How the manager's engine talks to the registry at `address`: `http` for loopback and
    for a registry its --insecure-registry names (`config` is its info's RegistryConfig),
    else `https`."""
    host = address.split(":")[0]
    index = (config.get("IndexConfigs") or {}).get(address) or {}
    if host == "localhost" or index.get("Secure") is False:
        return "http"
    with contextlib.suppress(ValueError):
        ip = ipaddress.ip_address(host)
        cidrs = [ipaddress.ip_network(c) for c in config.get("InsecureRegistryCIDRs") or []]
        if ip.is_loopback or any(ip in cidr for cidr in cidrs):
            return "http"
    return "https"


NODE_CHECK_SECONDS = 1.0  # how often a waiting build asks whether its task's node is down


class NodeWatch:
    """Whether a task's node is down, asked of the manager at most once a second."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.asked = 0.0

    def down(self, node_id: str | None) -> tuple[str, str] | None:
        """(id, hostname) of `node_id` when the swarm marks it down or no longer knows it."""
        if not node_id or time.monotonic() - self.asked < NODE_CHECK_SECONDS:
            return None
        self.asked = time.monotonic()
        return node_down(self.client, node_id)


def node_down(client: Any, node_id: str) -> tuple[str, str] | None:
    """(id, hostname) of a node the swarm marks down or has removed; None while it is up
    (or the manager does not answer now)."""
    import docker.errors

    try:
        attrs = client.nodes.get(node_id).attrs
    except docker.errors.NotFound:
        return node_id, node_id
    except Exception:  # the manager is busy: ask again later
        return None
    if attrs.get("Status", {}).get("State") != "down":
        return None
    return node_id, attrs.get("Description", {}).get("Hostname") or node_id


def other_ready_node(client: Any, down: set[str]) -> bool:
    """Whether a ready, active node outside `down` (ids) could take a retry (True when the
    manager does not say: the retry then waits, as any build, for its timeout)."""
    try:
        nodes = client.nodes.list()
    except Exception:  # the manager is busy
        return True
    return any(
        node.id not in down
        and node.attrs.get("Status", {}).get("State") == "ready"
        and node.attrs.get("Spec", {}).get("Availability") == "active"
        for node in nodes
    )


def builds_on_down_nodes(registry_id: str) -> list[tuple[str, int, str, str]]:
    """This registry's build services whose current task sits on a node that is down:
    (service name, version id, version label such as "raop v3", node hostname)."""
    found: list[tuple[str, int, str, str]] = []
    services = registry_services(registry_id)
    with contextlib.suppress(Exception):  # the manager stopped answering: nothing to say
        client = docker_client(timeout=10)
        for service in services:
            tasks = [t for t in service.tasks() if t.get("NodeID")]
            if not tasks:
                continue
            task = max(tasks, key=lambda t: t.get("CreatedAt", ""))
            lost = task.get("Status", {}).get("State") not in DONE_STATES and node_down(
                client, task["NodeID"]
            )
            if lost:
                labels = service.attrs.get("Spec", {}).get("Labels") or {}
                raw = labels.get(CONTAINER_LABEL, "")
                label = labels.get(f"{LABEL_PREFIX}.version", "")
                found.append((service.name, labelled_version_id(raw), label, lost[1]))
    return found


class SwarmBuilder(DockerBuilder):
    """Trains each build as a one-off Swarm service from a per-build image."""

    name = "swarm"

    def _run(
        self, job: BuildJob, work_dir: Path, log: BuildLog, should_cancel: Callable[[], bool]
    ) -> BuildOutcome:
        address = image_registry()
        client = docker_client()
        info = self._manager(client)
        image, reused, build_seconds = self.job_image(job, log, should_cancel)
        trainer_repo = f"{address}/{IMAGE_REPOSITORY}"
        trainer_digest = self._publish_trainer(client, image, trainer_repo, log)
        facts: dict[str, Any] = {
            **image_facts(image),
            "image_reused": reused,
            "image_build_seconds": round(build_seconds, 3),
            "trainer_image": f"{trainer_repo}@{trainer_digest}",
            "image_registry": address,
            "job_repository": f"{address}/{JOB_REPOSITORY}",
            "job_tag": unique_tag(job),
            "job_image_digest": None,
        }
        service = None
        try:
            log.stage("packing the job")
            facts["job_image_digest"] = self._job_image(client, job, facts, work_dir, log)
            service = self._service(client, job, facts)
            log(f"service {service.name} submitted to swarm {info['Swarm']['Cluster']['ID'][:12]}")
        finally:
            if service is None:
                self._drop_job_image(client, facts, log, self._scheme(info, facts))

        def resubmit(avoid: list[str]) -> Any:
            retry = self._service(client, job, facts, avoid, suffix=f"-r{len(avoid)}")
            log(f"service {retry.name} submitted to the swarm (a retry)")
            return retry

        return self._finish(client, info, service, facts, log, should_cancel, job.limits, resubmit)

    def adopt(
        self,
        registry_id: str,
        version_id: int,
        limits: BuildLimits,
        log: BuildLog,
        should_cancel: Callable[[], bool],
    ) -> BuildOutcome:
        """Take over a build whose launcher died: the swarm still holds its service, so wait
        for (or collect) its task's results, then clean up as the launcher would have."""
        describe = lambda exc: f"could not adopt the swarm build: {engine_problem(exc)}"  # noqa: E731
        with engine_errors(describe):
            client = docker_client()
            info = self._manager(client)
            service, facts = self._orphaned_service(client, registry_id, version_id)
            created = _parse_time(service.attrs.get("CreatedAt"))
            elapsed = max(0.0, time.time() - created) if created else 0.0
            log(f"adopted service {service.name} ({elapsed:.0f} s old): its launcher is gone")
            return self._finish(
                client, info, service, facts, log, should_cancel, limits, elapsed_s=elapsed
            )

    @staticmethod
    def _manager(client: Any) -> dict[str, Any]:
        """The engine's info (its swarm facts under "Swarm"); BuildFailed when it is not a
        swarm manager."""
        info = client.info()
        info["Swarm"] = info.get("Swarm") or {}
        problem = manager_problem(info["Swarm"])
        if problem:
            raise BuildFailed(problem)
        return info

    @staticmethod
    def _scheme(info: dict[str, Any], facts: dict[str, Any]) -> str:
        """How to reach the image registry for deletes (see registry_scheme)."""
        return registry_scheme(facts["image_registry"], info.get("RegistryConfig") or {})

    @staticmethod
    def _orphaned_service(client: Any, registry_id: str, version_id: int) -> tuple[Any, dict]:
        """The version's newest build service and the build facts its launcher labelled it
        with (older services of the version, if any, are removed)."""
        found = client.services.list(filters={"label": label_filter(registry_id, version_id)})
        if not found:
            raise BuildFailed("its launcher is gone and so is its swarm service: nothing to adopt")
        found.sort(key=lambda s: s.attrs.get("CreatedAt", ""))
        service = found.pop()
        for older in found:
            with contextlib.suppress(Exception):
                older.remove()
        try:
            facts = json.loads(service.attrs["Spec"]["Labels"][BUILD_FACTS_LABEL])
        except (KeyError, TypeError, ValueError):
            facts = None
        if not isinstance(facts, dict):
            with contextlib.suppress(Exception):
                service.remove()
            raise BuildFailed(f"service {service.name} carries no build facts; cannot adopt it")
        return service, facts

    def _finish(
        self,
        client: Any,
        info: dict[str, Any],
        service: Any,
        facts: dict[str, Any],
        log: BuildLog,
        should_cancel: Callable[[], bool],
        limits: BuildLimits,
        resubmit: Callable[[list[str]], Any] | None = None,
        elapsed_s: float = 0.0,
    ) -> BuildOutcome:
        """Wait for the service's task (resubmitted off a node that goes down, while
        SWARM_RETRIES allows and `resubmit` can), read its outputs, and remove the services,
        the task's container and the per-build image (whatever happens)."""
        swarm = info["Swarm"]
        began = time.monotonic() - elapsed_s  # one deadline for every attempt
        services: list[tuple[Any, threading.Thread]] = []  # one per attempt, with its logs
        task: dict[str, Any] = {}
        down: dict[str, str] = {}  # node id -> hostname of each node that went down under it
        job_ref = f"{facts['job_repository']}@{facts['job_image_digest']}"
        log.stage("training")
        try:
            while True:
                spent = time.monotonic() - began
                lost = self._attempt(
                    client, service, services, task, log, should_cancel, limits, spent
                )
                if lost is None:
                    break
                self._lost(client, service, lost, down, log, can_retry=resubmit is not None)
                assert resubmit is not None  # _lost raised otherwise
                service = resubmit(list(down))
            files, exit_code, node = self._outputs(client, swarm["NodeID"], task)
        finally:
            for each, _ in services:
                self._remove_service(each)  # also ends the log stream
            if services and task.get("NodeID") not in down:
                self._remove_task_container(client, swarm["NodeID"], task, job_ref)
            self._drop_job_image(client, facts, log, self._scheme(info, facts))
        for _, follower in services:
            follower.join(timeout=0.5)  # a service's log stream may outlive the service
        if exit_code in (137, 143) and ERROR_NAME not in files:
            raise BuildFailed(f"training task was killed (exit code {exit_code})")
        provenance = {
            **{k: v for k, v in facts.items() if k not in PRIVATE_FACTS},
            "swarm_id": swarm["Cluster"]["ID"],
            "node_id": task.get("NodeID"),
            "node_hostname": node,
            "service_id": service.id,
            "service_name": service.name,
            "task_id": task.get("ID"),
            "retries": len(down),
            "down_nodes": sorted(down.values()),
            "dockerfile_sha256": file_sha256(self.context / "Dockerfile"),
            "requirements_sha256": file_sha256(self.context / "requirements-trainer.txt"),
            "docker_server_version": client.version().get("Version"),
            "container_exit_code": exit_code,
            "memory_limit": limits.memory,
            "cpu_limit": limits.cpus,
            "train_network": self.settings.swarm_network,
            "transfer": "job image + get_archive",
            **({"adopted_after_s": round(elapsed_s, 1)} if elapsed_s else {}),
        }
        return collect(files, exit_code, provenance)

    def _attempt(
        self, client: Any, service: Any, services: list[tuple[Any, threading.Thread]],
        task: dict[str, Any], log: BuildLog, should_cancel: Callable[[], bool],
        limits: BuildLimits, elapsed_s: float,
    ) -> tuple[str, str] | None:  # fmt: skip
        """Follow one service (appended to `services`, its task kept in `task`) until its
        task ends: None, or (id, hostname) of the node that went down under it first."""
        follower = threading.Thread(target=self._follow, args=(service, log), daemon=True)
        follower.start()
        services.append((service, follower))
        task.clear()
        lost: list[tuple[str, str]] = []
        watch = NodeWatch(client)

        def finished() -> bool:
            task.update(self._task(service, log, task))
            node = watch.down(task.get("NodeID"))
            if node:
                lost.append(node)
            return bool(lost) or task.get("Status", {}).get("State") in DONE_STATES

        stop = lambda: self._remove_service(service)  # noqa: E731
        wait_until(finished, limits.timeout_s, should_cancel, stop, elapsed_s)
        return lost[0] if lost else None

    def _lost(
        self, client: Any, service: Any, lost: tuple[str, str], down: dict[str, str],
        log: BuildLog, can_retry: bool = True,
    ) -> None:  # fmt: skip
        """The node under `service`'s task went down: remove the service; return to retry
        on another ready node while SWARM_RETRIES allows (never for an adopted build), else
        fail naming the node."""
        node_id, hostname = lost
        down[node_id] = hostname
        self._remove_service(service)
        retries = self.settings.swarm_retries if can_retry else 0
        if len(down) > retries:
            before = [name for key, name in down.items() if key != node_id]
            raise BuildFailed(
                f"node {hostname} went down"
                + (f" (after {', '.join(before)} did; SWARM_RETRIES={retries})" if before else "")
            )
        if not other_ready_node(client, set(down)):
            raise BuildFailed(f"node {hostname} went down, and no other node is ready to retry on")
        log(
            f"node {hostname} went down; retrying the build on another node "
            f"(retry {len(down)} of {retries}, SWARM_RETRIES)"
        )

    @staticmethod
    def _publish_trainer(client: Any, image: Any, repository: str, log: BuildLog) -> str:
        """The trainer image's digest in the registry, pushed there when missing."""
        tag = image.labels.get(f"{LABEL_PREFIX}.image-key", image.id.split(":")[-1])[:16]
        pushed = image.attrs.get("RepoDigests", [])
        mine = [d.split("@", 1)[1] for d in pushed if d.startswith(f"{repository}@")]
        with contextlib.suppress(Exception):  # not there, or not readable: push it
            there = client.images.get_registry_data(f"{repository}:{tag}").id
            if there in mine:
                return there
        image.tag(repository, tag)
        log(f"pushing the trainer image to {repository}:{tag}")
        return _push(client, repository, tag, log)

    def _job_image(
        self, client: Any, job: BuildJob, facts: dict[str, Any], work_dir: Path, log: BuildLog
    ) -> str:
        """Build and push the per-build image (job.json and the dataset on the trainer)."""
        repository, tag = facts["job_repository"], facts["job_tag"]
        with tempfile.TemporaryFile(dir=work_dir) as spool:
            stream = client.api.build(
                fileobj=_job_context(job, facts["trainer_image"], spool),
                custom_context=True,
                tag=f"{repository}:{tag}",
                rm=True,
                forcerm=True,
                decode=True,
                network_mode=self.settings.build_network,
                labels={JOB_OF_LABEL: f"{job.registry_id}:{job.version_id}"},
            )
            for chunk in stream:
                if "error" in chunk:
                    raise BuildFailed(f"could not build the job image: {chunk['error'].strip()}")
        return _push(client, repository, tag, log)

    def _service(
        self,
        client: Any,
        job: BuildJob,
        facts: dict[str, Any],
        avoid: list[str] | None = None,
        suffix: str = "",
    ) -> Any:
        """The one-off job service, kept off the nodes (ids) in `avoid`; its labels carry
        the build facts an adopter needs."""
        from docker.types import Resources, RestartPolicy, ServiceMode

        limits = job.limits
        labels = version_labels(job)
        return client.services.create(
            f"{facts['job_repository']}@{facts['job_image_digest']}",
            args=[f"{WORK}/{JOB_NAME}", f"{WORK}/{OUT_DIR}"],
            name=service_name(job, facts["job_tag"] + suffix),
            labels={
                **labels,
                f"{LABEL_PREFIX}.version": job.version_label[:200],
                BUILD_FACTS_LABEL: json.dumps(facts, sort_keys=True),
            },
            container_labels=labels,
            env=[f"{k}={v}" for k, v in worker_environment().items()],
            mode=ServiceMode("replicated-job", replicas=1),
            restart_policy=RestartPolicy(condition="none"),
            resources=Resources(
                cpu_limit=int(limits.cpus * 1e9) if limits.cpus else None,
                mem_limit=parse_bytes(limits.memory),
            ),  # no reservations: see cluster_cpus
            networks=[self._network(client)],
            constraints=[f"node.id!={node}" for node in avoid or []] or None,
        )

    def _network(self, client: Any) -> str:
        """The internal overlay network build tasks join (created when missing): no route
        out of the cluster, the nearest a service gets to network `none`."""
        name = self.settings.swarm_network
        found = client.networks.list(names=[name])
        if not any(n.name == name for n in found):
            with contextlib.suppress(Exception):  # another build created it meanwhile
                client.networks.create(name, driver="overlay", internal=True, attachable=False)
        return name

    @staticmethod
    def _task(service: Any, log: BuildLog, last: dict[str, Any]) -> dict[str, Any]:
        """The service's (only) task, logging each change of its state or of its reason
        (e.g. why it is still pending)."""
        tasks = service.tasks()
        if not tasks:
            return {}
        task = max(tasks, key=lambda t: t.get("CreatedAt", ""))
        status, before = task.get("Status", {}), last.get("Status", {})
        detail = status.get("Err") or status.get("Message") or ""
        if (status.get("State"), detail) != (
            before.get("State"),
            before.get("Err") or before.get("Message") or "",
        ):
            log(f"task {status.get('State')}" + (f": {detail}" if detail else ""))
        return task

    def _outputs(
        self, client: Any, own_node: str, task: dict[str, Any]
    ) -> tuple[dict[str, bytes], int | None, str | None]:
        """The worker's output files from the task's container, its exit code, its node."""
        status = task.get("Status", {})
        if status.get("State") in ("rejected", "orphaned") or not status.get("ContainerStatus"):
            why = status.get("Err") or status.get("State")
            raise BuildFailed(f"the swarm could not run the build: {why}")
        container_id = status["ContainerStatus"].get("ContainerID")
        exit_code = status["ContainerStatus"].get("ExitCode")
        hostname = node_hostname(client, task)
        engine = self._node_engine(client, own_node, task["NodeID"], hostname)
        container = self._task_container(engine, container_id, hostname or task["NodeID"])
        if container.attrs.get("State", {}).get("OOMKilled"):
            raise BuildFailed("training was killed: out of memory")
        chunks, _ = container.get_archive(f"{WORK}/{OUT_DIR}")
        return read_output_archive(chunks), exit_code, hostname

    @staticmethod
    def _task_container(engine: Any, container_id: str, node: str) -> Any:
        """The task's container on its node's engine; a clear error when it is gone (the
        node's engine restarted under the build, faster than the swarm marks a node down)."""
        import docker.errors

        try:
            return engine.containers.get(container_id)
        except docker.errors.NotFound:
            raise BuildFailed(
                f"the build's container is gone from node {node} (did its engine restart?)"
            ) from None

    def _node_engine(self, client: Any, own_node: str, node_id: str, hostname: str | None) -> Any:
        """The engine of the node that ran the task: ours (`own_node`), or one
        SWARM_NODE_HOSTS names."""
        if node_id == own_node:
            return client
        hosts = self.settings.swarm_node_hosts
        key = node_id if node_id in hosts else (hostname or "")
        url = hosts.get(key)
        if not url:
            raise BuildFailed(
                f"the build ran on node {hostname or node_id}, whose engine this machine cannot "
                f"reach; name it in SWARM_NODE_HOSTS ({hostname}=tcp://...)"
            )
        return node_client(key)

    def _remove_task_container(
        self, client: Any, own_node: str, task: dict[str, Any], image: str | None = None
    ) -> None:
        """Remove the task's container and, on another node, the job image it pulled (it
        holds the dataset): a finished job's container stays on its node after the service
        is gone (a running one is removed with the service). The node's engine is found by
        node id or by its hostname, as SWARM_NODE_HOSTS may name either."""
        container_id = (task.get("Status", {}).get("ContainerStatus") or {}).get("ContainerID")
        if not container_id:
            return
        with contextlib.suppress(Exception):  # gone already, or its node unreachable: gc
            hostname = node_hostname(client, task)
            engine = self._node_engine(client, own_node, task["NodeID"], hostname)
            engine.containers.get(container_id).remove(force=True)
            if image and engine is not client:
                engine.images.remove(image, force=True)

    @staticmethod
    def _follow(service: Any, log: BuildLog) -> None:
        follow_lines(lambda: service.logs(stdout=True, stderr=True, follow=True), log)

    @staticmethod
    def _remove_service(service: Any) -> None:
        with contextlib.suppress(Exception):
            service.remove()

    @staticmethod
    def _drop_job_image(
        client: Any, facts: dict[str, Any], log: BuildLog, scheme: str = "https"
    ) -> None:
        """Remove the per-build image here and its manifest from the registry (best effort:
        the registry's own garbage collection reclaims the blobs)."""
        repository, digest = facts["job_repository"], facts["job_image_digest"]
        with contextlib.suppress(Exception):
            client.images.remove(f"{repository}:{facts['job_tag']}", force=True)
        if digest is None:
            return
        import requests

        address = facts["image_registry"]
        url = f"{scheme}://{address}/v2/{JOB_REPOSITORY}/manifests/{digest}"
        try:
            requests.delete(url, timeout=10).raise_for_status()
        except Exception as exc:  # a registry without deletes: the manifest stays
            log(f"could not delete {repository}@{digest[:19]} from the registry ({exc})")


def _parse_time(text: str | None) -> float | None:
    """Seconds since the epoch of an engine timestamp (nanosecond RFC 3339), or None."""
    from datetime import datetime

    if not text:
        return None
    trimmed = re.sub(r"(\.\d{6})\d*", r"\1", text).replace("Z", "+00:00")
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(trimmed).timestamp()
    return None
