"""`check` (is the registry consistent?) and `gc` (remove what nothing needs)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from core.artifacts import ArtifactStore, sha256_of
from core.registry import Registry, pid_alive
from core.schema import ACTIVE_STATUSES, QUEUED, READY

STALE_QUEUED = timedelta(minutes=10)
STALE_INCOMING_S = 3600
STALE_CONTAINER = timedelta(minutes=10)  # younger stopped containers may be mid-collection


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


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def check(registry: Registry, store: ArtifactStore) -> Report:
    """Verify database, every ready artifact, unreferenced files and stuck builds."""
    report = Report()
    _check_database(registry, report)
    versions = registry.all_versions()
    referenced = {v.artifact_sha256 for v in versions if v.artifact_sha256}
    for row in versions:
        where = f"{row.model.name} v{row.version}"
        if row.status == READY:
            _check_artifact(row, where, store, report)
        elif row.status in ACTIVE_STATUSES:
            _check_active(row, where, report)
    for digest in store.all_digests():
        if digest not in referenced:
            report.add(
                "unreferenced_artifact",
                f"artifact {digest[:12]} is not referenced by "
                "any version (python -m core gc removes it)",
                sha256=digest,
            )
    for leftover in _incoming(store):
        report.add(
            "partial_file",
            f"partial upload {leftover.name} in the artifact store",
            path=str(leftover),
        )
    report.checked = {"versions": len(versions), "artifacts": len(store.all_digests())}
    return report


def _check_artifact(row: Any, where: str, store: ArtifactStore, report: Report) -> None:
    if not row.artifact_sha256:
        report.add(
            "missing_artifact", f"{where} is ready but has no artifact digest", version=row.version
        )
        return
    path = store.path_for(row.artifact_sha256)
    if not path.is_file():
        report.add(
            "missing_artifact",
            f"{where}: artifact {row.artifact_sha256[:12]} is missing",
            version=row.version,
        )
    elif sha256_of(path) != row.artifact_sha256:
        report.add(
            "tampered_artifact",
            f"{where}: artifact {row.artifact_sha256[:12]} does not match its recorded sha256",
            version=row.version,
        )


def _check_active(row: Any, where: str, report: Report) -> None:
    age = datetime.now(UTC) - _aware(row.created_at)
    if row.worker_pid and not pid_alive(row.worker_pid):
        report.add(
            "stuck_build",
            f"{where} is {row.status} but its worker (pid {row.worker_pid}) is gone",
            version=row.version,
        )
    elif not row.worker_pid and row.status == QUEUED and age > STALE_QUEUED:
        report.add(
            "stuck_build", f"{where} has been queued for {age} with no worker", version=row.version
        )


def _incoming(store: ArtifactStore) -> list[Path]:
    if not store.root.is_dir():
        return []
    now = time.time()
    return [
        p for p in store.root.glob("*/.incoming-*") if now - p.stat().st_mtime > STALE_INCOMING_S
    ]


def gc(
    registry: Registry, store: ArtifactStore, dry_run: bool = False, images: bool = False
) -> Report:
    """Remove unreferenced artifacts, stale partial files and trainer containers stopped for
    a while; with `images`, also trainer images that no version of this registry needs (the
    engine may serve other registries, so that is opt-in). `dry_run` only says what would go.
    """
    report = Report()
    referenced = {v.artifact_sha256 for v in registry.all_versions() if v.artifact_sha256}
    for digest in store.all_digests():
        if digest not in referenced:
            if not dry_run:
                store.remove(digest)
            report.add("artifact", f"unreferenced artifact {digest[:12]}", sha256=digest)
    for leftover in _incoming(store):
        if not dry_run:
            leftover.unlink(missing_ok=True)
        report.add("partial_file", f"partial file {leftover.name}", path=str(leftover))
    _gc_docker(registry, report, dry_run, images)
    return report


def _stopped_long_ago(container: Any) -> bool:
    state = container.attrs.get("State", {})
    stamp = state.get("FinishedAt") or container.attrs.get("Created") or ""
    try:
        finished = datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00")
    except ValueError:
        return True
    return finished.year < 2000 or datetime.now(UTC) - finished > STALE_CONTAINER


def _gc_docker(registry: Registry, report: Report, dry_run: bool, images: bool) -> None:
    from core.builders.docker import (
        CONTAINER_LABEL,
        IMAGE_REPOSITORY,
        docker_client,
        engine_status,
        image_tag,
    )

    ok, _ = engine_status()
    if not ok:
        return
    client = docker_client()
    for container in client.containers.list(all=True, filters={"label": CONTAINER_LABEL}):
        if container.status in ("exited", "dead", "created") and _stopped_long_ago(container):
            if not dry_run:
                container.remove(force=True)
            report.add("container", f"stopped trainer container {container.short_id}")
    if not images:
        return
    needed = {
        (v.provenance or {}).get("docker", {}).get("image_id") for v in registry.all_versions()
    }
    current = image_tag()
    for image in client.images.list(name=IMAGE_REPOSITORY):
        if image.id in needed or current in image.tags:
            continue
        if not dry_run:
            client.images.remove(image.id, force=True)
        report.add(
            "image",
            f"trainer image {', '.join(image.tags) or image.short_id} is not needed by any version",
            image_id=image.id,
        )
