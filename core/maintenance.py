"""`check` (is the registry consistent?) and `gc` (remove what nothing needs).

Both stream: the store is listed once, versions are read in batches, and every stored
artifact is hashed at most once however many versions share it. The store is listed
*before* the references are read: a build records its digest before its file lands, so a
file seen in the listing is either referenced by then or truly unreferenced.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text

from core.artifacts import KINDS, ArtifactStore
from core.config import settings
from core.reconcile import hand_over
from core.registry import Registry, lease_reason, orphan_reason
from core.schema import ACTIVE_STATUSES, READY, ModelVersion

STALE_INCOMING_S = 3600
BLOB_KINDS = ("model", "dataset")
NOUN = {"model": "artifact", "dataset": "dataset"}
# what gc reports but does not remove
LEFT_ALONE = ("error", "stray_file", "unreadable_file", "unreachable_engine")


@dataclass
class Report:
    """Findings of `check` or actions of `gc`."""

    findings: list[dict[str, Any]] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, message: str, **details: Any) -> None:
        self.findings.append({"kind": kind, "message": message, **details})

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "findings": self.findings}

    def count(self, *kinds: str) -> int:
        return sum(1 for f in self.findings if f["kind"] in kinds)

    def acted(self) -> int:
        """How many findings of `gc` are things it removed or ended (would, dry)."""
        return len(self.findings) - self.count(*LEFT_ALONE)


@dataclass
class Listing:
    """What one pass over the store found."""

    blobs: dict[str, set[str]] = field(default_factory=lambda: {k: set() for k in KINDS})
    partials: list[str] = field(default_factory=list)
    strays: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def list_store(store: ArtifactStore) -> Listing:
    listing = Listing()
    now = time.time()
    for entry in store.scan():
        if entry.kind in KINDS and entry.sha256:
            listing.blobs[entry.kind].add(entry.sha256)
        elif entry.kind == "unreadable":
            listing.unreadable.append(entry.rel)
        elif entry.kind == "partial":
            if now - entry.mtime > STALE_INCOMING_S:
                listing.partials.append(entry.rel)
        else:
            listing.strays.append(entry.rel)
    return listing


def _check_database(registry: Registry, report: Report) -> None:
    if registry.engine.dialect.name == "sqlite":
        with registry.engine.connect() as conn:
            result = [row[0] for row in conn.execute(text("PRAGMA integrity_check"))]
        if result != ["ok"]:
            report.add("database", "SQLite integrity_check failed", details=result[:20])
    current, head = registry.current_revision(), registry.head_revision()
    if current != head:
        report.add(
            "schema", f"schema at migration {current}, latest is {head}", current=current, head=head
        )


def _check_details(registry: Registry, row: Any, report: Report) -> None:
    """Report a ready version whose stored predictions or curves are damaged."""
    from core.errors import DamagedRecord

    try:
        registry.details(row.id)
    except DamagedRecord as exc:
        report.add("damaged_details", str(exc), version=row.version)


def _end_expired(
    registry: Registry, row: ModelVersion, reason: str, where: str, report: Report
) -> None:
    """Fail a build whose launcher stopped renewing its lease (and remove its leftovers)."""
    from core.builds import clean_after_orphans

    ended = registry.fail_if_active(row.id, f"{reason}; marked failed on recovery")
    if ended is not None:
        clean_after_orphans(registry, [ended])
        report.add(
            "stuck_build",
            f"{where} was {row.status} but {reason}: marked failed",
            version=row.version,
        )


def check(registry: Registry, store: ArtifactStore) -> Report:
    """Verify database, every ready artifact, unreferenced and stray files, stuck builds
    and leftovers of builds that ended (containers, work folders). Only reports, except
    that a build whose lease expired (its launcher, on any host, is gone) is ended."""
    report = Report()
    _check_database(registry, report)
    listing = list_store(store)
    referenced = {kind: registry.referenced(kind) for kind in BLOB_KINDS}
    verified: dict[str, str] = {}
    versions = 0
    for row in registry.iter_states():
        versions += 1
        where = f"{row.model_name} v{row.version}"
        if row.status == READY:
            _check_artifact(row, where, store, verified, report)
            _check_details(registry, row, report)
        elif row.status in ACTIVE_STATUSES:
            full = registry.get_by_id(row.id)  # with its launcher and lease
            reason = orphan_reason(full)
            if reason and hand_over(registry, full, reason):  # its swarm task runs on
                report.add(
                    "adopted_build",
                    f"{where}: {reason}; its swarm service runs on, so `reconcile` adopted it",
                    version=row.version,
                )
            elif reason and lease_reason(full):  # its launcher is gone: any process ends it
                _end_expired(registry, full, reason, where, report)
            elif reason:
                report.add(
                    "stuck_build", f"{where} is {row.status} but {reason}", version=row.version
                )
    for kind in BLOB_KINDS:
        for digest in sorted(listing.blobs[kind] - referenced[kind]):
            report.add(
                f"unreferenced_{NOUN[kind]}",
                f"{NOUN[kind]} {digest[:12]} is not referenced by any version "
                "(python -m core gc removes it)",
                sha256=digest,
            )
    for rel in listing.partials:
        report.add("partial_file", f"partial upload {rel} in the artifact store", path=rel)
    for rel in listing.strays:
        report.add("stray_file", f"{rel} in the artifact store is not an artifact", path=rel)
    _report_unreadable(listing, report, "")
    _check_down_nodes(registry, report)
    nodes, unreachable = node_engines()
    for item in [*leftovers(registry, nodes), *unreachable]:
        report.add(item["kind"], item["message"], **item["details"])
    report.checked = {
        "versions": versions,
        "artifacts": len(listing.blobs["model"]),
        "datasets": len(listing.blobs["dataset"]),
    }
    return report


def _check_down_nodes(registry: Registry, report: Report) -> None:
    """Swarm builds still running whose task sits on a node the swarm marks down (the
    builder retries or fails them within a minute; longer means their driver is gone)."""
    from core.builders.swarm import builds_on_down_nodes

    active = {row.id for row in registry.active_versions()}
    for service, version_id, label, node in builds_on_down_nodes(registry.identity):
        if version_id in active:
            report.add(
                "build_on_down_node",
                f"{label or f'version id {version_id}'} is building on node {node}, which is "
                f"down (service {service})",
                version_id=version_id,
                node=node,
            )


def _check_artifact(
    row: Any,
    where: str,
    store: ArtifactStore,
    verified: dict[str, str],
    report: Report,
) -> None:
    digest = row.artifact_sha256
    if not digest:
        report.add(
            "missing_artifact", f"{where} is ready but has no artifact digest", version=row.version
        )
        return
    if digest not in verified:  # not listed: it may have landed after the listing, look again
        verified[digest] = store.verify(digest)
    state = verified[digest]
    if state == "missing":
        report.add(
            "missing_artifact", f"{where}: artifact {digest[:12]} is missing", version=row.version
        )
    elif state == "tampered":
        report.add(
            "tampered_artifact",
            f"{where}: artifact {digest[:12]} does not match its recorded sha256",
            version=row.version,
        )


def leftovers(registry: Registry, nodes: list[NodeEngine]) -> Iterator[dict[str, Any]]:
    """Containers and swarm job images (here and on the swarm `nodes`), services and work
    folders of this registry's builds that are no longer active.

    They are listed before the statuses are read, so a build that starts meanwhile is not
    in the listing, and one listed is judged by its status after the listing; one that ended
    meanwhile removed its own leftovers first, so each is looked for again before it counts.
    """
    from core.builds import work_dirs

    dirs = work_dirs(registry)
    containers = list(_containers(registry, nodes))
    images = list(_job_images(registry, nodes))
    services = list(_services(registry))
    active = {row.id for row in registry.active_versions() if not orphan_reason(row)}
    for path, version_id in dirs:
        if version_id not in active and path.exists():
            yield {
                "kind": "leftover_work_dir",
                "message": f"work folder {path} of a build that ended",
                "details": {"path": str(path)},
            }
    for container, version_id, node in containers:
        if version_id not in active and _still_there(container):
            yield {
                "kind": "leftover_container",
                "message": f"trainer container {container.short_id} ({container.status}) of "
                f"version id {version_id}, which is no longer building"
                + (f", on node {node}" if node else ""),
                "details": {"container": container.id, "version_id": version_id}
                | ({"node": node} if node else {}),
            }
    for image, version_id, node in images:
        if version_id not in active and _still_there(image):
            yield {
                "kind": "leftover_job_image",
                "message": f"job image {image.short_id} of version id {version_id} (it holds "
                "the build's dataset), which is no longer building"
                + (f", on node {node}" if node else ""),
                "details": {"image": image.id, "version_id": version_id}
                | ({"node": node} if node else {}),
            }
    for service, version_id in services:
        if version_id not in active and _still_there(service):
            yield {
                "kind": "leftover_service",
                "message": f"swarm service {service.name} of version id {version_id}, which is "
                "no longer building",
                "details": {"service": service.id, "version_id": version_id},
            }


def _still_there(container: Any) -> bool:
    import docker.errors

    try:
        container.reload()
    except docker.errors.NotFound:
        return False
    return True


def _services(registry: Registry) -> Iterator[tuple[Any, int]]:
    """This registry's swarm build services, when the engine is a swarm manager."""
    from core.builders.docker import CONTAINER_LABEL, labelled_version_id
    from core.builders.swarm import registry_services

    for service in registry_services(registry.identity):
        raw = (service.attrs.get("Spec", {}).get("Labels") or {}).get(CONTAINER_LABEL, "")
        yield service, labelled_version_id(raw)


def _engines(nodes: list[NodeEngine]) -> list[NodeEngine]:
    """This machine's engine (node "", when it answers) and the swarm `nodes`."""
    from core.builders.docker import docker_client, engine_status

    ok, _ = engine_status()
    return [*([NodeEngine("", "", docker_client())] if ok else []), *nodes]


def _job_images(registry: Registry, nodes: list[NodeEngine]) -> Iterator[tuple[Any, int, str]]:
    """This registry's per-build swarm job images (they hold a dataset) on this machine's
    engine and on the `nodes` that pulled them, each with its version id and node."""
    from core.builders.docker import labelled_version_id
    from core.builders.swarm import JOB_OF_LABEL

    for engine in _engines(nodes):
        try:
            found = engine.client.images.list(filters={"label": JOB_OF_LABEL})
        except Exception:  # gone since it answered: the next check sees it
            continue
        for image in found:
            owner, _, raw = (image.labels or {}).get(JOB_OF_LABEL, "").partition(":")
            if owner == registry.identity:
                yield image, labelled_version_id(raw), engine.node


def _containers(registry: Registry, nodes: list[NodeEngine]) -> Iterator[tuple[Any, int, str]]:
    """This registry's trainer containers on this machine's engine and on the `nodes`, each
    with the node it is on ("" for this machine)."""
    from core.builders.docker import CONTAINER_LABEL, labelled_version_id, registry_containers

    for engine in _engines(nodes):
        try:
            found = registry_containers(engine.client, registry.identity)
        except Exception:  # gone since it answered: the next check sees it
            continue
        for container in found:
            raw = (container.labels or {}).get(CONTAINER_LABEL, "")
            yield container, labelled_version_id(raw), engine.node


@dataclass
class NodeEngine:
    """The engine of a swarm node SWARM_NODE_HOSTS names ("" and "": this machine's)."""

    node: str
    url: str
    client: Any


def node_engines() -> tuple[list[NodeEngine], list[dict[str, Any]]]:
    """The engines SWARM_NODE_HOSTS names (the swarm's other nodes, where finished build
    tasks' containers would stay), each asked once: those that answer, and a finding for
    each that does not (what its builds left there cannot be inspected or removed)."""
    from core.builders.docker import engine_problem
    from core.builders.swarm import node_client

    first_name: dict[str, str] = {}  # a node may be named by hostname and by id
    for node, url in sorted(settings().swarm_node_hosts.items()):
        first_name.setdefault(url, node)
    answered, unreachable = [], []
    for url, node in first_name.items():
        try:
            client = node_client(node, timeout=10)
            client.ping()
            answered.append(NodeEngine(node, url, client))
        except Exception as exc:
            unreachable.append(
                {
                    "kind": "unreachable_engine",
                    "message": f"the engine of node {node} ({url}) did not answer: "
                    f"{engine_problem(exc, url)}",
                    "details": {"node": node, "engine": url},
                }
            )
    return answered, unreachable


def gc(
    registry: Registry, store: ArtifactStore, dry_run: bool = False, images: bool = False
) -> Report:
    """Remove unreferenced artifacts and datasets, stale partial files, containers and work
    folders of builds that ended, and end builds that can never finish; with `images`, also
    trainer images no version of this registry needs (the engine may serve other registries,
    so that is opt-in). Stray files are reported, never removed. `dry_run` only says what
    would go. One item that cannot be removed is reported and the rest still go."""
    from core.builds import recover_orphans

    report = Report()
    if not dry_run:
        for row in recover_orphans(registry):
            report.add("stuck_build", f"{row.model.name} v{row.version}: {row.error}")
    listing = list_store(store)
    referenced = {kind: registry.referenced(kind) for kind in BLOB_KINDS}
    for kind in BLOB_KINDS:
        for digest in sorted(listing.blobs[kind] - referenced[kind]):
            _attempt(
                report,
                NOUN[kind],
                f"unreferenced {NOUN[kind]} {digest[:12]}",
                None if dry_run else _remover(registry, store, kind, digest),
                sha256=digest,
            )
    for rel in listing.partials:
        _attempt(
            report, "partial_file", f"partial file {rel}", None if dry_run else _partial(store, rel)
        )
    for rel in listing.strays:
        report.add("stray_file", f"{rel} in the artifact store is not an artifact; left alone")
    _report_unreadable(listing, report, "; left alone")
    nodes, unreachable = node_engines()
    for item in leftovers(registry, nodes):
        undo = None if dry_run else _leftover_remover(item)
        _attempt(report, item["kind"], item["message"], undo, **item["details"])
    for item in unreachable:
        report.add(item["kind"], item["message"] + "; nothing there was removed", **item["details"])
    if images:
        _gc_images(registry, report, dry_run)
    return report


def _report_unreadable(listing: Listing, report: Report, suffix: str) -> None:
    for rel in listing.unreadable:
        report.add(
            "unreadable_file",
            f"{rel} in the artifact store cannot be read (a symbolic link loop?){suffix}",
            path=rel,
        )


def _attempt(report: Report, kind: str, message: str, action: Any, **details: Any) -> None:
    if action is None:
        report.add(kind, message, **details)
        return
    try:
        if action() is False:
            return  # still needed after all (a build registered it meanwhile)
        report.add(kind, message, **details)
    except Exception as exc:  # report it and go on with the rest
        report.add("error", f"could not remove {message}: {type(exc).__name__}: {exc}", **details)


def _remover(registry: Registry, store: ArtifactStore, kind: str, digest: str):
    return lambda: registry.remove_if_unreferenced(kind, digest, lambda: store.remove(digest, kind))


def _partial(store: ArtifactStore, rel: str):
    return lambda: store.remove_entry(rel)


def _leftover_remover(item: dict[str, Any]):
    if item["kind"] == "leftover_work_dir":
        return lambda: _remove_tree(Path(item["details"]["path"]))

    def remove_container() -> None:
        import docker.errors

        from core.builders.docker import docker_client
        from core.builders.swarm import node_client

        node = item["details"].get("node")
        client = node_client(node, timeout=10) if node else docker_client()
        with contextlib.suppress(docker.errors.NotFound):  # gone meanwhile: fine
            if item["kind"] == "leftover_service":
                client.services.get(item["details"]["service"]).remove()
            elif item["kind"] == "leftover_job_image":
                client.images.remove(item["details"]["image"], force=True)
            else:
                client.containers.get(item["details"]["container"]).remove(force=True)

    return remove_container


def _remove_tree(path: Path) -> None:
    """Remove a work folder; one that vanished meanwhile is fine, any other error is not."""

    def onerror(function: Any, name: str, info: Any) -> None:
        if not isinstance(info[1], FileNotFoundError):
            raise info[1]

    shutil.rmtree(path, onerror=onerror)  # `onexc` needs Python 3.12


def _gc_images(registry: Registry, report: Report, dry_run: bool) -> None:
    from core.builders.docker import (
        IMAGE_REPOSITORY,
        current_image_tag,
        docker_client,
        engine_status,
    )

    ok, _ = engine_status()
    if not ok:
        return
    client = docker_client()
    needed = set()
    for row in registry.iter_versions():
        for builder in ("docker", "swarm"):
            needed.add(((row.provenance or {}).get(builder) or {}).get("image_id"))
    current = current_image_tag(client)  # the image the next build reuses
    for image in client.images.list(name=IMAGE_REPOSITORY):
        if image.id in needed or current in image.tags:
            continue
        label = ", ".join(image.tags) or image.short_id
        action = None if dry_run else (lambda i=image: client.images.remove(i.id, force=True))
        _attempt(
            report,
            "image",
            f"trainer image {label} is not needed by any version",
            action,
            image_id=image.id,
        )
