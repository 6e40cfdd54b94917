"""Build logs kept in the registry, so every machine of a team can read them (even live)."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from core.registry.database import Database
from core.schema import BuildLogChunk, utcnow

TAIL_CHARS = 4000


class BuildLogs:
    """Appending to and reading build logs (chunks of lines, in order)."""

    db: Database

    def append_log(self, version_id: int, text: str) -> None:
        if not text:
            return

        def work(session: Session) -> None:
            session.add(BuildLogChunk(version_id=version_id, text=text, created_at=utcnow()))

        self.db.write(work)

    def log_tail(self, version_id: int, chars: int = TAIL_CHARS) -> str:
        """The last `chars` characters of a version's log, starting at a line boundary."""
        parts: list[str] = []
        total = 0
        with self.db.session() as session:
            query = (
                select(BuildLogChunk.text)
                .where(BuildLogChunk.version_id == version_id)
                .order_by(BuildLogChunk.id.desc())
            )
            for (text,) in session.execute(query.execution_options(yield_per=50)):
                parts.append(text)
                total += len(text)
                if total >= chars:
                    break
        whole = "".join(reversed(parts))
        if len(whole) <= chars:
            return whole
        cut = whole[-chars:]
        newline = cut.find("\n")
        return cut[newline + 1 :] if 0 <= newline < len(cut) - 1 else cut

    def log_text(self, version_id: int) -> str:
        with self.db.session() as session:
            return "".join(
                session.scalars(
                    select(BuildLogChunk.text)
                    .where(BuildLogChunk.version_id == version_id)
                    .order_by(BuildLogChunk.id)
                )
            )

    def log_size(self, version_id: int) -> int:
        with self.db.session() as session:
            return int(
                session.scalar(
                    select(func.coalesce(func.sum(func.length(BuildLogChunk.text)), 0)).where(
                        BuildLogChunk.version_id == version_id
                    )
                )
            )

    def clear_log(self, version_id: int) -> None:
        self.db.write(
            lambda s: s.execute(delete(BuildLogChunk).where(BuildLogChunk.version_id == version_id))
        )
