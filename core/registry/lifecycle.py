"""The build lifecycle: who runs a version, its stage, cancellation, orphans, reproduction."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.actor import current_actor
from core.errors import BadInput, NotFound
from core.registry.database import Database
from core.registry.versions import record_change
from core.schema import (
    ACTIVE_STATUSES,
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    ModelVersion,
    aware,
    utcnow,
)

# A queued version with no worker this long after it was created was abandoned (its
# launcher died between creating the row and starting the worker).
QUEUED_GRACE = timedelta(minutes=10)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return True


def process_start(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot; Linux), to tell it from a later
    process given the same pid; None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rsplit(") ", 1)[-1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def pid_namespace() -> str | None:
    """This process's pid namespace (an inode number; Linux), to tell two containers that
    share a hostname apart: their pids mean nothing to each other."""
    try:
        return os.readlink("/proc/self/ns/pid").split("[", 1)[-1].rstrip("]") or None
    except OSError:
        return None


def lease_holder() -> str:
    """This process as a lease holder: `HOST pid PID ns NAMESPACE`."""
    return f"{socket.gethostname()} pid {os.getpid()} ns {pid_namespace() or '?'}"


def holder_host(holder: str | None) -> str | None:
    """The host named in a lease holder, or None."""
    return holder.split(" pid ", 1)[0] if holder and " pid " in holder else None


def holder_is_local(holder: str | None) -> bool:
    """Whether a lease holder (None: no lease) shares this host's pids: same host and, when
    both are known, the same pid namespace."""
    if not holder or " pid " not in holder:
        return True
    if holder_host(holder) != socket.gethostname():
        return False
    theirs, ours = holder.rsplit(" ns ", 1)[-1] if " ns " in holder else "?", pid_namespace()
    return theirs == "?" or ours is None or theirs == ours


def lease_reason(row: ModelVersion, now: datetime | None = None) -> str | None:
    """Why an active version's lease says its launcher is gone (it expired), or None while
    it holds (or it has no lease: a build from before leases, judged on its own host)."""
    if row.status not in ACTIVE_STATUSES or row.lease_expires_at is None:
        return None
    if (now or datetime.now(UTC)) <= aware(row.lease_expires_at):
        return None
    host = holder_host(row.lease_holder) or row.worker_host or "an unknown host"
    last = aware(row.lease_renewed_at or row.lease_expires_at)
    return f"launcher on {host} stopped renewing at {last:%Y-%m-%d %H:%M:%S} UTC"


def launcher_identity() -> dict[str, Any]:
    """This process as the launcher that holds the versions it queues until a worker runs
    them (recorded in `provenance.request.launcher`)."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": process_start(pid)}


def launcher_gone(row: ModelVersion) -> str | None:
    """Why a queued version's launcher no longer holds it (it exited), or None while it may:
    a launcher on another host, or one not recorded, is not ours to judge."""
    request = (row.provenance or {}).get("request")
    launcher = request.get("launcher") if isinstance(request, dict) else None
    if not isinstance(launcher, dict) or launcher.get("host") != socket.gethostname():
        return None
    pid = launcher.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    if pid_alive(pid) and process_start(pid) == launcher.get("start"):
        return None
    return f"its launcher (pid {pid}) exited before a worker started it"


def queued_grace() -> timedelta:
    seconds = os.environ.get("QUEUED_GRACE_S")
    try:
        return timedelta(seconds=float(seconds)) if seconds else QUEUED_GRACE
    except ValueError:
        return QUEUED_GRACE


def orphan_reason(row: ModelVersion, now: datetime | None = None) -> str | None:
    """Why an active version can never finish, or None while it may.

    A worker on this host (and in this pid namespace) is checked by pid, at once; any
    other is judged by its lease, which its launcher renews while it runs: once that
    expires, the launcher is gone. A build without a lease on another host (from before
    leases) is left to that host's own checks.
    """
    if row.status not in ACTIVE_STATUSES:
        return None
    here = socket.gethostname()
    if row.worker_pid:
        if (not row.worker_host or row.worker_host == here) and holder_is_local(row.lease_holder):
            if not pid_alive(row.worker_pid):
                return f"the build worker (pid {row.worker_pid}) died before finishing"
            return None
        return lease_reason(row, now)
    if row.status == QUEUED and (gone := launcher_gone(row)):
        return gone
    age = (now or datetime.now(UTC)) - aware(row.created_at)
    if row.status == QUEUED and age > queued_grace():
        return f"queued for {int(age.total_seconds())} s and no worker ever started it"
    return None


class Lifecycle:
    """Claiming, staging, cancelling and recovering builds."""

    db: Database  # `get_by_id`, `_update` and `fail` come from VersionQueries

    def mark_running(self, version_id: int, stage: str, lease_s: float | None = None) -> None:
        """This process runs the version now and holds its lease for `lease_s` seconds
        (renew it with `renew_lease`; without `lease_s` no lease is taken)."""
        now = utcnow()
        self._update(
            version_id,
            status=RUNNING,
            stage=stage,
            started_at=now,
            worker_pid=os.getpid(),
            worker_host=socket.gethostname(),
            **self._lease_values(now, lease_s),
        )

    @staticmethod
    def _lease_values(now: datetime, lease_s: float | None) -> dict[str, Any]:
        if lease_s is None:
            return {}
        return {
            "lease_holder": lease_holder(),
            "lease_renewed_at": now,
            "lease_expires_at": now + timedelta(seconds=lease_s),
        }

    def renew_lease(self, version_id: int, holder: str, lease_s: float) -> bool:
        """Extend the lease `holder` has on an active version by `lease_s` seconds from now;
        False when it no longer holds it (the version ended, or recovery took it)."""
        now = utcnow()

        def work(session: Session) -> bool:
            result = session.execute(
                update(ModelVersion)
                .where(
                    ModelVersion.id == version_id,
                    ModelVersion.status.in_(ACTIVE_STATUSES),
                    ModelVersion.lease_holder == holder,
                )
                .values(lease_renewed_at=now, lease_expires_at=now + timedelta(seconds=lease_s))
                .execution_options(synchronize_session=False)
            )
            return result.rowcount == 1

        return bool(self.db.write(work))

    def take_over(self, version_id: int, holder: str | None, lease_s: float) -> bool:
        """Make this process the worker of a running version whose lease `holder` had (its
        launcher is gone), atomically: of several recoveries at once, one gets it."""
        now = utcnow()
        held = (
            ModelVersion.lease_holder.is_(None)
            if holder is None
            else ModelVersion.lease_holder == holder
        )

        def work(session: Session) -> bool:
            result = session.execute(
                update(ModelVersion)
                .where(ModelVersion.id == version_id, ModelVersion.status == RUNNING, held)
                .values(
                    worker_pid=os.getpid(),
                    worker_host=socket.gethostname(),
                    **self._lease_values(now, lease_s),
                )
                .execution_options(synchronize_session=False)
            )
            return result.rowcount == 1

        return bool(self.db.write(work))

    def set_stage(self, version_id: int, stage: str) -> None:
        self._update(version_id, stage=stage)

    def request_cancel(self, version_id: int, actor: str | None = None) -> ModelVersion:
        """Cancel a queued or running build (recording who asked)."""
        row = self.get_by_id(version_id)
        if row.status not in ACTIVE_STATUSES:
            raise BadInput(
                f"version {row.version} is {row.status}; only queued or running "
                "builds can be cancelled"
            )
        actor = current_actor(actor)
        self.db.write(lambda session: record_change(session, version_id, "cancel", actor))
        if row.status == QUEUED and row.worker_pid is None:
            return self.fail(
                version_id, f"cancelled by {actor} before it started", status=CANCELLED
            )
        return self._update(version_id, cancel_requested=True)

    def cancel_requested(self, version_id: int) -> bool:
        with self.db.session() as session:
            return bool(
                session.scalar(
                    select(ModelVersion.cancel_requested).where(ModelVersion.id == version_id)
                )
            )

    def claim_for(self, version_id: int, pid: int, lease_s: float | None = None) -> None:
        """Record `pid` on this host as the version's worker (before it starts running),
        with a lease of `lease_s` seconds for it to start and renew (none without)."""
        values = self._lease_values(utcnow(), lease_s)
        if values:
            values["lease_holder"] = f"{socket.gethostname()} pid {pid} ns {pid_namespace() or '?'}"
        self._update(version_id, worker_pid=pid, worker_host=socket.gethostname(), **values)

    def pin_artifact(self, version_id: int, sha256: str) -> None:
        """Record the digest a running build is about to store, before the file lands, so
        that `gc` (which takes the same lock) never removes it."""

        def work(session: Session) -> None:
            self.db.lock(session, f"model:{sha256}")
            row = session.get(ModelVersion, version_id)
            if row is None:
                raise NotFound(f"no version with id {version_id}")
            if row.status not in ACTIVE_STATUSES:
                raise BadInput(f"version {row.version} is {row.status}; nothing to register")
            row.artifact_sha256, row.stage = sha256, "registering"

        self.db.write(work)

    def active_versions(self) -> list[ModelVersion]:
        with self.db.session() as session:
            return list(
                session.scalars(
                    select(ModelVersion).where(ModelVersion.status.in_(ACTIVE_STATUSES))
                )
            )

    def mark_orphans(
        self, adopt: Callable[[ModelVersion, str], bool] | None = None
    ) -> list[ModelVersion]:
        """Fail active versions that can never finish (dead worker, abandoned queue entry),
        except those `adopt(row, reason)` takes over (a swarm build whose task runs on)."""
        orphans = []
        for row in self.active_versions():
            reason = orphan_reason(row)
            if reason is None or (adopt is not None and adopt(row, reason)):
                continue
            try:
                orphans.append(self.fail_if_active(row.id, f"{reason}; marked failed on recovery"))
            except BadInput:  # it finished meanwhile
                continue
        return [row for row in orphans if row is not None]

    def fail_if_queued(self, version_id: int, error: str, status: str = FAILED) -> bool:
        """End a version only if it is still queued and no worker has claimed it."""

        def work(session: Session) -> bool:
            row = session.get(ModelVersion, version_id)
            if row is None or row.status != QUEUED or row.worker_pid is not None:
                return False
            row.status, row.stage, row.finished_at, row.error = status, None, utcnow(), error
            return True

        return bool(self.db.write(work))

    def fail_if_active(self, version_id: int, error: str) -> ModelVersion | None:
        """Fail a version only if it is still queued or running (atomically)."""
        tail = self.log_tail(version_id)

        def work(session: Session) -> bool:
            row = session.get(ModelVersion, version_id)
            if row is None or row.status not in ACTIVE_STATUSES:
                return False
            row.status, row.stage, row.finished_at = FAILED, None, utcnow()
            row.error, row.worker_pid = error[:4000], None
            row.log_tail = tail or row.log_tail
            row.artifact_sha256 = row.artifact_size = None
            return True

        return self.get_by_id(version_id) if self.db.write(work) else None

    def set_reproduction(self, version_id: int, result: dict[str, Any]) -> None:
        self._update(version_id, reproduction=result)
