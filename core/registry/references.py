"""Which stored blobs the registry still needs, and removing one only when nothing does.

A build records the digest it is about to store (`pin_artifact`) before the file lands;
`remove_if_unreferenced` checks for references and removes the file under the same lock,
so `gc` and a build registering the same digest can never interleave.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.registry.database import Database
from core.schema import ModelVersion


def _reference_query(kind: str, sha256: str | None = None):
    if kind == "model":
        column = ModelVersion.artifact_sha256
        query = select(column).where(column.is_not(None))
    elif kind == "dataset":
        # every version keeps its dataset (failed ones too: the same content is stored once,
        # and a failed build stays inspectable and retryable)
        column = ModelVersion.data_sha256
        query = select(column)
    else:
        raise ValueError(f"unknown blob kind {kind!r}")
    if sha256 is not None:
        query = query.where(column == sha256)
    return query


class References:
    db: Database

    def referenced(self, kind: str = "model") -> set[str]:
        """Every digest of `kind` that some version needs (read in one streamed query)."""
        with self.db.session() as session:
            result = session.execute(_reference_query(kind).distinct())
            return {digest for (digest,) in result.yield_per(5000)}

    @staticmethod
    def _is_referenced(session: Session, kind: str, sha256: str) -> bool:
        return session.execute(_reference_query(kind, sha256).limit(1)).first() is not None

    def is_referenced(self, kind: str, sha256: str) -> bool:
        with self.db.session() as session:
            return self._is_referenced(session, kind, sha256)

    def artifact_in_use(self, sha256: str) -> bool:
        """Whether any version (of any model) references this artifact digest."""
        return self.is_referenced("model", sha256)

    def remove_if_unreferenced(self, kind: str, sha256: str, remove: Callable[[], object]) -> bool:
        """Call `remove()` only if no version needs the blob, holding its lock meanwhile."""

        def work(session: Session) -> bool:
            self.db.lock(session, f"{kind}:{sha256}")
            if self._is_referenced(session, kind, sha256):
                return False
            remove()
            return True

        return self.db.write(work)
