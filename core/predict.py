"""Load a registered model safely and score pizza requests with it."""

from __future__ import annotations

from typing import Any

import numpy as np

from core.artifacts import ArtifactStore, open_store
from core.dataset import MAX_TEXT_CHARS, MAX_TITLE_CHARS, REQUEST_ID, TEXT, TITLE, validate_request
from core.errors import AltruismError, BadInput
from core.features import to_frame
from core.provenance import package_versions
from core.schema import READY, ModelVersion

# Libraries whose version change can change what an unpickled pipeline predicts.
PREDICTION_LIBRARIES = ("scikit-learn", "numpy", "scipy")


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
    return (store or open_store()).load(row.artifact_sha256)


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


def word_weights(pipeline: Any) -> np.ndarray | None:
    """Per-feature log-odds weights of a linear classifier (LogReg or multinomial NB)."""
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
