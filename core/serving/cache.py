"""Fitted pipelines keyed by artifact sha256, each loaded once per process.

A `Served` is one immutable snapshot of a version (its row's facts and its pipeline). A
request takes one snapshot and scores every item with it, so an alias moving mid-request
can never mix versions within one response.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from core.artifacts import ArtifactStore, open_store
from core.operating_point import policy_label
from core.predict import load_model
from core.schema import ModelVersion


@dataclass(frozen=True)
class Served:
    """A ready version as the service answers with it."""

    version_id: int
    version: int
    model: str
    fingerprint: str
    artifact_sha256: str
    threshold: float
    threshold_policy: str
    recipe: str
    pipeline: Any = field(repr=False, compare=False)


class ModelCache:
    """Pipelines by artifact sha256. Loading uses the CLI's verified policy (sha256 before
    unpickling, library skew refused); a failed load raises and caches nothing."""

    def __init__(self, store: ArtifactStore | None = None) -> None:
        self._store = store
        self._pipelines: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock_for(self, sha256: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(sha256, threading.Lock())

    def served(self, row: ModelVersion) -> Served:
        """The snapshot of `row`, loading its pipeline the first time it is asked for."""
        sha = row.artifact_sha256 or ""
        pipeline = self._pipelines.get(sha)
        if pipeline is None:
            with self._lock_for(sha):
                pipeline = self._pipelines.get(sha)
                if pipeline is None:
                    pipeline = load_model(row, self._store or open_store())
                    self._pipelines[sha] = pipeline
        return Served(
            version_id=row.id,
            version=row.version,
            model=row.model.name,
            fingerprint=row.fingerprint,
            artifact_sha256=sha,
            threshold=float(row.threshold),
            threshold_policy=policy_label(row.metrics, row.threshold),
            recipe=row.recipe,
            pipeline=pipeline,
        )

    def loaded(self) -> list[str]:
        return sorted(self._pipelines)
