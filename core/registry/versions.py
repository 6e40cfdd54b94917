"""Versions: numbering, lookup, listing, results. Every method is one transaction."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Text, cast, func, select
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Session

from core.actor import current_actor
from core.config import DEFAULT_MODEL
from core.errors import BadInput, DamagedRecord, NotFound
from core.operating_point import flags_of, policy_label
from core.registry.database import Database
from core.schema import (
    ACTIVE_STATUSES,
    FAILED,
    QUEUED,
    READY,
    Alias,
    Model,
    ModelVersion,
    Tag,
    VersionDetail,
    VersionEvent,
    aware,
    utcnow,
)

NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_.")
VERSION_NUMBER = re.compile(r"^[0-9]{1,9}$")
LOG_TAIL_CHARS = 4000


def _iso(value: datetime | None) -> str | None:
    return aware(value).isoformat() if value else None


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
        "threshold_policy": row.threshold_policy or policy_label(row.metrics, row.threshold),
        "flags": list(row.flags or []),
        "builder": row.builder,
        "metrics": row.metrics,
        "split_hash": row.split_hash,
        "data_sha256": row.data_sha256,
        "data_name": row.data_name,
        "data_kind": row.data_kind,
        "artifact_sha256": row.artifact_sha256,
        "artifact_size": row.artifact_size,
        "provenance": row.provenance,
        "fingerprint": row.fingerprint,
        "evaluated": evaluation_words(
            (row.metrics or {}).get("evaluation", {}).get("folds"),
            (row.metrics or {}).get("evaluation", {}).get("repeats"),
            ((row.provenance or {}).get("refit_of") or {}).get("version"),
            row.split_test_size,
        ),
        "imported": row.imported,
        "created_at": _iso(row.created_at),
        "started_at": _iso(row.started_at),
        "finished_at": _iso(row.finished_at),
        "error": row.error,
        "log_tail": row.log_tail,
        "note": row.note,
        "tags": [t.name for t in row.tags],
        "aliases": aliases or [],
        "archived": row.archived,
        "created_by": row.created_by,
        "archived_by": row.archived_by,
        "archived_at": _iso(row.archived_at),
        "cancel_requested": row.cancel_requested,
        "reproduction": row.reproduction,
    }


def record_change(
    session: Session, version_id: int, action: str, actor: str | None, detail: str | None = None
) -> None:
    """Append one change of a version to its history (inside the change's transaction)."""
    session.add(
        VersionEvent(
            version_id=version_id,
            action=action,
            detail=detail[:300] if detail else None,
            actor=actor,
            at=utcnow(),
        )
    )


def check_name(kind: str, value: str) -> str:
    """Aliases, tags and model names: short, lower case, letters, digits, - _ ."""
    if not isinstance(value, str):
        raise BadInput(f"{kind} must be text")
    value = value.strip().lower()
    if not value or len(value) > 100 or not set(value) <= NAME_CHARS:
        raise BadInput(
            f"{kind} {value[:100]!r} must be 1-100 characters of a-z, 0-9, '-', '_', '.'"
        )
    if kind == "alias" and (value.isdigit() or value == "latest"):
        raise BadInput(f"alias {value!r} would shadow a version reference")
    return value


def parse_ref(ref: str | int) -> tuple[str, int | str]:
    """('number', n), ('latest', 'latest') or ('alias', name) for a user's version reference."""
    text = str(ref).strip()
    if VERSION_NUMBER.match(text):
        return "number", int(text)
    if text.lower() == "latest":
        return "latest", "latest"
    if text and len(text) <= 100 and set(text.lower()) <= NAME_CHARS:
        return "alias", text.lower()
    shown = text[:40] + ("..." if len(text) > 40 else "")
    raise BadInput(f"{shown!r} is not a version: give a number (e.g. 3), 'latest' or an alias name")


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
    data_name: str | None
    data_kind: str | None
    imported: bool
    split_hash: str | None
    created_at: datetime
    metrics: dict[str, Any] | None
    note: str | None
    error: str | None
    threshold: float
    threshold_policy: str | None
    flags: list[str] | None
    split_test_size: float
    tags: list[str]
    cv_folds: int | None = None
    cv_repeats: int | None = None
    refit_of: int | None = None

    @property
    def evaluated(self) -> str:
        return evaluation_words(self.cv_folds, self.cv_repeats, self.refit_of, self.split_test_size)


def evaluation_words(
    folds: int | None, repeats: int | None, refit_of: int | None, test_size: float | None
) -> str:
    """How a version was evaluated, in a few words: `20% split`, `5-fold CV`, `5×3-fold CV`,
    `refit of v4` (a refit carries its parent's evaluation)."""
    if refit_of is not None:
        return f"refit of v{refit_of}"
    if folds:
        return f"{folds}×{repeats}-fold CV" if repeats and repeats > 1 else f"{folds}-fold CV"
    return f"{test_size:.0%} split" if isinstance(test_size, int | float) else "split"


EVALUATION_FIELDS = ("cv_folds", "cv_repeats", "refit_of")
SUMMARY_COLUMNS = [
    f.name for f in fields(VersionSummary) if f.name not in ("tags", *EVALUATION_FIELDS)
]
# The metrics a version table or picker shows, read out of the JSON by the database: decoding
# every version's whole metrics document was half the time of a 50,000-version table.
LEAN_FIELDS = [name for name in SUMMARY_COLUMNS if name != "metrics"]
SUMMARY_METRICS = ("roc_auc", "pr_auc", "f1", "fpr", "fnr", "brier", "n", "positives")


def _evaluation_columns() -> list[Any]:
    """How each version was evaluated, read out of its JSON by the database."""
    return [
        ModelVersion.metrics[("evaluation", "folds")].as_integer().label("cv_folds"),
        ModelVersion.metrics[("evaluation", "repeats")].as_integer().label("cv_repeats"),
        ModelVersion.provenance[("refit_of", "version")].as_integer().label("refit_of"),
    ]


def _summary_metrics() -> list[Any]:
    return [ModelVersion.metrics[key].as_float().label(f"metric_{key}") for key in SUMMARY_METRICS]


LIST_COLUMNS = [
    "id",
    "version",
    "status",
    "stage",
    "recipe",
    "builder",
    "threshold",
    "threshold_policy",
    "flags",
    "split_test_size",
    "data_name",
    "data_kind",
    "data_sha256",
    "split_hash",
    "imported",
    "archived",
    "metrics",
    "artifact_sha256",
    "error",
    "created_at",
    "created_by",
]


class VersionState(NamedTuple):
    """The columns `check` needs of one version (no JSON is decoded)."""

    id: int
    model_name: str
    version: int
    status: str
    artifact_sha256: str | None
    worker_pid: int | None
    worker_host: str | None
    created_at: datetime


def _lean_metrics(values: Any) -> dict[str, Any] | None:
    """The summary metrics present (None when a version has none, e.g. a failed build)."""
    lean = {k: v for k, v in zip(SUMMARY_METRICS, values, strict=True) if v is not None}
    for key in ("n", "positives"):
        if key in lean:
            lean[key] = int(lean[key])
    return lean or None


class RawJSON(str):
    """A JSON document exactly as stored, to be written into JSON output as it is."""


def _join_or_take_over(
    session: Session, version_id: int, provenance: dict[str, Any] | None
) -> tuple[int, bool] | None:
    """(id, joined) for an identical version found under the model's lock. A live one is
    joined. A queued one whose launcher exited before any worker started it is taken over:
    it records this request's launcher and is built by this request (joined False). Any
    other that can never finish is failed with the reason (None: make a new version)."""
    from core.registry.lifecycle import launcher_gone, orphan_reason

    row = session.get(ModelVersion, version_id)
    reason = orphan_reason(row) if row is not None else None
    if row is None or reason is None:
        return version_id, True
    if row.status == QUEUED and row.worker_pid is None and launcher_gone(row):
        request = (provenance or {}).get("request") or {}
        mine = dict(row.provenance or {})
        mine["request"] = {**(mine.get("request") or {}), "launcher": request.get("launcher")}
        row.provenance, row.cancel_requested = mine, False
        row.created_at = utcnow()  # queued again now: the grace for a worker starts again
        return version_id, False
    row.status, row.stage, row.finished_at = FAILED, None, utcnow()
    row.error, row.worker_pid = f"{reason}; marked failed on recovery", None
    row.artifact_sha256 = row.artifact_size = None
    return None


class VersionQueries:
    """Creating, finding, listing and finishing versions."""

    db: Database

    def _model(self, session: Session, name: str, create: bool = False) -> Model:
        model = session.scalar(select(Model).where(Model.name == name))
        if model is None:
            if not create:
                raise NotFound(f"no model named {name!r} in the registry")
            model = Model(name=check_name("model name", name), created_at=utcnow())
            session.add(model)
            session.flush()
        return model

    def _locked_model(self, session: Session, name: str) -> Model:
        """The model row, created if needed, locked until the transaction ends: version
        numbering and duplicate detection for one model are serialised on it."""
        for _ in range(3):
            model = session.scalar(select(Model).where(Model.name == name).with_for_update())
            if model is not None:
                return model
            try:
                with session.begin_nested():
                    self._model(session, name, create=True)
            except SAIntegrityError:  # another process created it first
                continue
        return self._model(session, name)

    def create_version(self, model: str = DEFAULT_MODEL, **values: Any) -> ModelVersion:
        """Insert a queued version with the next number for `model`."""
        return self.create_or_reuse(model, reuse=False, **values)[0]

    def create_or_reuse(
        self,
        model: str = DEFAULT_MODEL,
        *,
        reuse: bool = True,
        in_flight_only: bool = False,
        **values: Any,
    ) -> tuple[ModelVersion, bool]:
        """Insert a queued version with the next number for `model`; (row, reused).

        With `reuse`, a version built from the same fingerprint that is ready (and not
        archived or imported) or still queued or running is returned instead; with
        `in_flight_only` (a forced rebuild) only a queued or running one is. The check and
        the insert happen under the model's lock, so identical requests never both build.
        """
        statuses = ACTIVE_STATUSES if in_flight_only else (READY, *ACTIVE_STATUSES)
        values.setdefault("created_by", current_actor())

        def work(session: Session) -> tuple[int, bool]:
            owner = self._locked_model(session, model)
            if reuse:
                existing = session.scalar(_reusable(owner.id, values["fingerprint"], statuses))
                if existing is not None:
                    found = _join_or_take_over(session, existing, values.get("provenance"))
                    if found is not None:
                        return found
            self.db.lock(session, f"dataset:{values.get('data_sha256')}")
            number = (
                session.scalar(
                    select(func.max(ModelVersion.version)).where(ModelVersion.model_id == owner.id)
                )
                or 0
            ) + 1
            row = ModelVersion(
                model_id=owner.id,
                version=number,
                status=QUEUED,
                created_at=utcnow(),
                **({"provenance": {}} | values),
            )
            session.add(row)
            session.flush()
            record_change(session, row.id, "queued", row.created_by)
            return row.id, False

        row_id, reused = self.db.write(work)
        return self.get_by_id(row_id), reused

    def get_by_id(self, version_id: int) -> ModelVersion:
        with self.db.session() as session:
            row = session.get(ModelVersion, version_id)
            if row is None:
                raise NotFound(f"no version with id {version_id}")
            return row

    def resolve(self, ref: str | int, model: str = DEFAULT_MODEL) -> ModelVersion:
        """A version by number, `latest` (newest ready), or alias name."""
        kind, value = parse_ref(ref)
        with self.db.session() as session:
            owner = self._model(session, model)
            query = select(ModelVersion).where(ModelVersion.model_id == owner.id)
            if kind == "number":
                row = session.scalar(query.where(ModelVersion.version == value))
            elif kind == "latest":
                row = session.scalar(
                    query.where(ModelVersion.status == READY)
                    .order_by(ModelVersion.version.desc())
                    .limit(1)
                )
            else:
                row = session.scalar(
                    query.join(Alias, Alias.version_id == ModelVersion.id).where(
                        Alias.name == value
                    )
                )
            if row is None:
                raise NotFound(f"no version {str(ref).strip()[:40]!r} of model {model!r}")
            return row

    def list_versions(
        self,
        model: str = DEFAULT_MODEL,
        include_archived: bool = True,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[ModelVersion]:
        with self.db.session() as session:
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
        """`list_versions` for tables: newest first, only the columns a listing shows."""
        with self.db.session() as session:
            query = (
                select(
                    *(getattr(ModelVersion, name) for name in SUMMARY_COLUMNS if name != "metrics"),
                    *_evaluation_columns(),
                    *_summary_metrics(),
                )
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
        width = len(SUMMARY_COLUMNS) - 1
        more = width + len(EVALUATION_FIELDS)
        return [
            VersionSummary(
                **dict(zip(LEAN_FIELDS, row[:width], strict=True)),
                **dict(zip(EVALUATION_FIELDS, row[width:more], strict=True)),
                metrics=_lean_metrics(row[more:]),
                tags=tags.get(row[0], []),
            )
            for row in rows
        ]

    def list_rows(
        self,
        model: str = DEFAULT_MODEL,
        *,
        include_archived: bool = False,
        status: str | None = None,
        recipe: str | None = None,
        alias: str | None = None,
        tag: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        full: bool = False,
        raw_metrics: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Versions as JSON-ready dicts, newest first, produced while the query streams.

        The lean form selects only the listing's columns; `full` gives `version_dict`.
        With `raw_metrics`, a lean row's metrics stay the stored JSON text (`RawJSON`), for
        output that writes them out unchanged instead of decoding and re-encoding each one.
        """
        with self.db.session() as session:
            owner = session.scalar(select(Model).where(Model.name == model))
            if owner is None:
                return
            aliases: dict[int, list[str]] = {}
            for version_id, name in session.execute(
                select(Alias.version_id, Alias.name).where(Alias.model_id == owner.id)
            ):
                aliases.setdefault(version_id, []).append(name)
            columns = (
                (ModelVersion,)
                if full
                else (
                    *(
                        cast(ModelVersion.metrics, Text)
                        if name == "metrics" and raw_metrics
                        else getattr(ModelVersion, name)
                        for name in LIST_COLUMNS
                    ),
                    *_evaluation_columns(),
                )
            )
            query = (
                select(*columns)
                .where(ModelVersion.model_id == owner.id)
                .order_by(ModelVersion.version.desc())
            )
            if not include_archived and alias is None:
                query = query.where(ModelVersion.archived.is_(False))
            if status:
                query = query.where(ModelVersion.status == status)
            if recipe:
                query = query.where(ModelVersion.recipe == recipe)
            if alias:
                query = query.join(Alias, Alias.version_id == ModelVersion.id).where(
                    Alias.name == alias.strip().lower()
                )
            if tag:
                query = query.join(Tag, Tag.version_id == ModelVersion.id).where(
                    Tag.name == tag.strip().lower()
                )
            query = query.offset(offset)
            if limit:
                query = query.limit(limit)
            result = session.execute(query.execution_options(yield_per=1000))
            if full:
                for (row,) in result:
                    yield version_dict(row, sorted(aliases.get(row.id, [])))
                return
            tags = self._tags_of_model(session, owner.id)
            for values in result:
                item = dict(zip(LIST_COLUMNS, values, strict=False))
                folds, repeats, refit_of = values[len(LIST_COLUMNS) :]
                item["evaluated"] = evaluation_words(
                    folds, repeats, refit_of, item.pop("split_test_size")
                )
                item["created_at"] = _iso(item["created_at"])
                if raw_metrics and item["metrics"] is not None:
                    item["metrics"] = RawJSON(item["metrics"])
                item["aliases"] = sorted(aliases.get(item["id"], []))
                item["tags"] = tags.get(item["id"], [])
                yield {"model": model, **item}

    @staticmethod
    def _tags_of_model(session: Session, model_id: int) -> dict[int, list[str]]:
        tags: dict[int, list[str]] = {}
        for version_id, name in session.execute(
            select(Tag.version_id, Tag.name)
            .join(ModelVersion, Tag.version_id == ModelVersion.id)
            .where(ModelVersion.model_id == model_id)
            .order_by(Tag.name)
        ):
            tags.setdefault(version_id, []).append(name)
        return tags

    def all_versions(self) -> list[ModelVersion]:
        with self.db.session() as session:
            return list(session.scalars(select(ModelVersion).order_by(ModelVersion.id)))

    def iter_versions(self, batch: int = 2000) -> Iterator[ModelVersion]:
        """Every version of every model, by id, read in batches (bounded memory)."""
        last = 0
        while True:
            with self.db.session() as session:
                rows = list(
                    session.scalars(
                        select(ModelVersion)
                        .where(ModelVersion.id > last)
                        .order_by(ModelVersion.id)
                        .limit(batch)
                    )
                )
            if not rows:
                return
            yield from rows
            last = rows[-1].id

    def iter_states(self, batch: int = 5000) -> Iterator[VersionState]:
        """`VersionState` of every version of every model, by id, in batches."""
        last = 0
        while True:
            with self.db.session() as session:
                rows = session.execute(
                    select(
                        ModelVersion.id,
                        Model.name,
                        ModelVersion.version,
                        ModelVersion.status,
                        ModelVersion.artifact_sha256,
                        ModelVersion.worker_pid,
                        ModelVersion.worker_host,
                        ModelVersion.created_at,
                    )
                    .join(Model, Model.id == ModelVersion.model_id)
                    .where(ModelVersion.id > last)
                    .order_by(ModelVersion.id)
                    .limit(batch)
                ).all()
            if not rows:
                return
            yield from (VersionState(*row) for row in rows)
            last = rows[-1][0]

    def model_names(self) -> list[str]:
        with self.db.session() as session:
            return list(session.scalars(select(Model.name).order_by(Model.name)))

    def find_ready(self, model: str, fingerprint: str) -> ModelVersion | None:
        """The newest ready, unarchived, locally built version from exactly this fingerprint."""
        with self.db.session() as session:
            return session.scalar(
                select(ModelVersion)
                .join(Model)
                .where(
                    Model.name == model,
                    ModelVersion.fingerprint == fingerprint,
                    ModelVersion.status == READY,
                    ModelVersion.archived.is_(False),
                    ModelVersion.imported.is_(False),
                )
                .order_by(ModelVersion.version.desc())
                .limit(1)
            )

    def changes(self, version_id: int) -> list[dict[str, Any]]:
        """Who changed a version, oldest first: queued, cancel, tag, untag, note, archive,
        restore (alias moves are in `alias_history`)."""
        with self.db.session() as session:
            events = session.scalars(
                select(VersionEvent)
                .where(VersionEvent.version_id == version_id)
                .order_by(VersionEvent.id)
            )
            return [
                {"at": _iso(e.at), "action": e.action, "detail": e.detail, "actor": e.actor}
                for e in events
            ]

    def _update(self, version_id: int, **values: Any) -> ModelVersion:
        def work(session: Session) -> None:
            row = session.get(ModelVersion, version_id)
            if row is None:
                raise NotFound(f"no version with id {version_id}")
            for key, value in values.items():
                setattr(row, key, value)

        self.db.write(work)
        return self.get_by_id(version_id)

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

        def work(session: Session) -> None:
            row = session.get(ModelVersion, version_id)
            if row is None:
                raise NotFound(f"no version with id {version_id}")
            if row.status not in ACTIVE_STATUSES:
                raise BadInput(f"version {row.version} is already {row.status}")
            row.status, row.stage, row.finished_at = READY, None, utcnow()
            row.metrics, row.provenance, row.split_hash = metrics, provenance, split_hash
            if isinstance(metrics.get("threshold"), int | float):  # the tuned operating point
                row.threshold = float(metrics["threshold"])
            row.flags = flags_of(metrics)
            row.artifact_sha256, row.artifact_size = artifact_sha256, artifact_size
            row.log_tail, row.worker_pid = log_tail[-LOG_TAIL_CHARS:] or None, None
            session.merge(VersionDetail(version_id=version_id, **details))

        self.db.write(work)
        return self.get_by_id(version_id)

    def fail(
        self,
        version_id: int,
        error: str,
        log_tail: str = "",
        status: str = FAILED,
        provenance: dict[str, Any] | None = None,
    ) -> ModelVersion:
        """Mark failed (or cancelled) with the reason and the end of the log; the version
        no longer holds an artifact (whoever stored one removes it if nothing else does)."""
        values: dict[str, Any] = {
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
            values["provenance"] = provenance
        return self._update(version_id, **values)

    def details(self, version_id: int) -> VersionDetail | None:
        """A version's stored predictions and curves, checked whole; DamagedRecord naming
        the version when any column is damaged (never a raw decoding error)."""
        from core.packing import check_details

        try:
            with self.db.session() as session:
                detail = session.get(VersionDetail, version_id)
            if detail is not None:
                check_details(
                    detail.test_ids, detail.test_labels, detail.test_probabilities, detail.curves
                )
            return detail
        except DamagedRecord as exc:
            number = self.get_by_id(version_id).version
            raise DamagedRecord(
                f"version {number}'s stored predictions are damaged: {exc}"
            ) from None

    def status_counts(self, model: str = DEFAULT_MODEL) -> dict[str, int]:
        """How many unarchived versions of `model` are in each status."""
        with self.db.session() as session:
            rows = session.execute(
                select(ModelVersion.status, func.count())
                .join(Model)
                .where(Model.name == model, ModelVersion.archived.is_(False))
                .group_by(ModelVersion.status)
            )
            return {status: count for status, count in rows}

    def has_real_data(self, model: str = DEFAULT_MODEL) -> bool:
        """Whether any version of `model` was trained on something other than the bundled
        synthetic sample."""
        with self.db.session() as session:
            found = session.execute(
                select(ModelVersion.id)
                .join(Model)
                .where(Model.name == model, func.coalesce(ModelVersion.data_kind, "") != "sample")
                .limit(1)
            ).first()
            return found is not None


def _reusable(
    model_id: int, fingerprint: str, statuses: tuple[str, ...] = (READY, *ACTIVE_STATUSES)
) -> Any:
    """The newest version a request with this fingerprint may return instead of building."""
    return (
        select(ModelVersion.id)
        .where(
            ModelVersion.model_id == model_id,
            ModelVersion.fingerprint == fingerprint,
            ModelVersion.imported.is_(False),
            ModelVersion.archived.is_(False),
            ModelVersion.status.in_(statuses),
            ModelVersion.cancel_requested.is_(False),
        )
        .order_by(ModelVersion.version.desc())
        .limit(1)
    )
