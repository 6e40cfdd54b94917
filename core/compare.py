"""Side-by-side comparison of 2-4 versions: metrics, deltas, paired statistics, provenance."""

from __future__ import annotations

from typing import Any

import numpy as np

from core.errors import BadInput
from core.evaluate import paired_comparison
from core.registry import Registry
from core.schema import READY, ModelVersion

METRICS = (
    "roc_auc",
    "average_precision",
    "f1",
    "precision",
    "recall",
    "accuracy",
    "fpr",
    "fnr",
    "brier",
    "log_loss",
)
LOWER_IS_BETTER = {"fpr", "fnr", "brier", "log_loss"}
CONFUSION = ("tn", "fp", "fn", "tp")


def _get(mapping: dict[str, Any] | None, dotted: str) -> Any:
    value: Any = mapping or {}
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


PROVENANCE_FIELDS = {
    "recipe": lambda v: v.recipe,
    "params": lambda v: v.params,
    "threshold": lambda v: v.threshold,
    "builder": lambda v: v.builder,
    "data_sha256": lambda v: v.data_sha256,
    "data_rows": lambda v: _get(v.provenance, "data_rows"),
    "split_hash": lambda v: v.split_hash,
    "git_commit": lambda v: _get(v.provenance, "git.commit"),
    "git_dirty": lambda v: _get(v.provenance, "git.dirty"),
    "code_fingerprint": lambda v: _get(v.provenance, "code_fingerprint"),
    "image_id": lambda v: _get(v.provenance, "docker.image_id"),
    "python": lambda v: _get(v.provenance, "python"),
    "packages": lambda v: _get(v.provenance, "packages"),
}


def metrics_table(rows: list[ModelVersion]) -> list[dict[str, Any]]:
    """One row per metric: each version's value and its delta against the first version."""
    table = []
    for name in METRICS + CONFUSION:
        key = f"confusion_matrix.{name}" if name in CONFUSION else name
        values = [_get(v.metrics, key) for v in rows]
        base = values[0]
        deltas = [None if base is None or value is None else value - base for value in values]
        table.append(
            {
                "metric": name,
                "values": values,
                "deltas": deltas,
                "lower_is_better": name in LOWER_IS_BETTER,
            }
        )
    return table


def provenance_diff(rows: list[ModelVersion]) -> list[dict[str, Any]]:
    """Each provenance field's values per version and whether they differ."""
    out = []
    for name, getter in PROVENANCE_FIELDS.items():
        values = [getter(v) for v in rows]
        out.append(
            {
                "field": name,
                "values": values,
                "differs": any(value != values[0] for value in values[1:]),
            }
        )
    return out


def _aligned(registry: Registry, first: ModelVersion, other: ModelVersion):
    a, b = registry.details(first.id), registry.details(other.id)
    index_b = {rid: i for i, rid in enumerate(b.test_ids)}
    order = [index_b[rid] for rid in a.test_ids]
    return (
        np.asarray(a.test_labels),
        np.asarray(a.test_probabilities),
        np.asarray(b.test_probabilities)[order],
    )


def compare(
    rows: list[ModelVersion], registry: Registry, n_resamples: int = 2000
) -> dict[str, Any]:
    """Everything the CLI and the Compare page show for these versions."""
    if not 2 <= len(rows) <= 4:
        raise BadInput("compare takes 2 to 4 versions")
    if len({v.id for v in rows}) != len(rows):
        raise BadInput("compare needs distinct versions")
    for row in rows:
        if row.status != READY:
            raise BadInput(f"version {row.version} is {row.status}; only ready versions compare")
    hashes = {v.split_hash for v in rows}
    comparable = len(hashes) == 1
    paired = []
    if comparable:
        for other in rows[1:]:
            y, p_first, p_other = _aligned(registry, rows[0], other)
            stats = paired_comparison(
                y, p_first, p_other, rows[0].threshold, other.threshold, n_resamples=n_resamples
            )
            paired.append({"first": rows[0].version, "second": other.version, **stats})
    return {
        "versions": [v.version for v in rows],
        "comparable": comparable,
        "reason": None
        if comparable
        else (
            "not comparable: different test sets (split hashes "
            + ", ".join(f"v{v.version} {str(v.split_hash)[:12]}" for v in rows)
            + ")"
        ),
        "metrics": metrics_table(rows),
        "paired": paired,
        "provenance_diff": provenance_diff(rows),
    }
