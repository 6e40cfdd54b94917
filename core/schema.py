"""SQLAlchemy tables of the registry. Changes here need an Alembic migration."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from core import packing

QUEUED, RUNNING, READY, FAILED, CANCELLED = "queued", "running", "ready", "failed", "cancelled"
STATUSES = (QUEUED, RUNNING, READY, FAILED, CANCELLED)
ACTIVE_STATUSES = (QUEUED, RUNNING)
FINAL_STATUSES = (READY, FAILED, CANCELLED)


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """A stored timestamp as UTC-aware (SQLite gives back naive UTC, PostgreSQL aware)."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class _Packed(TypeDecorator):
    """A Python list stored as compact bytes (`core.packing`)."""

    impl = LargeBinary
    cache_ok = True
    pack: Any = None
    unpack: Any = None

    def process_bind_param(self, value: Any, dialect: Any) -> bytes | None:
        return None if value is None else type(self).pack(value)

    def process_result_value(self, value: Any, dialect: Any) -> list | None:
        return None if value is None else type(self).unpack(bytes(value))


class PackedFloats(_Packed):
    pack, unpack = staticmethod(packing.pack_floats), staticmethod(packing.unpack_floats)


class PackedLabels(_Packed):
    pack, unpack = staticmethod(packing.pack_labels), staticmethod(packing.unpack_labels)


class PackedStrings(_Packed):
    pack, unpack = staticmethod(packing.pack_strings), staticmethod(packing.unpack_strings)


class Model(Base):
    """A named model (e.g. `raop`); versions are numbered per model."""

    __tablename__ = "models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelVersion(Base):
    """One build of a model: its recipe, status, metrics, artifact and provenance."""

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("model_id", "version", name="uq_model_version"),
        Index("ix_model_versions_listing", "model_id", "archived", "version"),
        Index("ix_model_versions_recipe", "model_id", "recipe"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), index=True)
    stage: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    recipe: Mapped[str] = mapped_column(String(100))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    threshold: Mapped[float] = mapped_column(Float, default=0.5)
    builder: Mapped[str] = mapped_column(String(20))
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    data_path: Mapped[str] = mapped_column(Text)
    data_sha256: Mapped[str] = mapped_column(String(64), index=True)
    split_seed: Mapped[int] = mapped_column(Integer)
    split_test_size: Mapped[float] = mapped_column(Float)
    split_hash: Mapped[str | None] = mapped_column(String(64))
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    provenance: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    artifact_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    artifact_size: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    log_tail: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    # build lifecycle (migration 0002)
    worker_pid: Mapped[int | None] = mapped_column(Integer)
    worker_host: Mapped[str | None] = mapped_column(String(255))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    log_path: Mapped[str | None] = mapped_column(Text)
    reproduction: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # integrity and datasets (migration 0003)
    imported: Mapped[bool] = mapped_column(Boolean, default=False)
    data_name: Mapped[str | None] = mapped_column(String(300))
    data_kind: Mapped[str | None] = mapped_column(String(20))
    # operating points (migration 0006): how the threshold was chosen, warnings on decisions
    threshold_policy: Mapped[str | None] = mapped_column(String(100))
    flags: Mapped[list[str] | None] = mapped_column(JSON)
    # who did what (migration 0008): who queued the build, who last archived or restored it
    created_by: Mapped[str | None] = mapped_column(String(200))
    archived_by: Mapped[str | None] = mapped_column(String(200))
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # build leases (migration 0009): the launcher renews the lease while the build runs
    lease_holder: Mapped[str | None] = mapped_column(String(300))
    lease_renewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    model: Mapped[Model] = relationship(lazy="joined")
    tags: Mapped[list[Tag]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", order_by="Tag.name"
    )


class VersionDetail(Base):
    """Bulky per-version results kept out of listings: curves and every test (or, for a
    cross-validated version, out-of-fold) prediction, packed (`core.packing`)."""

    __tablename__ = "version_details"
    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    curves: Mapped[dict[str, Any]] = mapped_column(JSON)
    test_ids: Mapped[list[str]] = mapped_column("test_ids_packed", PackedStrings)
    test_labels: Mapped[list[int]] = mapped_column("test_labels_packed", PackedLabels)
    test_probabilities: Mapped[list[float]] = mapped_column(
        "test_probabilities_packed", PackedFloats
    )


class Alias(Base):
    """A movable name (`champion`, `challenger`, ...) pointing at one version of a model."""

    __tablename__ = "aliases"
    __table_args__ = (UniqueConstraint("model_id", "name", name="uq_alias_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AliasEvent(Base):
    """One move of an alias (migration 0008): it now points at `version` (None: removed),
    set by `actor` at `at`. Rows are numbered in the order the moves committed."""

    __tablename__ = "alias_history"
    __table_args__ = (Index("ix_alias_history_alias", "model_id", "alias", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    alias: Mapped[str] = mapped_column(String(100))
    version: Mapped[int | None] = mapped_column(Integer)  # the number: kept if the row goes
    action: Mapped[str] = mapped_column(String(20))  # promote, remove, archive, recorded
    actor: Mapped[str | None] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class VersionEvent(Base):
    """One change to a version by someone (migration 0008): queued, cancel, tag, untag,
    note, archive, restore; `detail` holds the tag, for instance."""

    __tablename__ = "version_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), index=True
    )
    action: Mapped[str] = mapped_column(String(20))
    detail: Mapped[str | None] = mapped_column(String(300))
    actor: Mapped[str | None] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class BuildLogChunk(Base):
    """A piece of a build's log (whole lines, in order): readable from every machine."""

    __tablename__ = "build_logs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    text: Mapped[str] = mapped_column(Text)


class RegistryMeta(Base):
    """Facts about the registry itself (its id labels containers and Swarm services)."""

    __tablename__ = "registry_meta"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Tag(Base):
    __tablename__ = "tags"
    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(100), primary_key=True, index=True)


class ServingAggregate(Base):
    """What one serving process answered with one version in one minute (migration 0007).
    Latencies are kept as a mergeable histogram (`core.serving.stats`) besides the row's
    own quantiles, so an hour's p99 over many hosts is read from the merged histogram."""

    __tablename__ = "serving_aggregates"
    __table_args__ = (
        UniqueConstraint("version_id", "minute", "host", "pid", name="uq_serving_minute"),
        Index("ix_serving_aggregates_minute", "minute"),
        Index("ix_serving_aggregates_version", "version_id", "minute"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    minute: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    aliases: Mapped[str | None] = mapped_column(String(300))
    calls: Mapped[int] = mapped_column(Integer)
    requests: Mapped[int] = mapped_column(Integer)
    errors: Mapped[int] = mapped_column(Integer)
    out_of_range: Mapped[int] = mapped_column(Integer)
    score_sum: Mapped[float] = mapped_column(Float)
    latency_p50_ms: Mapped[float | None] = mapped_column(Float)
    latency_p99_ms: Mapped[float | None] = mapped_column(Float)
    latency_max_ms: Mapped[float | None] = mapped_column(Float)
    latency_buckets: Mapped[dict[str, int] | None] = mapped_column(JSON)
