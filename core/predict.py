"""Load a registered model safely and score pizza requests with it."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from core.artifacts import ArtifactStore, open_store
from core.dataset import (
    MAX_TEXT_CHARS,
    MAX_TITLE_CHARS,
    REQUEST_ID,
    REQUESTER_COUNTS,
    TEXT,
    TIMESTAMP,
    TITLE,
    validate_request,
)
from core.errors import AltruismError, BadInput
from core.features import request_defaults, to_frame
from core.provenance import package_versions
from core.schema import READY, ModelVersion

# Libraries whose version change can change what an unpickled pipeline predicts.
PREDICTION_LIBRARIES = ("scikit-learn", "numpy", "scipy")
UNIX_SECONDS = re.compile(r"[0-9]{1,12}(\.[0-9]{1,6})?", re.ASCII)


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def environment_mismatch(row: ModelVersion) -> list[str]:
    """Library differences between the version's build environment and this process."""
    built = (row.provenance or {}).get("packages", {})
    here = package_versions()
    problems = []
    for name in PREDICTION_LIBRARIES:
        then, now = built.get(name), here.get(name)
        if then is None:
            continue
        same = then == now if name == "scikit-learn" else _minor(then) == _minor(now or "")
        if not same:
            problems.append(f"{name} {then} (built) vs {now} (here)")
    return problems


def load_model(row: ModelVersion, store: ArtifactStore | None = None) -> Any:
    """The version's pipeline, after the registry's sha256 and library checks pass."""
    if row.status != READY or not row.artifact_sha256:
        raise BadInput(f"version {row.version} is {row.status}; only ready versions predict")
    mismatch = environment_mismatch(row)
    if mismatch:
        raise AltruismError(
            f"version {row.version} was built with other library versions ("
            f"{'; '.join(mismatch)}); its predictions here could differ. Predict with the "
            "pinned requirements (requirements.txt) or retrain it here."
        )
    recorded = (row.provenance or {}).get("recipe_file")
    return (store or open_store()).load(row.artifact_sha256, _recipe_loader(recorded))


def _recipe_loader(recorded: Any) -> Callable[[], None] | None:
    """For a team recipe's version: register its recorded source as the module its
    pickled classes name (after the artifact's sha256 check, before unpickling)."""
    if not recorded:
        return None
    from core.recipe_files import register_for_loading

    return lambda: register_for_loading(recorded)


def make_request(title: str, text: str, **meta: Any) -> dict[str, Any]:
    """One request record from form or CLI input, validated; BadInput when unusable."""
    title, text = title or "", text or ""
    if not (title.strip() or text.strip()):
        raise BadInput("type a request title or some text to score")
    if len(title) > MAX_TITLE_CHARS or len(text) > MAX_TEXT_CHARS:
        raise BadInput(
            f"the request is too long: titles up to {MAX_TITLE_CHARS:,} and texts "
            f"up to {MAX_TEXT_CHARS:,} characters"
        )
    record = {
        REQUEST_ID: "typed",
        TITLE: title,
        TEXT: text,
        **{k: v for k, v in meta.items() if v is not None},
    }
    validate_request(record)
    return record


def prepare_requests(items: list[Any]) -> list[dict[str, Any]]:
    """Validate a list of request objects (ids optional) for scoring."""
    if not isinstance(items, list) or not items:
        raise BadInput("expected a non-empty JSON list of request objects")
    records = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadInput(f"record {index}: expected an object, got {type(item).__name__}")
        record = {REQUEST_ID: f"request-{index}", **item}
        validate_request(record, index)
        if not (record[TITLE].strip() or record[TEXT].strip()):
            raise BadInput(f"record {index}: title and text are both empty")
        records.append(record)
    return records


def predict_proba(pipeline: Any, records: list[dict[str, Any]]) -> list[float]:
    """Probability that each request receives a pizza."""
    return [float(p) for p in pipeline.predict_proba(to_frame(records))[:, 1]]


def score(pipeline: Any, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each request's probability (requester fields it does not give averaged over the
    version's training requesters: `unknown`, `unknown_note`), the given inputs outside the
    version's training range (`warnings`) and what was assumed (`defaults`: the time, now,
    when not given; for versions without background rows, blank fields as 0)."""
    from core.explain import marginal_proba, unknown_fields, unknown_note

    frame = to_frame(records)
    marginal = marginal_proba(pipeline, records, frame=frame)
    averaged = marginal is not None  # else an old artifact: blank fields count as 0
    if marginal is None:
        marginal = [float(p) for p in pipeline.predict_proba(frame)[:, 1]]
    ranges = getattr(pipeline, "input_ranges_", None) or {}
    checked = {f: frame[f].to_numpy(dtype=float) for f in ranges if f in frame}
    scored = []
    for i, record in enumerate(records):
        unknown = unknown_fields(record, pipeline) if averaged else []
        defaults = request_defaults(record, pipeline)
        scored.append(
            {
                "request_id": record.get(REQUEST_ID, f"request-{i}"),
                "probability": marginal[i],
                "warnings": _outside(ranges, checked, i, unknown),
                "unknown": unknown,
                "unknown_note": unknown_note(unknown),
                "defaults": {k: v for k, v in defaults.items() if k not in unknown},
            }
        )
    return scored


def _outside(
    ranges: dict, columns: dict[str, Any], i: int, unknown: list[str]
) -> list[dict[str, Any]]:
    """Given inputs of row `i` outside their training range (`columns`: each checked
    feature's values as an array, read once per call rather than once per row)."""
    warnings = []
    for feature, (low, high) in ranges.items():
        if feature in unknown or feature not in columns:
            continue
        value = float(columns[feature][i])
        if not low <= value <= high:
            warnings.append({"feature": feature, "value": value, "min": low, "max": high})
    return warnings


BEFORE_OPERATING_POINTS = "fixed:0.5 (before operating points)"


def decision(row: ModelVersion, probability: float) -> dict[str, Any]:
    """Whether the version would say yes at its own threshold, and which policy set it."""
    threshold = 0.5 if row.threshold is None else float(row.threshold)
    policy = (row.metrics or {}).get("threshold_policy") or BEFORE_OPERATING_POINTS
    return {
        "decision": bool(probability >= threshold),
        "threshold": threshold,
        "threshold_policy": policy,
    }


def decision_words(row: ModelVersion, probability: float) -> str:
    """'would get a pizza: yes, at v5's threshold 0.27 (policy f1)'."""
    d = decision(row, probability)
    return (
        f"would get a pizza: {'yes' if d['decision'] else 'no'}, at v{row.version}'s "
        f"threshold {d['threshold']:.2f} (policy {d['threshold_policy']})"
    )


def parse_request_time(text: str) -> float:
    """Unix seconds from an ISO 8601 date/time (UTC unless it says otherwise) or a number."""
    text = (text or "").strip()
    try:
        if UNIX_SECONDS.fullmatch(text):
            return float(text)
        return _iso_seconds(text)
    except (ValueError, OverflowError):
        raise BadInput(
            f"request time {text[:40]!r}: give an ISO date such as 2013-05-04T18:30 or Unix seconds"
        ) from None


def _iso_seconds(text: str) -> float:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def request_meta(when: float | None, fields: dict[str, Any]) -> dict[str, Any]:
    """Request-time fields for `make_request`: the time (both timestamp fields) and
    requester numbers, each a known request-time field."""
    meta: dict[str, Any] = {}
    for name, value in fields.items():
        if name not in REQUESTER_COUNTS:
            raise BadInput(
                f"unknown requester field {name[:60]!r}; choose from {', '.join(REQUESTER_COUNTS)}"
            )
        meta[name] = value
    if when is not None:
        meta["unix_timestamp_of_request"] = meta[TIMESTAMP] = when
    return meta


def word_weights(pipeline: Any) -> np.ndarray | None:
    """Per-feature log-odds weights of a linear classifier (LogReg or multinomial NB)
    right after the features; None for any other shape (a team recipe's, say)."""
    if len(getattr(pipeline, "steps", [])) != 2:
        return None
    classifier = pipeline.steps[-1][1]
    if hasattr(classifier, "coef_"):
        return np.asarray(classifier.coef_[0], dtype=float)
    if hasattr(classifier, "feature_log_prob_"):
        return np.asarray(classifier.feature_log_prob_[1] - classifier.feature_log_prob_[0])
    return None
