"""The model registry: versions, aliases, tags and notes in any SQLAlchemy database.

SQLite (the default, `registry.db`) runs in WAL mode with foreign keys on and a busy
timeout; write transactions take the write lock up front so concurrent builds queue
instead of failing with "database is locked".
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from core.config import DEFAULT_MODEL, settings
from core.errors import AltruismError, BadInput, NotFound
from core.logs import read_tail
from core.schema import (
    ACTIVE_STATUSES,
    CANCELLED,
    FAILED,
    QUEUED,
    READY,
    RUNNING,
    Alias,
    Model,
    ModelVersion,
    Tag,
    VersionDetail,
    utcnow,
)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_S = 30
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_.")
LOG_TAIL_CHARS = 4000


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def version_dict(row: ModelVersion, aliases: list[str] | None = None) -> dict[str, Any]:
    """The public JSON shape of a version (CLI `--json`, dashboard, model card)."""
    return {
        "id": row.id,
        "model": row.model.name,
        "version": row.version,
        "status": row.status,
        "stage": row.stage,
        "recipe": row.recipe,
        "params": row.params,
        "threshold": row.threshold,
        "builder": row.builder,
        "metrics": row.metrics,
        "split_hash": row.split_hash,
        "data_sha256": row.data_sha256,
        "artifact_sha256": row.artifact_sha256,
        "artifact_size": row.artifact_size,
        "provenance": row.provenance,
        "fingerprint": row.fingerprint,
        "created_at": _iso(row.created_at),
        "started_at": _iso(row.started_at),
        "finished_at": _iso(row.finished_at),
        "error": row.error,
        "log_tail": row.log_tail,
        "note": row.note,
        "tags": [t.name for t in row.tags],
        "aliases": aliases or [],
        "archived": row.archived,
        "cancel_requested": row.cancel_requested,
        "reproduction": row.reproduction,
    }


def check_name(kind: str, value: str) -> str:
    """Aliases, tags and model names: short, lower case, letters, digits, - _ ."""
    value = value.strip().lower()
    if not value or len(value) > 100 or not set(value) <= NAME_CHARS:
        raise BadInput(f"{kind} {value!r} must be 1-100 characters of a-z, 0-9, '-', '_', '.'")
    if kind == "alias" and (value.isdigit() or value == "latest"):
        raise BadInput(f"alias {value!r} would shadow a version reference")
    return value


@dataclass
class VersionSummary:
    """The few columns a version table shows (no provenance, params or details JSON)."""

    id: int
    version: int
    status: str
    stage: str | None
    archived: bool
    recipe: str
    builder: str
    data_sha256: str
    created_at: datetime
    metrics: dict[str, Any] | None
    note: str | None
    error: str | None
    tags: list[str] = field(default_factory=list)


class Registry:
    """All reads and writes of registry rows. Thread- and process-safe."""

    def __init__(self, url: str | None = None, migrate: bool = True) -> None:
        self.url = url or settings().registry_url
        self.engine = _make_engine(self.url)
        if migrate:
            self.upgrade()

    @property
    def identity(self) -> str:
        """A short stable id of this registry (labels its Docker containers)."""
        return hashlib.sha256(self.url.encode()).hexdigest()[:16]

    # --- schema --------------------------------------------------------------------------
    def _alembic(self) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        return cfg

    def current_revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head_revision(self) -> str | None:
        return ScriptDirectory.from_config(self._alembic()).get_current_head()

    def upgrade(self, revision: str = "head") -> None:
        """Bring the schema to `revision` (default: latest), keeping every row."""
        if revision == "head" and self.current_revision() == self.head_revision():
            return
        with _migration_lock(self.url), self.engine.connect() as conn:
            # A batch migration rebuilds a table (copy, DROP, rename); with foreign keys on,
            # SQLite's DROP would cascade-delete every child row. The pragma only takes
            # effect outside a transaction, so set it on the raw connection before BEGIN.
            raw = conn.connection.driver_connection if conn.dialect.name == "sqlite" else None
            if raw is not None:
                raw.execute("PRAGMA foreign_keys=OFF")
            try:
                with conn.begin():
                    cfg = self._alembic()
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, revision)
            finally:
                if raw is not None:
                    raw.execute("PRAGMA foreign_keys=ON")

    # --- sessions ------------------------------------------------------------------------
    @contextlib.contextmanager
    def session(self, write: bool = False) -> Iterator[Session]:
        """One transaction; `write=True` takes SQLite's write lock at BEGIN (waiting for it)."""
        with self.engine.connect() as conn:
            if write:
                conn = conn.execution_options(altruism_write=True)
            transaction = self._begin(conn)
            session = Session(bind=conn, expire_on_commit=False)
            try:
                yield session
                session.flush()
                transaction.commit()
            except BaseException as exc:
                if transaction.is_active:  # a failed flush may have rolled it back already
                    transaction.rollback()
                if isinstance(exc, OperationalError):  # one clear line, not SQL and a trace
                    raise _storage_error(exc) from exc
                raise
            finally:
                session.close()

    @staticmethod
    def _begin(conn: Any) -> Any:
        for attempt in range(5):
            try:
                return conn.begin()
            except OperationalError as exc:
                if "locked" not in str(exc).lower() or attempt == 4:
                    raise AltruismError(f"the registry is busy, try again ({exc.orig})") from exc
                time.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")

    # --- models and versions -------------------------------------------------------------
    def _model(self, session: Session, name: str, create: bool = False) -> Model:
        model = session.scalar(select(Model).where(Model.name == name))
        if model is None:
            if not create:
                raise NotFound(f"no model named {name!r} in the registry")
            model = Model(name=check_name("model name", name))
            session.add(model)
            session.flush()
        return model

    def create_version(self, model: str = DEFAULT_MODEL, **fields: Any) -> ModelVersion:
        """Insert a queued version with the next number for `model`."""
        for attempt in range(10):
            try:
                with self.session(write=True) as session:
                    owner = self._model(session, model, create=True)
                    number = (
                        session.scalar(
                            select(func.max(ModelVersion.version)).where(
                                ModelVersion.model_id == owner.id
                            )
                        )
                        or 0
                    ) + 1
                    row = ModelVersion(
                        model_id=owner.id,
                        version=number,
                        status=QUEUED,
                        created_at=utcnow(),
                        **({"provenance": {}} | fields),
                    )
                    session.add(row)
                    session.flush()
                    row_id = row.id
                return self.get_by_id(row_id)
            except SAIntegrityError:
                if attempt == 9:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def get_by_id(self, version_id: int) -> ModelVersion:
        with self.session() as session:
            row = session.get(ModelVersion, version_id)
            if row is None:
                raise NotFound(f"no version with id {version_id}")
            return row

    def resolve(self, ref: str | int, model: str = DEFAULT_MODEL) -> ModelVersion:
        """A version by number, `latest` (newest ready), or alias name."""
        text = str(ref).strip()
        with self.session() as session:
            owner = self._model(session, model)
            query = select(ModelVersion).where(ModelVersion.model_id == owner.id)
            if text.isdigit():
                row = session.scalar(query.where(ModelVersion.version == int(text)))
            elif text == "latest":
                row = session.scalar(
                    query.where(ModelVersion.status == READY)
                    .order_by(ModelVersion.version.desc())
                    .limit(1)
                )
            else:
                row = session.scalar(
                    query.join(Alias, Alias.version_id == ModelVersion.id).where(
                        Alias.name == text.lower()
                    )
                )
            if row is None:
                raise NotFound(f"no version {text!r} of model {model!r}")
            return row

    def list_versions(
        self,
        model: str = DEFAULT_MODEL,
        include_archived: bool = True,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[ModelVersion]:
        with self.session() as session:
            query = (
                select(ModelVersion)
                .join(Model)
                .where(Model.name == model)
                .order_by(ModelVersion.version.desc())
            )
            if not include_archived:
                query = query.where(ModelVersion.archived.is_(False))
            if status:
                query = query.where(ModelVersion.status == status)
            if limit:
                query = query.limit(limit)
            return list(session.scalars(query))

    def version_summaries(
        self, model: str = DEFAULT_MODEL, include_archived: bool = True
    ) -> list[VersionSummary]:
        """`list_versions` for tables: newest first, only the columns a listing shows.

        Loading full rows decodes every version's provenance JSON, which dominates listing
        thousands of versions; this reads the summary columns and the tags in two queries.
        """
        names = [f.name for f in fields(VersionSummary) if f.name != "tags"]
        with self.session() as session:
            query = (
                select(*(getattr(ModelVersion, name) for name in names))
                .join(Model)
                .where(Model.name == model)
                .order_by(ModelVersion.version.desc())
            )
            if not include_archived:
                query = query.where(ModelVersion.archived.is_(False))
            rows = session.execute(query).all()
            tags: dict[int, list[str]] = {}
            for version_id, name in session.execute(
                select(Tag.version_id, Tag.name)
                .join(ModelVersion, Tag.version_id == ModelVersion.id)
                .join(Model)
                .where(Model.name == model)
                .order_by(Tag.name)
            ):
                tags.setdefault(version_id, []).append(name)
        return [VersionSummary(*row, tags=tags.get(row[0], [])) for row in rows]

    def artifact_in_use(self, sha256: str) -> bool:
        """Whether any version (of any model) references this artifact digest."""
        with self.session() as session:
            return (
                session.scalar(
                    select(ModelVersion.id).where(ModelVersion.artifact_sha256 == sha256).limit(1)
                )
                is not None
            )

    def all_versions(self) -> list[ModelVersion]:
        with self.session() as session:
            return list(session.scalars(select(ModelVersion).order_by(ModelVersion.id)))

    def model_names(self) -> list[str]:
        with self.session() as session:
            return list(session.scalars(select(Model.name).order_by(Model.name)))

    def find_ready(self, model: str, fingerprint: str) -> ModelVersion | None:
        """The newest ready, unarchived version built from exactly this fingerprint."""
        with self.session() as session:
            return session.scalar(
                select(ModelVersion)
                .join(Model)
                .where(
                    Model.name == model,
                    ModelVersion.fingerprint == fingerprint,
                    ModelVersion.status == READY,
                    ModelVersion.archived.is_(False),
                )
                .order_by(ModelVersion.version.desc())
                .limit(1)
            )

    def _update(self, version_id: int, **fields: Any) -> ModelVersion:
        with self.session(write=True) as session:
            row = session.get(ModelVersion, version_id)
            if row is None:
                raise NotFound(f"no version with id {version_id}")
            for key, value in fields.items():
                setattr(row, key, value)
        return self.get_by_id(version_id)

    def mark_running(self, version_id: int, stage: str, log_path: str | None = None) -> None:
        self._update(
            version_id,
            status=RUNNING,
            stage=stage,
            started_at=utcnow(),
            worker_pid=os.getpid(),
            worker_host=socket.gethostname(),
            log_path=log_path,
        )

    def set_stage(self, version_id: int, stage: str) -> None:
        self._update(version_id, stage=stage)

    def complete(
        self,
        version_id: int,
        *,
        metrics: dict[str, Any],
        provenance: dict[str, Any],
        split_hash: str,
        artifact_sha256: str,
        artifact_size: int,
        details: dict[str, Any],
        log_tail: str = "",
    ) -> ModelVersion:
        """Mark ready with results and details in one transaction."""
        with self.session(write=True) as session:
            row = session.get(ModelVersion, version_id)
            row.status, row.stage, row.finished_at = READY, None, utcnow()
            row.metrics, row.provenance, row.split_hash = metrics, provenance, split_hash
            row.artifact_sha256, row.artifact_size = artifact_sha256, artifact_size
            row.log_tail, row.worker_pid = log_tail[-LOG_TAIL_CHARS:] or None, None
            session.merge(VersionDetail(version_id=version_id, **details))
        return self.get_by_id(version_id)

    def fail(
        self,
        version_id: int,
        error: str,
        log_tail: str = "",
        status: str = FAILED,
        provenance: dict[str, Any] | None = None,
    ) -> ModelVersion:
        """Mark failed (or cancelled) with the reason and the end of the log."""
        fields: dict[str, Any] = {
            "status": status,
            "stage": None,
            "finished_at": utcnow(),
            "error": error[:4000],
            "worker_pid": None,
            "log_tail": (log_tail or "")[-LOG_TAIL_CHARS:] or None,
            "artifact_sha256": None,
            "artifact_size": None,
        }
        if provenance is not None:
            fields["provenance"] = provenance
        return self._update(version_id, **fields)

    def details(self, version_id: int) -> VersionDetail | None:
        with self.session() as session:
            return session.get(VersionDetail, version_id)

    # --- lifecycle -----------------------------------------------------------------------
    def request_cancel(self, version_id: int) -> ModelVersion:
        row = self.get_by_id(version_id)
        if row.status not in ACTIVE_STATUSES:
            raise BadInput(
                f"version {row.version} is {row.status}; only queued or running "
                "builds can be cancelled"
            )
        if row.status == QUEUED and row.worker_pid is None:
            return self.fail(version_id, "cancelled before it started", status=CANCELLED)
        return self._update(version_id, cancel_requested=True)

    def cancel_requested(self, version_id: int) -> bool:
        with self.session() as session:
            return bool(
                session.scalar(
                    select(ModelVersion.cancel_requested).where(ModelVersion.id == version_id)
                )
            )

    def claim_for(self, version_id: int, pid: int) -> None:
        """Record `pid` on this host as the version's worker (before it starts running)."""
        self._update(version_id, worker_pid=pid, worker_host=socket.gethostname())

    def mark_orphans(self) -> list[ModelVersion]:
        """Fail active versions whose worker process on this host is gone."""
        host = socket.gethostname()
        orphans = []
        with self.session() as session:
            rows = list(
                session.scalars(
                    select(ModelVersion).where(
                        ModelVersion.status.in_(ACTIVE_STATUSES), ModelVersion.worker_host == host
                    )
                )
            )
        for row in rows:
            if row.worker_pid and not pid_alive(row.worker_pid):
                orphans.append(
                    self.fail(
                        row.id,
                        f"the build worker (pid {row.worker_pid}) died before finishing; "
                        "marked failed on restart",
                        log_tail=read_tail(row.log_path) or row.log_tail or "",
                    )
                )
        return orphans

    def status_counts(self, model: str = DEFAULT_MODEL) -> dict[str, int]:
        """How many unarchived versions of `model` are in each status."""
        with self.session() as session:
            rows = session.execute(
                select(ModelVersion.status, func.count())
                .join(Model)
                .where(Model.name == model, ModelVersion.archived.is_(False))
                .group_by(ModelVersion.status)
            )
            return {status: count for status, count in rows}

    # --- aliases, tags, notes ------------------------------------------------------------
    def aliases_by_version(self, model: str = DEFAULT_MODEL) -> dict[int, list[str]]:
        with self.session() as session:
            rows = session.execute(
                select(Alias.version_id, Alias.name)
                .join(Model)
                .where(Model.name == model)
                .order_by(Alias.name)
            )
            out: dict[int, list[str]] = {}
            for version_id, name in rows:
                out.setdefault(version_id, []).append(name)
            return out

    def promote(
        self, ref: str | int, alias: str = "champion", model: str = DEFAULT_MODEL
    ) -> ModelVersion:
        """Point `alias` at a ready version (moving it if it pointed elsewhere)."""
        alias = check_name("alias", alias)
        row = self.resolve(ref, model)
        if row.status != READY:
            raise BadInput(
                f"version {row.version} is {row.status}; only ready versions can hold an alias"
            )
        with self.session(write=True) as session:
            existing = session.scalar(
                select(Alias).where(Alias.model_id == row.model_id, Alias.name == alias)
            )
            if existing is None:
                session.add(
                    Alias(model_id=row.model_id, name=alias, version_id=row.id, updated_at=utcnow())
                )
            else:
                existing.version_id, existing.updated_at = row.id, utcnow()
        return row

    def remove_alias(self, alias: str, model: str = DEFAULT_MODEL) -> None:
        with self.session(write=True) as session:
            owner = self._model(session, model)
            existing = session.scalar(
                select(Alias).where(Alias.model_id == owner.id, Alias.name == alias)
            )
            if existing is None:
                raise NotFound(f"no alias {alias!r}")
            session.delete(existing)

    def add_tag(self, version_id: int, tag: str) -> None:
        tag = check_name("tag", tag)
        with self.session(write=True) as session:
            if session.get(Tag, (version_id, tag)) is None:
                session.add(Tag(version_id=version_id, name=tag))

    def remove_tag(self, version_id: int, tag: str) -> None:
        with self.session(write=True) as session:
            existing = session.get(Tag, (version_id, tag))
            if existing is not None:
                session.delete(existing)

    def set_note(self, version_id: int, note: str) -> None:
        if len(note) > 10_000:
            raise BadInput("a note is limited to 10,000 characters")
        self._update(version_id, note=note or None)

    def set_archived(self, version_id: int, archived: bool = True) -> None:
        """Archive (hide from defaults, drop its aliases) or restore a version."""
        with self.session(write=True) as session:
            row = session.get(ModelVersion, version_id)
            if row is None:
                raise NotFound(f"no version with id {version_id}")
            if archived and row.status in ACTIVE_STATUSES:
                raise BadInput(f"version {row.version} is still {row.status}; cancel it first")
            row.archived = archived
            if archived:
                for alias in session.scalars(select(Alias).where(Alias.version_id == row.id)):
                    session.delete(alias)

    def set_reproduction(self, version_id: int, result: dict[str, Any]) -> None:
        self._update(version_id, reproduction=result)


def _storage_error(exc: OperationalError) -> AltruismError:
    reason = str(exc.orig).strip()
    lowered = reason.lower()
    if "readonly" in lowered or "read-only" in lowered:
        return AltruismError(f"the registry is read-only ({reason}); nothing was changed")
    if "locked" in lowered or "busy" in lowered:
        return AltruismError(f"the registry is busy, try again ({reason})")
    return AltruismError(f"the registry could not be used ({reason})")


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


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL, or None for other databases or memory."""
    if not url.startswith("sqlite"):
        return None
    path = url.split(":///", 1)[-1].split("?", 1)[0]
    if path.startswith("file:"):  # a URI filename (`sqlite:///file:PATH?mode=ro&uri=true`)
        path = path[len("file:") :]
    return Path(path) if path and path != ":memory:" else None


@contextlib.contextmanager
def _migration_lock(url: str) -> Iterator[None]:
    """Serialise schema upgrades of one SQLite file across processes."""
    path = sqlite_path(url)
    if path is None:
        yield
        return
    with open(f"{path}.migrate-lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _make_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
        if path is not None:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get("altruism_write")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine
