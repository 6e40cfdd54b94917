"""What people attach to versions: aliases (`champion`), tags, notes, the archived flag."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.actor import current_actor
from core.config import DEFAULT_MODEL
from core.errors import BadInput, NotFound
from core.registry.database import Database
from core.registry.versions import _iso, check_name, record_change
from core.schema import (
    ACTIVE_STATUSES,
    READY,
    Alias,
    AliasEvent,
    Model,
    ModelVersion,
    Tag,
    utcnow,
)

MAX_NOTE_CHARS = 10_000


class Labels:
    db: Database  # `resolve` and `_model` come from VersionQueries

    def aliases_by_version(self, model: str = DEFAULT_MODEL) -> dict[int, list[str]]:
        with self.db.session() as session:
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
        self,
        ref: str | int,
        alias: str = "champion",
        model: str = DEFAULT_MODEL,
        actor: str | None = None,
    ) -> ModelVersion:
        """Point `alias` at a ready version (moving it if it pointed elsewhere), recording
        the move and its `actor` (default `current_actor()`) in the alias history."""
        alias = check_name("alias", alias)
        actor = current_actor(actor)
        row = self.resolve(ref, model)

        def work(session: Session) -> None:
            self.db.lock(session, f"alias:{row.model_id}:{alias}")
            current = session.get(ModelVersion, row.id)
            if current is None or current.status != READY or current.archived:
                state = "archived" if current is not None and current.archived else None
                raise BadInput(
                    f"version {row.version} is {state or (current.status if current else 'gone')}"
                    "; only ready, unarchived versions can hold an alias"
                )
            existing = session.scalar(
                select(Alias).where(Alias.model_id == row.model_id, Alias.name == alias)
            )
            if existing is None:
                session.add(
                    Alias(model_id=row.model_id, name=alias, version_id=row.id, updated_at=utcnow())
                )
            else:
                existing.version_id, existing.updated_at = row.id, utcnow()
            _record(session, row.model_id, alias, row.version, "promote", actor)

        self.db.write(work)
        return row

    def remove_alias(
        self, alias: str, model: str = DEFAULT_MODEL, actor: str | None = None
    ) -> None:
        actor = current_actor(actor)

        def work(session: Session) -> None:
            owner = self._model(session, model)
            self.db.lock(session, f"alias:{owner.id}:{alias}")
            existing = session.scalar(
                select(Alias).where(Alias.model_id == owner.id, Alias.name == alias)
            )
            if existing is None:
                raise NotFound(f"no alias {alias!r}")
            session.delete(existing)
            _record(session, owner.id, alias, None, "remove", actor)

        self.db.write(work)

    def alias_history(self, alias: str, model: str = DEFAULT_MODEL) -> list[dict[str, Any]]:
        """When each version held `alias`, oldest first: version, from, until (None while
        it still holds it), who set it and how, who ended it and how."""
        alias = check_name("alias", alias)
        with self.db.session() as session:
            owner = self._model(session, model)
            events = list(
                session.scalars(
                    select(AliasEvent)
                    .where(AliasEvent.model_id == owner.id, AliasEvent.alias == alias)
                    .order_by(AliasEvent.id)
                )
            )
        spans = []
        for index, event in enumerate(events):
            if event.version is None:
                continue
            after = events[index + 1] if index + 1 < len(events) else None
            spans.append(
                {
                    "alias": alias,
                    "version": event.version,
                    "from": _iso(event.at),
                    "until": _iso(after.at) if after else None,
                    "set_by": event.actor,
                    "how": event.action,
                    "ended_by": after.actor if after else None,
                    "ended_how": after.action if after else None,
                }
            )
        return spans

    def add_tag(self, version_id: int, tag: str, actor: str | None = None) -> None:
        tag = check_name("tag", tag)
        actor = current_actor(actor)

        def work(session: Session) -> None:
            if session.get(ModelVersion, version_id) is None:
                raise NotFound(f"no version with id {version_id}")
            if session.get(Tag, (version_id, tag)) is None:
                session.add(Tag(version_id=version_id, name=tag))
                record_change(session, version_id, "tag", actor, tag)

        self.db.write(work)

    def remove_tag(self, version_id: int, tag: str, actor: str | None = None) -> None:
        actor = current_actor(actor)

        def work(session: Session) -> None:
            existing = session.get(Tag, (version_id, tag))
            if existing is not None:
                session.delete(existing)
                record_change(session, version_id, "untag", actor, tag)

        self.db.write(work)

    def set_note(self, version_id: int, note: str, actor: str | None = None) -> None:
        if not isinstance(note, str) or len(note) > MAX_NOTE_CHARS:
            raise BadInput(f"a note is limited to {MAX_NOTE_CHARS:,} characters")
        actor = current_actor(actor)

        def work(session: Session) -> None:
            row = session.get(ModelVersion, version_id)
            if row is None:
                raise NotFound(f"no version with id {version_id}")
            row.note = note or None
            record_change(session, version_id, "note", actor, "cleared" if not note else None)

        self.db.write(work)

    def set_archived(
        self, version_id: int, archived: bool = True, actor: str | None = None
    ) -> None:
        """Archive (hide from defaults, drop its aliases) or restore a version, recording
        who did it (`archived_by`, `archived_at`; dropped aliases in their history)."""
        actor = current_actor(actor)

        def work(session: Session) -> None:
            row = session.get(ModelVersion, version_id)
            if row is None:
                raise NotFound(f"no version with id {version_id}")
            if archived and row.status in ACTIVE_STATUSES:
                raise BadInput(f"version {row.version} is still {row.status}; cancel it first")
            row.archived, row.archived_by, row.archived_at = archived, actor, utcnow()
            record_change(session, row.id, "archive" if archived else "restore", actor)
            if archived:
                names = session.scalars(select(Alias.name).where(Alias.version_id == row.id))
                for name in sorted(names):
                    self.db.lock(session, f"alias:{row.model_id}:{name}")
                for alias in session.scalars(select(Alias).where(Alias.version_id == row.id)):
                    session.delete(alias)
                    _record(session, row.model_id, alias.name, None, "archive", actor)

        self.db.write(work)


def _record(
    session: Session, model_id: int, alias: str, version: int | None, action: str, actor: str
) -> None:
    """Append one alias move to its history (inside the move's own transaction)."""
    session.add(
        AliasEvent(
            model_id=model_id, alias=alias, version=version, action=action, actor=actor, at=utcnow()
        )
    )
