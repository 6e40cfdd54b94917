"""One engine and session factory for every registry query, on SQLite or PostgreSQL.

SQLite (the default, `registry.db`) runs in WAL mode with foreign keys on and a busy
timeout; write transactions take the write lock up front (BEGIN IMMEDIATE) so concurrent
writers queue instead of failing. On PostgreSQL, writers that must not interleave take a
row lock or a transaction-scoped advisory lock (`lock()`). Failures are classified by
their type and SQLSTATE, never by matching one database's wording: lock and serialisation
conflicts are retried, the rest become one line without the password.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import Session

from core.errors import AltruismError, BadInput

BUSY_TIMEOUT_S = 30
WRITE_ATTEMPTS = 8
T = TypeVar("T")

# SQLSTATE classes and codes (PostgreSQL; psycopg exposes them as `sqlstate`).
RETRYABLE_SQLSTATES = {"40001", "40P01", "55P03"}  # serialization, deadlock, lock not available
CREDENTIAL_SQLSTATES = {"28000", "28P01"}  # invalid authorization, wrong password
MISSING_DATABASE_SQLSTATES = {"3D000"}


class RegistryUnavailable(AltruismError):
    """The registry database cannot be reached or used now (exit code 1)."""


class RegistryCredentials(AltruismError):
    """The registry refused the configured credentials (exit code 2: fix the setting)."""

    exit_code = 2


class Retryable(AltruismError):
    """A lock or serialisation conflict: the transaction can simply run again."""


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages and the dashboard."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<unparsable registry URL>"


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL, or None for other databases or memory."""
    if not url.startswith("sqlite"):
        return None
    path = url.split(":///", 1)[-1].split("?", 1)[0]
    if path.startswith("file:"):  # a URI filename (`sqlite:///file:PATH?mode=ro&uri=true`)
        path = path[len("file:") :]
    return Path(path) if path and path != ":memory:" else None


def lock_key(name: str) -> int:
    """A signed 64-bit key for `pg_advisory_xact_lock`, derived from a name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None) or exc
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)


def _refused_by_a_live_server(orig: BaseException) -> bool:
    """Whether a connection attempt failed although its PostgreSQL server answers a ping.

    libpq reports no SQLSTATE for a refused connection attempt (no backend was ever
    started for it); a server that answers PQping but refused us means the settings (user,
    password, database) are wrong rather than the server unreachable.
    """
    pgconn = getattr(orig, "pgconn", None)
    if pgconn is None or getattr(pgconn, "backend_pid", 1) != 0:
        return False
    try:
        from psycopg import pq

        host = (pgconn.host or b"").decode()
        port = (pgconn.port or b"").decode()
        conninfo = f"host='{host}' port='{port}' connect_timeout=5".encode()
        return pq.PGconn.ping(conninfo) == pq.Ping.OK
    except Exception:  # a driver without ping: treat the server as unreachable
        return False


def classify(exc: BaseException, url: str) -> AltruismError:
    """A user-facing error for a database failure (no SQL, no password)."""
    state = _sqlstate(exc)
    orig = getattr(exc, "orig", None) or exc
    reason = " ".join(str(orig).split())[:300]
    where = safe_url(url)
    if state is None and not url.startswith("sqlite") and _refused_by_a_live_server(orig):
        return RegistryCredentials(
            f"the registry {where} refused the connection: check the user, password and "
            f"database in REGISTRY_URL ({reason})"
        )
    if state in RETRYABLE_SQLSTATES:
        return Retryable(f"the registry is busy, try again ({reason})")
    if state in CREDENTIAL_SQLSTATES:
        return RegistryCredentials(f"the registry {where} refused the credentials ({reason})")
    if state in MISSING_DATABASE_SQLSTATES:
        return RegistryCredentials(f"the registry database in {where} does not exist ({reason})")
    name = type(orig).__name__
    if url.startswith("sqlite") and name == "OperationalError":
        lowered = reason.lower()
        if "locked" in lowered or "busy" in lowered:
            return Retryable(f"the registry is busy, try again ({reason})")
        if "readonly" in lowered or "read-only" in lowered:
            return AltruismError(f"the registry is read-only ({reason}); nothing was changed")
    lost = isinstance(exc, DBAPIError) and (exc.connection_invalidated or state is None)
    if lost and not url.startswith("sqlite"):
        return RegistryUnavailable(f"cannot reach the registry at {where} ({reason})")
    return RegistryUnavailable(f"the registry {where} could not be used ({reason})")


def make_engine(url: str) -> Engine:
    """An engine for `url`: SQLite pragmas and BEGIN IMMEDIATE, or a pre-pinging pool."""
    try:
        if not url.startswith("sqlite"):
            return create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=4)
    except NoSuchModuleError as exc:
        raise BadInput(f"REGISTRY_URL {safe_url(url)}: unsupported database ({exc})") from None
    except ArgumentError as exc:
        raise BadInput(f"REGISTRY_URL is not a database URL ({exc})") from None
    except ImportError as exc:
        raise BadInput(f"REGISTRY_URL {safe_url(url)} needs a driver: {exc}") from None
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


class Database:
    """The engine, transactions with retries, and cross-process locks."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.dialect = self.engine.dialect.name
        # Seconds to wait out an unreachable database server (a restart) before an operation
        # fails: 0 for interactive use (fail fast), REGISTRY_RETRY_S while a build runs.
        self.patience_s = 0.0

    @contextlib.contextmanager
    def patient(self, seconds: float) -> Iterator[None]:
        """Within the block, connecting and writing retry with backoff for up to `seconds`
        when the server cannot be reached (never for SQLite files: a file does not restart)."""
        before, self.patience_s = self.patience_s, seconds if self.dialect != "sqlite" else 0.0
        try:
            yield
        finally:
            self.patience_s = before

    def _retrying(self, step: Callable[[], T], deadline: float | None = None) -> T:
        """`step()`, again with backoff while the server is unreachable and patience lasts."""
        deadline = deadline if deadline is not None else time.monotonic() + self.patience_s
        delay = 0.25
        while True:
            try:
                return step()
            except RegistryUnavailable:
                if time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(2.0, delay * 2)

    def _begin(self, write: bool) -> tuple[Any, Any]:
        """A connection and its transaction (the first statement runs at BEGIN)."""
        try:
            conn = self.engine.connect()
        except DBAPIError as exc:
            raise classify(exc, self.url) from exc
        if write:
            conn = conn.execution_options(altruism_write=True)
        try:
            return conn, conn.begin()
        except DBAPIError as exc:
            conn.close()
            raise classify(exc, self.url) from exc

    @contextlib.contextmanager
    def session(self, write: bool = False, deadline: float | None = None) -> Iterator[Session]:
        """One transaction; `write=True` takes SQLite's write lock at BEGIN (waiting for it).
        Connecting is retried while patience lasts, or until `deadline` (monotonic)."""
        conn, transaction = self._retrying(lambda: self._begin(write), deadline)
        with conn:
            session = Session(bind=conn, expire_on_commit=False)
            try:
                yield session
                session.flush()
                transaction.commit()
            except BaseException as exc:
                if transaction.is_active:  # a failed flush may have rolled it back already
                    with contextlib.suppress(DBAPIError):
                        transaction.rollback()
                if isinstance(exc, DBAPIError) and not _is_integrity(exc):
                    raise classify(exc, self.url) from exc
                raise
            finally:
                session.close()

    def write(self, work: Callable[[Session], T], attempts: int = WRITE_ATTEMPTS) -> T:
        """Run `work` in a write transaction, again after lock or serialisation conflicts,
        and (with patience) after the server went away mid-transaction: the transaction
        did not commit, so running it again changes nothing twice."""
        deadline = time.monotonic() + self.patience_s

        def attempt_all() -> T:
            for attempt in range(attempts):
                try:
                    with self.session(write=True, deadline=deadline) as session:
                        return work(session)
                except Retryable:
                    if attempt == attempts - 1:
                        raise
                    time.sleep(min(2.0, 0.05 * 2**attempt))
            raise AssertionError("unreachable")

        return self._retrying(attempt_all, deadline)

    def read(self, work: Callable[[Session], T]) -> T:
        with self.session() as session:
            return work(session)

    def lock(self, session: Session, name: str) -> None:
        """Hold a lock named `name` until the transaction ends (other writers wait).

        SQLite write transactions are already exclusive; PostgreSQL takes an advisory lock.
        """
        if self.dialect == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(name)})

    @contextlib.contextmanager
    def migration_lock(self) -> Iterator[None]:
        """Serialise schema upgrades across processes: a file lock for SQLite files, a
        session-level advisory lock on PostgreSQL (held on its own connection)."""
        path = sqlite_path(self.url)
        if path is not None:
            with open(f"{path}.migrate-lock", "a+") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
            return
        if self.dialect != "postgresql":
            yield
            return
        key = lock_key("altruism-lab:migrate")
        try:
            conn = self.engine.connect()
        except DBAPIError as exc:
            raise classify(exc, self.url) from exc
        try:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            conn.commit()
        except DBAPIError as exc:
            conn.close()
            raise classify(exc, self.url) from exc
        try:
            yield
        finally:
            with contextlib.suppress(DBAPIError):
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                conn.commit()
            conn.close()


def _is_integrity(exc: DBAPIError) -> bool:
    from sqlalchemy.exc import IntegrityError

    return isinstance(exc, IntegrityError)
