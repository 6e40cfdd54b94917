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
    REQUEST_TIME_NUMERIC,
    REQUESTER_COUNTS,
    TEXT,
    TIMESTAMP,
    TITLE,
    validate_request,
)
from core.errors import AltruismError, BadInput
from core.features import CAPTIONS, request_defaults, to_frame
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
    """Each request's probability, the inputs outside the version's training range
    (`warnings`) and the request-time fields filled in by default (`defaults`)."""
    frame = to_frame(records)
    probabilities = pipeline.predict_proba(frame)[:, 1]
    warnings = _range_warnings(pipeline, frame, len(records))
    defaults = _defaults_of(pipeline)
    return [
        {
            "request_id": record.get(REQUEST_ID, f"request-{i}"),
            "probability": float(probabilities[i]),
            "warnings": warnings[i],
            "defaults": defaults(record),
        }
        for i, record in enumerate(records)
    ]


def _range_warnings(pipeline: Any, frame: Any, n: int) -> list[list[dict[str, Any]]]:
    """Per request, each input outside the training range (one column read per feature)."""
    ranges = getattr(pipeline, "input_ranges_", None) or {}
    out: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    for feature, (low, high) in ranges.items():
        if feature not in frame:
            continue
        values = frame[feature].to_numpy(dtype=float)
        for i in np.flatnonzero(~((values >= low) & (values <= high))):
            value = float(values[i])
            out[i].append({"feature": feature, "value": value, "min": low, "max": high})
    return out


def _defaults_of(pipeline: Any) -> Callable[[dict[str, Any]], dict[str, str]]:
    """`request_defaults` for one pipeline, its read columns worked out once."""
    cached: dict[tuple[str, ...], dict[str, str]] = {}

    def defaults(record: dict[str, Any]) -> dict[str, str]:
        key = tuple(k for k in REQUEST_TIME_NUMERIC if k in record)
        if key not in cached:
            cached[key] = request_defaults(record, pipeline)
        return dict(cached[key])

    return defaults


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


def explain(pipeline: Any, record: dict[str, Any], top: int = 8) -> list[dict[str, Any]]:
    """The words that pushed this request's score up or down most, strongest first."""
    weights = word_weights(pipeline)
    features = pipeline.steps[0][1]
    if weights is None or "text" not in getattr(features, "output_indices_", {}):
        return []
    block = features.output_indices_["text"]  # the text columns of the feature matrix
    words = features.named_transformers_["text"].get_feature_names_out()
    row = features.transform(to_frame([record]))
    row = row.tocsr()[:, block] if hasattr(row, "tocsr") else np.asarray(row)[:, block]
    values = row.toarray()[0] if hasattr(row, "toarray") else row[0]
    contributions = values * weights[block]
    order = np.argsort(-np.abs(contributions))[:top]
    return [
        {"word": str(words[i]), "weight": float(contributions[i])}
        for i in order
        if contributions[i] != 0
    ]


def _base_log_odds(classifier: Any) -> float | None:
    if hasattr(classifier, "intercept_") and hasattr(classifier, "coef_"):
        return float(np.ravel(classifier.intercept_)[0])
    if hasattr(classifier, "class_log_prior_"):
        return float(classifier.class_log_prior_[1] - classifier.class_log_prior_[0])
    return None


def _group_of(block: str, feature: str) -> str:
    """Readable group of one output feature of the ColumnTransformer."""
    if block == "text":
        return "words (title and text)"
    if block == "time":
        return "request time (hour, weekday, day of month)"
    column = feature.split("__", 1)[-1]
    return CAPTIONS.get(column, column)


def explain_groups(pipeline: Any, record: dict[str, Any]) -> dict[str, Any]:
    """Log-odds contribution of every feature group (words, each requester number, time)
    and the base value, so that base + contributions = the score's log-odds; for a model
    that is not linear in its features, `method` says none is shown."""
    weights = word_weights(pipeline)
    if weights is None:
        return {"method": "none: the model is not linear in its features", "groups": []}
    classifier, features = pipeline.steps[-1][1], pipeline.steps[0][1]
    base = _base_log_odds(classifier)
    if base is None or not hasattr(features, "output_indices_"):
        return {"method": "none: the model is not linear in its features", "groups": []}
    row = features.transform(to_frame([record]))
    values = np.asarray(row.toarray() if hasattr(row, "toarray") else row)[0]
    names = features.get_feature_names_out()
    totals: dict[str, float] = {}
    for block, indices in features.output_indices_.items():
        for i in range(indices.start, indices.stop):
            group = _group_of(block, str(names[i]))
            totals[group] = totals.get(group, 0.0) + float(values[i] * weights[i])
    log_odds = base + sum(totals.values())
    return {
        "method": "exact: the model is linear in its features (log-odds)",
        "base": base,
        "groups": [{"group": g, "log_odds": v} for g, v in totals.items()],
        "log_odds": log_odds,
        "probability": float(1 / (1 + np.exp(-log_odds))),
    }
