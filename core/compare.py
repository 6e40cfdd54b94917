"""Side-by-side comparison of 2-4 versions: metrics, deltas, paired statistics, provenance."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.errors import BadInput
from core.evaluate import classification_metrics, paired_comparisons
from core.operating_point import (
    CommonPoint,
    flag_warning,
    flags_of,
    policy_label,
    row_thresholds,
    threshold_for,
    threshold_words,
)
from core.recipe_files import source_diffs
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
# Readable name and a one-line meaning of every metric the comparison shows.
METRIC_HELP = {
    "roc_auc": ("ROC AUC", "chance a random successful request scores above a random failed one"),
    "average_precision": ("Average precision", "precision averaged over every recall level"),
    "f1": ("F1", "harmonic mean of precision and recall at the threshold"),
    "precision": ("Precision", "share of predicted pizzas that really got one"),
    "recall": ("Recall", "share of real pizzas the model predicted"),
    "accuracy": ("Accuracy", "share of requests classified correctly at the threshold"),
    "fpr": ("False positive rate", "share of failed requests predicted to get a pizza"),
    "fnr": ("False negative rate", "share of successful requests predicted to fail"),
    "brier": ("Brier score", "mean squared error of the probabilities (lower is better)"),
    "log_loss": ("Log loss", "penalises confident wrong probabilities (lower is better)"),
    "tn": ("True negatives", "failed requests predicted to fail"),
    "fp": ("False positives", "failed requests predicted to get a pizza"),
    "fn": ("False negatives", "successful requests predicted to fail"),
    "tp": ("True positives", "successful requests predicted to get a pizza"),
}
LOWER_IS_BETTER = {"fpr", "fnr", "brier", "log_loss"}
CONFUSION = ("tn", "fp", "fn", "tp")


def _get(mapping: dict[str, Any] | None, dotted: str) -> Any:
    value: Any = mapping or {}
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


PROVENANCE_FIELDS = {
    "recipe": lambda v: v.recipe,
    "recipe_sha256": lambda v: _get(v.provenance, "recipe_file.sha256"),
    "params": lambda v: v.params,
    "threshold": lambda v: v.threshold,
    "threshold_policy": lambda v: policy_label(v.metrics, v.threshold),
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
    "refit_of": lambda v: _get(v.provenance, "refit_of.version"),
}


def refit_notes(rows: list[ModelVersion]) -> list[str]:
    """One line per refit version: whose evaluation it carries."""
    notes = []
    for row in rows:
        parent = _get(row.provenance, "refit_of.version")
        if parent is not None:
            notes.append(
                f"v{row.version} is v{parent} refitted on all of its data: its metrics and test "
                f"predictions are v{parent}'s, measured before the refit."
            )
    return notes


def _is_refit_pair(first: ModelVersion, other: ModelVersion) -> bool:
    parents = (_get(first.provenance, "refit_of.id"), _get(other.provenance, "refit_of.id"))
    return parents[0] == other.id or parents[1] == first.id


def evaluation_of(row: ModelVersion) -> dict[str, Any]:
    """How a version was scored: cross-validation (folds, repeats) or one held-out split."""
    metrics = row.metrics or {}
    n = metrics.get("n")
    count = f"{n:,}" if isinstance(n, int) else "?"
    cv = metrics.get("evaluation")
    if isinstance(cv, dict) and cv.get("kind") == "cv":
        label = f"{cv['folds']}-fold cross-validation" + (
            f" × {cv['repeats']} repeats" if cv.get("repeats", 1) > 1 else ""
        )
        return {
            "kind": "cv",
            "folds": cv["folds"],
            "repeats": cv.get("repeats", 1),
            "n": n,
            "label": f"{label}, out-of-fold predictions on all {count} requests",
        }
    size = row.split_test_size
    share = f"{size:.0%} " if isinstance(size, int | float) else ""
    label = f"held-out {share}split, {count} requests"
    return {"kind": "split", "test_size": size, "n": n, "label": label}


def fold_spread_of(row: ModelVersion, metric: str = "roc_auc") -> tuple[float, float] | None:
    """(mean, sd) of a metric over a cross-validated version's folds, else None."""
    cv = (row.metrics or {}).get("evaluation")
    spread = cv.get("fold_metrics", {}).get(metric) if isinstance(cv, dict) else None
    return (spread["mean"], spread["sd"]) if spread else None


def metrics_table(metrics: list[dict[str, Any] | None]) -> list[dict[str, Any]]:
    """One row per metric: each version's value and its delta against the first version
    (None where either is undefined)."""
    table = []
    for name in METRICS + CONFUSION:
        key = f"confusion_matrix.{name}" if name in CONFUSION else name
        values = [_get(m, key) for m in metrics]
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


def _aligned(first: VersionPoint, other: VersionPoint):
    """Labels, both versions' probabilities and decision thresholds on the first's order."""
    a, b = first.details, other.details
    index_b = {rid: i for i, rid in enumerate(b.test_ids)}
    order = [index_b[rid] for rid in a.test_ids]
    return (
        np.asarray(a.test_labels),
        np.asarray(a.test_probabilities),
        np.asarray(b.test_probabilities)[order],
        first.cut,
        other.cut[order],
    )


@dataclass
class VersionPoint:
    """One version at the compared operating point: its stored predictions, the threshold
    each was decided at, and the threshold-dependent metrics there."""

    row: ModelVersion
    details: Any
    cut: np.ndarray  # per stored prediction
    metrics: dict[str, Any]
    threshold_label: str

    def describe(self) -> dict[str, Any]:
        cut = np.unique(self.cut)
        return {
            "version": self.row.version,
            "threshold": float(cut[0]) if len(cut) == 1 else None,
            "threshold_label": self.threshold_label,
            "policy": policy_label(self.row.metrics, self.row.threshold),
            "flags": flags_of(self.metrics),
        }


def _version_point(row: ModelVersion, registry: Registry, point: CommonPoint) -> VersionPoint:
    details = registry.details(row.id)
    if details is None or not details.test_ids:
        raise BadInput(f"version {row.version} has no stored test predictions to compare")
    if point.mode == "own":
        cut = row_thresholds(row, details)
        return VersionPoint(row, details, cut, dict(row.metrics or {}), threshold_words(row))
    labels, probabilities = details.test_labels, details.test_probabilities
    threshold = threshold_for(point, labels, probabilities)
    metrics = classification_metrics(labels, probabilities, threshold)
    own = f"its own {row.threshold:.3g}"
    return VersionPoint(
        row, details, np.full(len(labels), threshold), metrics, f"{threshold:.3g} (not {own})"
    )


def _warnings(points: list[VersionPoint]) -> list[str]:
    return [
        warning
        for p in points
        if (
            warning := flag_warning(
                p.row.version, p.metrics | {"threshold": p.describe()["threshold"]}
            )
        )
    ]


def _pairs(
    points: list[VersionPoint], can_pair: Callable[[ModelVersion, ModelVersion], bool]
) -> list[tuple[VersionPoint, VersionPoint]]:
    """Each version against the baseline; else against the first earlier version sharing
    its test set (none: it is not paired)."""
    pairs = []
    for j, other in enumerate(points[1:], start=1):
        first = next((a for a in points[:j] if can_pair(a.row, other.row)), None)
        if first is not None:
            pairs.append((first, other))
    return pairs


def _paired(
    pairs: list[tuple[VersionPoint, VersionPoint]],
    point: CommonPoint,
    n_resamples: int,
    versions: int,
) -> list[dict[str, Any]]:
    """Each pair's paired bootstrap, McNemar's test and verdict, in the pairs' order. Pairs
    with the same first version are bootstrapped together (`paired_comparisons`: the same
    numbers as one by one, the first's AUC computed once per resample)."""
    done: dict[tuple[int, int], dict[str, Any]] = {}
    for first_id in dict.fromkeys(first.row.id for first, _ in pairs):
        group = [(first, other) for first, other in pairs if first.row.id == first_id]
        aligned = [_aligned(first, other) for first, other in group]
        y, p_first, _, cut_first, _ = aligned[0]
        outcomes = paired_comparisons(
            y,
            p_first,
            [(p_other, cut_other) for _, _, p_other, _, cut_other in aligned],
            cut_first,
            n_resamples=n_resamples,
            comparisons=versions - 1,
        )
        for (first, other), outcome in zip(group, outcomes, strict=True):
            pair = {"first": first.row.version, "second": other.row.version}
            pair.update(outcome, n=len(y), positives=int(np.sum(y)))
            pair["verdict"] = pair_verdict(pair, _at_words(point, first, other))
            done[(first.row.id, other.row.id)] = pair
    return [done[(first.row.id, other.row.id)] for first, other in pairs]


def compare(
    rows: list[ModelVersion],
    registry: Registry,
    n_resamples: int = 2000,
    at: CommonPoint | None = None,
    statistics: bool = True,
) -> dict[str, Any]:
    """Everything the CLI and the Compare page show for these versions. Without
    `statistics`, `paired` names the pairs only (`first`, `second`): the bootstrap, the
    slow part, is left out (the page draws the rest while it runs)."""
    if not 2 <= len(rows) <= 4:
        raise BadInput("compare takes 2 to 4 versions")
    if len({v.id for v in rows}) != len(rows):
        raise BadInput("compare needs distinct versions")
    for row in rows:
        if row.status != READY:
            raise BadInput(f"version {row.version} is {row.status}; only ready versions compare")

    def can_pair(a: ModelVersion, b: ModelVersion) -> bool:
        return a.split_hash == b.split_hash and not _is_refit_pair(a, b)

    not_comparable = [
        {"first": a.version, "second": b.version}
        for i, a in enumerate(rows)
        for b in rows[i + 1 :]
        if not can_pair(a, b)
    ]
    point = at or CommonPoint()
    points = [_version_point(row, registry, point) for row in rows]
    pairs = _pairs(points, can_pair)
    paired = (
        _paired(pairs, point, n_resamples, len(rows))
        if statistics
        else [{"first": first.row.version, "second": other.row.version} for first, other in pairs]
    )
    comparable = not not_comparable
    return {
        "versions": [v.version for v in rows],
        "comparable": comparable,
        "reason": None if comparable else _reason(rows),
        "evaluations": [evaluation_of(v) | {"version": v.version} for v in rows],
        "operating_point": {
            "mode": point.mode,
            "value": point.value,
            "label": point.label(),
            "versions": [p.describe() for p in points],
        },
        "warnings": _warnings(points),
        "confusion_matrices": [p.metrics.get("confusion_matrix") for p in points],
        "metrics": metrics_table([p.metrics for p in points]),
        "paired": paired,
        "not_comparable": not_comparable,
        "notes": refit_notes(rows),
        "provenance_diff": provenance_diff(rows),
        "recipe_diffs": source_diffs(rows),
    }


def _reason(rows: list[ModelVersion]) -> str:
    kinds = {evaluation_of(v)["kind"] for v in rows}
    if len(kinds) > 1:
        return (
            "they were evaluated differently ("
            + "; ".join(f"v{v.version}: {evaluation_of(v)['label']}" for v in rows)
            + "), so their predictions do not cover the same requests"
        )
    if kinds == {"cv"} and len({v.split_hash for v in rows}) > 1:
        return (
            "different cross-validation folds (fold hashes "
            + ", ".join(f"v{v.version} {str(v.split_hash)[:12]}" for v in rows)
            + "): the same data, seed, folds and repeats give the same folds"
        )
    if len({v.split_hash for v in rows}) > 1:
        return (
            "different test sets (split hashes "
            + ", ".join(f"v{v.version} {str(v.split_hash)[:12]}" for v in rows)
            + ")"
        )
    return "a refit carries its parent's evaluation, so the two cannot be told apart"


def _at_words(point: CommonPoint, first: VersionPoint, other: VersionPoint) -> str:
    """Where the pair's decisions were taken, e.g. `equal false positive rate 0.2
    (thresholds 0.31 and 0.28)`."""

    def shown(p: VersionPoint) -> str:
        cut = np.unique(p.cut)
        return f"{cut[0]:.3g}" if len(cut) == 1 else "per-fold thresholds"

    a, b = shown(first), shown(other)
    return f"{point.label()} ({f'threshold {a}' if a == b else f'thresholds {a} and {b}'})"


def signed(value: float, digits: int = 3) -> str:
    """+0.169 or −0.038: one sign convention (a true minus sign) wherever a difference shows."""
    return f"{value:+.{digits}f}".replace("-", "−")


def pair_verdict(pair: dict[str, Any], at: str) -> str:
    """The pair's result in one sentence form: the winner (or none) first, then the
    difference always as later − earlier version with its interval, then the decisions."""
    a, b = f"v{pair['first']}", f"v{pair['second']}"
    diff = pair["auc_difference"]  # second - first
    low, high = pair.get("auc_difference_ci") or pair["auc_difference_ci95"]
    level = pair.get("confidence_level", 0.95)
    adjusted = " Bonferroni-adjusted" if level > 0.95 + 1e-9 else ""
    words = f"{100 * level:.4g}%{adjusted} CI {signed(low)} to {signed(high)}"
    difference = f"ROC AUC {b} − {a} = {signed(diff)} ({words}"
    if low > 0:
        head = f"{b} is better than {a}: {difference})"
    elif high < 0:
        head = f"{a} is better than {b}: {difference})"
    else:
        head = f"No clear difference between {a} and {b}: {difference} includes zero)"
    mcnemar = pair["mcnemar"]
    disagree = mcnemar["only_first_correct"] + mcnemar["only_second_correct"]
    return (
        f"{head}; at {at} they disagree on {disagree} of {pair['n']} requests, "
        f"McNemar p = {mcnemar['p_value']:.2g}."
    )
