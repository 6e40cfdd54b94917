"""Adopt swarm builds whose launcher is gone (the swarm is the durable queue).

A swarm build's job keeps running as a service when the process that launched it dies (a
SIGKILL, a closed laptop, a restarted dashboard). Recovery (`check`, `gc`, `list`, the
dashboard, a new submission) does not fail such a build: it takes the build's lease over
atomically and hands it to a detached `reconcile` process, which waits for or collects
the task's results, registers the version ready (its artifact verified by hash as every
build's is) and removes the service, the task's container and the per-build image. A
build whose service is gone too is failed as any other orphan.

This module imports the build machinery only when there is a build to adopt.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime

from core.artifacts import ArtifactStore
from core.config import settings
from core.registry import Registry, lease_holder, orphan_reason
from core.schema import RUNNING, ModelVersion, aware

Echo = Callable[[str], None]
Adopter = Callable[[ModelVersion, str], bool]


def has_service(registry: Registry, row: ModelVersion) -> bool:
    """Whether the swarm still holds a build service for the version."""
    from core.builders.swarm import registry_services

    return bool(registry_services(registry.identity, row.id))


def hand_over(registry: Registry, row: ModelVersion, reason: str) -> bool:
    """Give an orphaned swarm build to a detached `reconcile` process; False when there is
    nothing to adopt (not a running swarm build, or its service is gone): fail it then.
    True also when another process changed the version first (it took the build over, or
    it ended): it is not this recovery's to fail."""
    if row.builder != "swarm" or row.status != RUNNING or not has_service(registry, row):
        return False
    if not registry.take_over(row.id, row.lease_holder, settings().build_lease_s):
        return True
    from core.builds import detach, launcher_log

    with contextlib.suppress(Exception):  # a note in its log; the adoption matters more
        registry.append_log(row.id, f"{reason}; its swarm service still runs: adopting it\n")
    verb = ["reconcile", "--id", str(row.id)]
    detach(verb, [row.id], registry, launcher_log(registry, row.id))
    return True


def adopter(registry: Registry) -> Adopter:
    """What recovery calls for each orphan before failing it (see `hand_over`)."""
    return lambda row, reason: hand_over(registry, row, reason)


def _handed_to_me(registry: Registry, row: ModelVersion, wait_s: float = 10.0) -> bool:
    """Whether the process that started this one has handed it the version (its claim
    lands just after the start)."""
    deadline = time.monotonic() + wait_s
    while row.status == RUNNING and row.lease_holder != lease_holder():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
        row = registry.get_by_id(row.id)
    return row.status == RUNNING


def _ours_to_adopt(registry: Registry, row: ModelVersion, handed: bool) -> bool:
    """Whether this process may adopt the version now: it was handed to it, or its
    launcher is gone and this process wins the lease."""
    if row.builder != "swarm" or row.status != RUNNING:
        return False
    if row.lease_holder == lease_holder() or (handed and _handed_to_me(registry, row)):
        return True
    if orphan_reason(row) is None:
        return False
    return registry.take_over(row.id, row.lease_holder, settings().build_lease_s)


def reconcile(
    registry: Registry,
    store: ArtifactStore | None = None,
    echo: Echo | None = None,
    version_ids: list[int] | None = None,
) -> list[ModelVersion]:
    """Adopt every swarm build whose launcher is gone (or the given ones) and see each to
    its end; the versions as they ended. Waits while their tasks run."""
    from core.artifacts import open_store

    store = store or open_store()
    adopted = []
    with registry.db.patient(settings().registry_retry_s):
        for row in registry.active_versions():
            if version_ids is not None and row.id not in version_ids:
                continue
            if _ours_to_adopt(registry, row, handed=version_ids is not None):
                adopted.append(adopt(registry, registry.get_by_id(row.id), store, echo))
    return adopted


def adopt(
    registry: Registry, row: ModelVersion, store: ArtifactStore, echo: Echo | None = None
) -> ModelVersion:
    """Collect an adopted swarm build's results and register them, as its launcher would
    have (this process holds its lease meanwhile)."""
    from core import builds
    from core.builders.swarm import SwarmBuilder

    for path, version_id in builds.work_dirs(registry):  # the dead launcher's: its job
        if version_id == row.id:  # image already holds what the task needs
            shutil.rmtree(path, ignore_errors=True)
    log = builds.build_log(registry, row, echo)
    lease = builds.LeaseKeeper(registry, [row.id], settings().build_lease_s)
    started = aware(row.started_at or datetime.now(UTC)).isoformat()  # as execute() writes it

    def run() -> builds.BuildOutcome:
        return SwarmBuilder().adopt(
            registry.identity,
            row.id,
            builds.build_limits(row),
            log,
            should_cancel=lambda: lease.lost or registry.cancel_requested(row.id),
        )

    return builds.see_through(registry, store, row, log, lease, run, started)
