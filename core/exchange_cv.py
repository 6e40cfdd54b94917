"""Import checks for a cross-validated version: its `evaluation` record, validated strictly,
its fold hash, and the decision threshold of each stored request (the threshold of the fold
that scored it), so its pooled metrics can be recomputed from the archive's predictions."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from core.exchange import (
    OPTIONAL_UNIT_METRICS,
    UNIT_METRICS,
    _digest,
    _fail,
    _number,
)

REQUIRED = {"kind", "folds", "repeats", "seed", "hash", "fold_metrics"}
OPTIONAL = {"fold_thresholds", "seconds"}  # fold thresholds: since operating points


def _spread(value: Any, name: str) -> dict[str, float]:
    high = 1e3 if name == "log_loss" else 1.0
    if not isinstance(value, dict) or set(value) != {"mean", "sd"}:
        raise _fail(f"fold metric {name}", "must hold mean and sd")
    return {k: _number(value[k], f"fold metric {name} {k}", 0.0, high) for k in ("mean", "sd")}


def _fold_metrics(value: Any) -> dict[str, dict[str, float]]:
    names = set(UNIT_METRICS) | set(OPTIONAL_UNIT_METRICS) | {"log_loss"}
    if not isinstance(value, dict) or not set(value) <= names:
        raise _fail("fold metrics", "hold unknown entries")
    return {name: _spread(spread, name) for name, spread in value.items()}


def _fold_thresholds(value: Any, folds: int, repeats: int) -> list[list[float]]:
    rows = value if isinstance(value, list) else None
    if rows is None or len(rows) != repeats:
        raise _fail("fold thresholds", f"must be {repeats} list(s) of {folds} thresholds")
    out = []
    for row in rows:
        if not isinstance(row, list) or len(row) != folds:
            raise _fail("fold thresholds", f"must be {repeats} list(s) of {folds} thresholds")
        out.append([_number(t, "fold threshold", 0.0, 1.0) for t in row])
    return out


def validate_evaluation(value: Any) -> dict[str, Any]:
    """A cross-validated version's `metrics.evaluation`, rebuilt from checked values."""
    from core.builds import MAX_FOLDS, MAX_REPEATS

    if not isinstance(value, dict) or not REQUIRED <= set(value) <= REQUIRED | OPTIONAL:
        raise _fail("evaluation", "is not shaped like a cross-validation record")
    if value["kind"] != "cv":
        raise _fail("evaluation", "is of an unknown kind")
    folds = _number(value["folds"], "number of folds", 2, MAX_FOLDS, integer=True)
    repeats = _number(value["repeats"], "number of repeats", 1, MAX_REPEATS, integer=True)
    out: dict[str, Any] = {
        "kind": "cv",
        "folds": folds,
        "repeats": repeats,
        "seed": _number(value["seed"], "cross-validation seed", 0, 2**32 - 1, integer=True),
        "hash": _digest(value["hash"], "fold hash"),
        "fold_metrics": _fold_metrics(value["fold_metrics"]),
    }
    if "fold_thresholds" in value:
        out["fold_thresholds"] = _fold_thresholds(value["fold_thresholds"], folds, repeats)
    if "seconds" in value:
        out["seconds"] = _number(value["seconds"], "cross-validation seconds", 0.0, 1e7)
    return out


def row_cuts(metrics: dict[str, Any], details: dict[str, Any]) -> Any:
    """The threshold each stored request was decided at (per fold for a CV version)."""
    from core.errors import BadInput
    from core.operating_point import row_thresholds

    row = SimpleNamespace(metrics=metrics, threshold=metrics["threshold"])
    stored = SimpleNamespace(test_ids=details["test_ids"], test_labels=details["test_labels"])
    try:
        return row_thresholds(row, stored)
    except BadInput as exc:
        raise _fail("evaluation", f"does not fit its predictions ({exc})") from None


def check_fold_hash(evaluation: dict[str, Any], split: dict[str, Any], data_sha256: str) -> str:
    """The fold hash the evaluation, the provenance and the dataset digest all give."""
    from core.evaluate import folds_hash

    cv = split.get("cv")
    if cv != {"folds": evaluation["folds"], "repeats": evaluation["repeats"]}:
        raise _fail("split", "does not name the folds and repeats of the evaluation")
    if split["seed"] != evaluation["seed"]:
        raise _fail("split seed", "differs from the cross-validation seed")
    seed, folds, repeats = evaluation["seed"], evaluation["folds"], evaluation["repeats"]
    expected = folds_hash(seed, folds, repeats, data_sha256)
    if evaluation["hash"] != expected or split["hash"] != expected:
        raise _fail("fold hash", "does not follow from the seed, folds, repeats and dataset")
    return expected
