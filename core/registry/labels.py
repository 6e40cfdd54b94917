"""What people attach to versions: aliases (`champion`), tags, notes, the archived flag."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.config import DEFAULT_MODEL
from core.errors import BadInput, NotFound
from core.registry.database import Database
from core.registry.versions import check_name
from core.schema import ACTIVE_STATUSES, READY, Alias, Model, ModelVersion, Tag, utcnow

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
        self, ref: str | int, alias: str = "champion", model: str = DEFAULT_MODEL
    ) -> ModelVersion:
        """Point `alias` at a ready version (moving it if it pointed elsewhere)."""
        alias = check_name("alias", alias)
        row = self.resolve(ref, model)

        def work(session: Session) -> None:
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

        self.db.write(work)
        return row

    def remove_alias(self, alias: str, model: str = DEFAULT_MODEL) -> None:
        def work(session: Session) -> None:
            owner = self._model(session, model)
            existing = session.scalar(
                select(Alias).where(Alias.model_id == owner.id, Alias.name == alias)
            )
            if existing is None:
                raise NotFound(f"no alias {alias!r}")
            session.delete(existing)

        self.db.write(work)

    def add_tag(self, version_id: int, tag: str) -> None:
        tag = check_name("tag", tag)

        def work(session: Session) -> None:
            if session.get(ModelVersion, version_id) is None:
                raise NotFound(f"no version with id {version_id}")
            if session.get(Tag, (version_id, tag)) is None:
                session.add(Tag(version_id=version_id, name=tag))

        self.db.write(work)

    def remove_tag(self, version_id: int, tag: str) -> None:
        def work(session: Session) -> None:
            existing = session.get(Tag, (version_id, tag))
            if existing is not None:
                session.delete(existing)

        self.db.write(work)

    def set_note(self, version_id: int, note: str) -> None:
        if not isinstance(note, str) or len(note) > MAX_NOTE_CHARS:
            raise BadInput(f"a note is limited to {MAX_NOTE_CHARS:,} characters")
        self._update(version_id, note=note or None)

    def set_archived(self, version_id: int, archived: bool = True) -> None:
        """Archive (hide from defaults, drop its aliases) or restore a version."""

        def work(session: Session) -> None:
            row = session.get(ModelVersion, version_id)
            if row is None:
                raise NotFound(f"no version with id {version_id}")
            if archived and row.status in ACTIVE_STATUSES:
                raise BadInput(f"version {row.version} is still {row.status}; cancel it first")
            row.archived = archived
            if archived:
                for alias in session.scalars(select(Alias).where(Alias.version_id == row.id)):
                    session.delete(alias)

        self.db.write(work)
