"""Request bodies of `POST /v1/models/{ref}/predict` and the results sent back.

The body is one request (`title`, `text`, `time`, `meta`; title or text required) or a
batch (`requests`: a list of such objects). Fields the service does not know are kept and
reported back (`unknown_fields`), never silently used. Validation errors name the field
(`loc`), as FastAPI reports them, with status 422.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.dataset import MAX_TEXT_CHARS, MAX_TITLE_CHARS, REQUEST_ID, REQUESTER_COUNTS
from core.errors import BadInput
from core.predict import make_request, parse_request_time, request_meta, score
from core.serving.cache import Served
from core.serving.explanation import explain

MAX_BATCH = 1000
TITLE_DOC = f"the request's title (up to {MAX_TITLE_CHARS:,} characters)"
TEXT_DOC = f"the request's text (up to {MAX_TEXT_CHARS:,} characters)"
TIME_DOC = "when it was posted: ISO 8601 (UTC unless it says otherwise) or Unix seconds"
META_DOC = "the requester's numbers at request time: " + ", ".join(REQUESTER_COUNTS)


class _Fields(BaseModel):
    model_config = ConfigDict(extra="allow")

    title: str = Field("", max_length=MAX_TITLE_CHARS, description=TITLE_DOC)
    text: str = Field("", max_length=MAX_TEXT_CHARS, description=TEXT_DOC)
    time: float | str | None = Field(None, description=TIME_DOC)
    meta: dict[str, float] = Field(default_factory=dict, description=META_DOC)

    @field_validator("time")
    @classmethod
    def _time(cls, value: float | str | None) -> float | None:
        if value is None or value == "":
            return None
        try:
            return parse_request_time(str(value))
        except BadInput as exc:
            raise ValueError(str(exc)) from None

    @field_validator("meta")
    @classmethod
    def _meta(cls, value: dict[str, float]) -> dict[str, float]:
        for name in value:
            if name not in REQUESTER_COUNTS:
                raise ValueError(f"unknown requester field {name[:60]!r}")
        return value

    def has_text(self) -> bool:
        return bool(self.title.strip() or self.text.strip())

    def unknown_fields(self) -> list[str]:
        return sorted(self.model_extra or {})


class PredictRequest(_Fields):
    """One request to score."""

    @model_validator(mode="after")
    def _some_text(self) -> PredictRequest:
        if not self.has_text():
            raise ValueError("title or text is required")
        return self


class PredictBody(_Fields):
    """One request (title/text/time/meta), or a batch in `requests`."""

    requests: list[PredictRequest] | None = Field(
        None, min_length=1, max_length=MAX_BATCH, description=f"a batch of 1 to {MAX_BATCH}"
    )

    @model_validator(mode="after")
    def _one_or_batch(self) -> PredictBody:
        if self.requests is None and not self.has_text():
            raise ValueError("title or text is required (or a batch in requests)")
        if self.requests is not None and self.has_text():
            raise ValueError("give either one request (title/text) or a batch (requests)")
        return self

    def items(self) -> list[_Fields]:
        return list(self.requests) if self.requests is not None else [self]

    def unknown_fields(self) -> list[str]:
        return [name for name in super().unknown_fields() if name != "requests"]


class PredictResult(BaseModel):
    """What the service answers for one request (documentation of the response)."""

    request_id: str
    probability: float
    decision: bool = Field(description="probability >= threshold: predicted to get a pizza")
    threshold: float
    threshold_policy: str
    version: int
    alias: str | None
    fingerprint: str
    artifact_sha256: str
    warnings: list[dict[str, Any]] = Field(description="inputs outside the training range")
    defaults: dict[str, str] = Field(description="request-time fields filled in by default")
    unknown: list[str] = Field(
        default_factory=list,
        description="requester fields not given: averaged over the training requesters",
    )
    unknown_note: str = Field(default="", description="the same, in words")
    unknown_fields: list[str] = Field(description="fields of the request object not used")
    explanation: dict[str, Any] | None = None


class BatchResult(BaseModel):
    version: int
    alias: str | None
    unknown_fields: list[str] = Field(description="fields of the batch object not used")
    results: list[PredictResult]


class InvalidItem(Exception):
    """A request that passed the schema but not the dataset's own checks."""

    def __init__(self, loc: list[Any], message: str) -> None:
        super().__init__(message)
        self.loc, self.message = loc, message


def to_records(body: PredictBody) -> list[dict[str, Any]]:
    """Validated records for `core.predict.score`, one per request of the body."""
    batch = body.requests is not None
    records = []
    for index, item in enumerate(body.items()):
        loc: list[Any] = ["body", "requests", index] if batch else ["body"]
        try:
            record = make_request(item.title, item.text, **request_meta(item.time, item.meta))
        except BadInput as exc:
            raise InvalidItem(loc, str(exc)) from None
        record[REQUEST_ID] = f"request-{index}"
        records.append(record)
    return records


def results(
    served: Served,
    alias: str | None,
    body: PredictBody,
    records: list[dict[str, Any]],
    with_explanation: bool,
) -> list[dict[str, Any]]:
    """Each request's result, all from the one snapshot `served`."""
    scored = score(served.pipeline, records)
    return annotated(served, alias, body, records, scored, with_explanation)


def annotated(
    served: Served,
    alias: str | None,
    body: PredictBody,
    records: list[dict[str, Any]],
    scored: list[dict[str, Any]],
    with_explanation: bool,
) -> list[dict[str, Any]]:
    """`core.predict.score`'s output for `records` with what the service adds: decision,
    threshold, version, alias, unknown fields and (on demand) the explanation."""
    items = body.items()
    out = []
    for index, s in enumerate(scored):
        unknown = items[index].unknown_fields()
        result = {
            **s,
            "decision": s["probability"] >= served.threshold,
            "threshold": served.threshold,
            "threshold_policy": served.threshold_policy,
            "version": served.version,
            "alias": alias,
            "fingerprint": served.fingerprint,
            "artifact_sha256": served.artifact_sha256,
            "unknown_fields": unknown,
        }
        if with_explanation:
            result["explanation"] = explain(served.pipeline, records[index])
        out.append(result)
    return out
