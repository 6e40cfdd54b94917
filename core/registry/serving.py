"""What the prediction service served: per-minute aggregates per version, host and process
(`ServingAggregate`), written by `core.serving.recorder` and read by the dashboard, the
model card and `serve` itself (which alias points where, polled cheaply)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.config import DEFAULT_MODEL
from core.registry.database import Database
from core.schema import Alias, Model, ModelVersion, ServingAggregate, aware

AGGREGATE_FIELDS = (
    "aliases",
    "calls",
    "requests",
    "errors",
    "out_of_range",
    "score_sum",
    "latency_p50_ms",
    "latency_p99_ms",
    "latency_max_ms",
    "latency_buckets",
)


@dataclass(frozen=True)
class AliasPointer:
    """Where one alias points: enough to tell whether it moved (one small indexed read)."""

    alias: str
    version_id: int
    version: int
    updated_at: datetime


@dataclass(frozen=True)
class ServedMinute:
    """One aggregate row with its version number (for pages and cards)."""

    version: int
    version_id: int
    minute: datetime
    host: str
    pid: int
    aliases: str | None
    calls: int
    requests: int
    errors: int
    out_of_range: int
    score_sum: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    latency_max_ms: float | None
    latency_buckets: dict[str, int] | None


class Serving:
    db: Database

    def alias_pointers(self, model: str = DEFAULT_MODEL) -> list[AliasPointer]:
        """Every alias of `model` and the version it names, in one query."""
        query = (
            select(Alias.name, Alias.version_id, ModelVersion.version, Alias.updated_at)
            .join(Model, Model.id == Alias.model_id)
            .join(ModelVersion, ModelVersion.id == Alias.version_id)
            .where(Model.name == model)
            .order_by(Alias.name)
        )
        with self.db.session() as session:
            return [
                AliasPointer(name, vid, number, aware(updated))
                for name, vid, number, updated in session.execute(query)
            ]

    def record_serving(self, rows: list[dict[str, Any]]) -> None:
        """Insert or replace aggregate rows keyed by (version_id, minute, host, pid)."""
        if rows:
            self.db.write(lambda session: _upsert(session, rows))

    def served_minutes(
        self,
        model: str = DEFAULT_MODEL,
        since: datetime | None = None,
        version_id: int | None = None,
        limit: int = 20_000,
    ) -> list[ServedMinute]:
        """Aggregate rows of `model` (or one version) from `since`, newest first."""
        query = (
            select(ServingAggregate, ModelVersion.version)
            .join(ModelVersion, ModelVersion.id == ServingAggregate.version_id)
            .join(Model, Model.id == ModelVersion.model_id)
            .where(Model.name == model)
            .order_by(ServingAggregate.minute.desc(), ServingAggregate.id.desc())
            .limit(limit)
        )
        if since is not None:
            query = query.where(ServingAggregate.minute >= since)
        if version_id is not None:
            query = query.where(ServingAggregate.version_id == version_id)
        with self.db.session() as session:
            return [_served(row, number) for row, number in session.execute(query)]


def _served(row: ServingAggregate, number: int) -> ServedMinute:
    values = {name: getattr(row, name) for name in AGGREGATE_FIELDS}
    return ServedMinute(
        version=number,
        version_id=row.version_id,
        minute=aware(row.minute),
        host=row.host,
        pid=row.pid,
        **values,
    )


def _upsert(session: Session, rows: list[dict[str, Any]]) -> None:
    for values in rows:
        key = (
            ServingAggregate.version_id == values["version_id"],
            ServingAggregate.minute == values["minute"],
            ServingAggregate.host == values["host"],
            ServingAggregate.pid == values["pid"],
        )
        existing = session.scalar(select(ServingAggregate).where(*key))
        if existing is None:
            session.add(ServingAggregate(**values))
        else:
            for name in AGGREGATE_FIELDS:
                setattr(existing, name, values[name])
