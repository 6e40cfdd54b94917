"""The model registry: versions, aliases, tags, notes and build logs in any SQLAlchemy
database (SQLite by default, PostgreSQL for a team).

`Registry` is one object over one engine; its methods are grouped by concern in the
modules of this package (versions, lifecycle, labels, logs, references, serving), each method one
transaction. The schema is migrated with Alembic when a registry is opened.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from core.config import settings
from core.registry.database import Database, classify, safe_url, sqlite_path
from core.registry.labels import Labels
from core.registry.lifecycle import (
    Lifecycle,
    launcher_identity,
    lease_holder,
    lease_reason,
    orphan_reason,
    pid_alive,
)
from core.registry.logs import BuildLogs
from core.registry.references import References
from core.registry.serving import Serving
from core.registry.versions import (
    VersionQueries,
    VersionSummary,
    check_name,
    parse_ref,
    version_dict,
)
from core.schema import RegistryMeta

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# The newest migration. Opening a registry at this revision needs no Alembic at all (a
# test checks that it matches the migration scripts).
HEAD_REVISION = "0009"


class Registry(VersionQueries, Lifecycle, Labels, BuildLogs, References, Serving):
    """All reads and writes of registry rows. Thread- and process-safe."""

    def __init__(self, url: str | None = None, migrate: bool = True) -> None:
        self.url = url or settings().registry_url
        self.db = Database(self.url)
        self.engine = self.db.engine
        self._identity: str | None = None
        if migrate:
            self.upgrade()

    @property
    def display_url(self) -> str:
        """The registry URL with any password masked."""
        return safe_url(self.url)

    @property
    def identity(self) -> str:
        """A stable id of this registry (labels its containers and Swarm services)."""
        if self._identity is None:
            with self.db.session() as session:
                value = session.scalar(select(RegistryMeta.value).where(RegistryMeta.key == "id"))
            self._identity = value or "unknown"
        return self._identity

    def session(self, write: bool = False) -> AbstractContextManager[Session]:
        return self.db.session(write)

    def ping(self) -> None:
        """One round trip to the database; a one-line AltruismError when it cannot be used."""
        with self.db.session() as session:
            session.execute(text("SELECT 1"))

    # --- schema --------------------------------------------------------------------------
    def _alembic(self) -> Any:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        return cfg

    def current_revision(self) -> str | None:
        """The schema's migration (read directly: no Alembic import on the hot path)."""
        try:
            with self.engine.connect() as conn:
                if not inspect(conn).has_table("alembic_version"):
                    return None
                return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except DBAPIError as exc:
            raise classify(exc, self.url) from exc

    def head_revision(self) -> str | None:
        """The newest migration script (parses the scripts: for checks and tests)."""
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(self._alembic()).get_current_head()

    def upgrade(self, revision: str = "head") -> None:
        """Bring the schema to `revision` (default: latest), keeping every row."""
        if revision == "head" and self.current_revision() == HEAD_REVISION:
            return
        with self.db.migration_lock():
            if revision == "head" and self.current_revision() == HEAD_REVISION:
                return  # another process migrated while we waited for the lock
            try:
                self._run_upgrade(revision)
            except DBAPIError as exc:
                raise classify(exc, self.url) from exc

    def _run_upgrade(self, revision: str) -> None:
        from alembic import command

        with self.engine.connect() as conn:
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


__all__ = [
    "Registry",
    "VersionSummary",
    "check_name",
    "launcher_identity",
    "lease_holder",
    "lease_reason",
    "orphan_reason",
    "parse_ref",
    "pid_alive",
    "safe_url",
    "sqlite_path",
    "version_dict",
]
