"""Operating points: the threshold at which a version turns probabilities into decisions.

A version's threshold is chosen at build time, on its training data only, by a declared
policy (`f1`, `balanced-accuracy`, `cost:FN=3,FP=1`, `recall>=0.6`, `precision>=0.5`,
`fixed:0.5`). The search itself is scikit-learn's `TunedThresholdClassifierCV`, run over
out-of-fold probabilities of the training part (`tune_threshold`), so the rows being scored
never influence the threshold they are scored at.

Compare can also put versions at a common point: equal false positive rate, equal share of
requests flagged, or one threshold for all (`common_thresholds`).

Parsing a policy imports nothing heavy (the CLI checks requests before any ML import).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from core.errors import BadInput

DEFAULT_POLICY = "f1"
LEGACY_SUFFIX = " (before operating points)"
INNER_FOLDS = 5  # folds of the training part whose out-of-fold probabilities set the threshold
POLICY_HELP = (
    "how the decision threshold is chosen on the training data: f1 (default), "
    "balanced-accuracy, cost:FN=3,FP=1, recall>=0.6, precision>=0.5 or fixed:0.5"
)
POLICY_EXAMPLES = ("f1", "balanced-accuracy", "cost:FN=3,FP=1", "recall>=0.6", "precision>=0.5")
_NUMBER = r"([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)"
_COST = re.compile(rf"^cost:\s*fn\s*=\s*{_NUMBER}\s*,\s*fp\s*=\s*{_NUMBER}$", re.IGNORECASE)
_FLOOR = re.compile(rf"^(recall|precision)\s*>=\s*{_NUMBER}$", re.IGNORECASE)
_FIXED = re.compile(rf"^fixed:\s*{_NUMBER}$", re.IGNORECASE)
SINGLE_CLASS = "single-class"


@dataclass(frozen=True)
class ThresholdPolicy:
    """A parsed policy: `kind` is f1, balanced-accuracy, cost, recall, precision or fixed."""

    kind: str
    value: float | None = None  # the floor of recall/precision, or the fixed threshold
    cost_fn: float | None = None
    cost_fp: float | None = None

    @property
    def label(self) -> str:
        """The canonical spelling, as recorded in a version and its fingerprint."""
        if self.kind == "cost":
            return f"cost:FN={self.cost_fn:g},FP={self.cost_fp:g}"
        if self.kind in ("recall", "precision"):
            return f"{self.kind}>={self.value:g}"
        if self.kind == "fixed":
            return f"fixed:{self.value:g}"
        return self.kind

    @property
    def tuned(self) -> bool:
        return self.kind != "fixed"

    def meaning(self) -> str:
        """One sentence a data scientist reads next to the threshold."""
        if self.kind == "cost":
            return (
                f"the threshold with the lowest cost on the training data, a missed pizza "
                f"costing {self.cost_fn:g} and a false promise {self.cost_fp:g}"
            )
        if self.kind == "recall":
            return (
                f"the most precise threshold that still finds {self.value:.0%} of the pizzas "
                "on the training data"
            )
        if self.kind == "precision":
            return (
                f"the threshold that finds the most pizzas while {self.value:.0%} of its "
                "predicted pizzas are right on the training data"
            )
        if self.kind == "fixed":
            return f"a fixed threshold of {self.value:g}, not tuned"
        metric = "F1" if self.kind == "f1" else "balanced accuracy"
        return f"the threshold with the best {metric} on the training data"


def _number(text: str, what: str, low: float, high: float) -> float:
    value = float(text)
    if not low <= value <= high:
        raise BadInput(f"threshold policy: {what} must be in [{low:g}, {high:g}], got {text}")
    return value


def parse_policy(text: Any) -> ThresholdPolicy:
    """A policy from its spelling (case and spaces forgiven); BadInput naming the choices."""
    if not isinstance(text, str) or not text.strip() or len(text) > 100:
        raise BadInput(f"threshold policy must be one of: {POLICY_HELP}")
    raw = text.strip()
    lowered = raw.lower().replace("_", "-")
    if lowered in ("f1", "balanced-accuracy"):
        return ThresholdPolicy(lowered)
    if match := _COST.match(raw):
        fn = _number(match.group(1), "the cost of a false negative", 0, 1e6)
        fp = _number(match.group(2), "the cost of a false positive", 0, 1e6)
        if fn == 0 and fp == 0:
            raise BadInput("threshold policy: at least one of the costs FN and FP must be > 0")
        return ThresholdPolicy("cost", cost_fn=fn, cost_fp=fp)
    if match := _FLOOR.match(raw):
        floor = _number(match.group(2), f"the {match.group(1).lower()} floor", 0.01, 1)
        return ThresholdPolicy(match.group(1).lower(), value=floor)
    if match := _FIXED.match(raw):
        return ThresholdPolicy(
            "fixed", value=_number(match.group(1), "the threshold", 1e-6, 1 - 1e-6)
        )
    raise BadInput(f"threshold policy {raw[:60]!r} is not known; use {POLICY_HELP}")


def policy_label(metrics: dict[str, Any] | None, threshold: float | None = None) -> str:
    """How a version's threshold was chosen, for display: versions from before operating
    points say so."""
    recorded = (metrics or {}).get("threshold_policy")
    if isinstance(recorded, str) and recorded:
        return recorded
    shown = 0.5 if threshold is None else threshold
    return f"fixed:{shown:g}{LEGACY_SUFFIX}"


# --- choosing a threshold on training data ------------------------------------------------


def _scorer(policy: ThresholdPolicy) -> Any:
    """The sklearn scorer that `TunedThresholdClassifierCV` maximises for this policy."""
    from sklearn.metrics import make_scorer

    if policy.kind == "f1":
        return "f1"
    if policy.kind == "balanced-accuracy":
        return "balanced_accuracy"
    if policy.kind == "cost":
        return make_scorer(_negative_cost, fn_cost=policy.cost_fn, fp_cost=policy.cost_fp)
    return make_scorer(_constrained, floor=policy.value, kind=policy.kind)


def _negative_cost(y_true: Any, y_pred: Any, fn_cost: float, fp_cost: float) -> float:
    """Minus the mean cost per request of the decisions (the gain sklearn maximises)."""
    from sklearn.metrics import confusion_matrix

    _, fp, fn, _ = confusion_matrix(y_true, y_pred, labels=[0, 1]).ravel()
    return -(fn_cost * fn + fp_cost * fp) / max(1, len(y_true))


def _constrained(y_true: Any, y_pred: Any, floor: float, kind: str) -> float:
    """recall>=x: precision where recall reaches x; precision>=x: recall where precision
    reaches x. Below the floor the score is (value - 1) < 0, so the search moves toward it."""
    from sklearn.metrics import precision_score, recall_score

    recall = recall_score(y_true, y_pred, zero_division=0)
    precision = precision_score(y_true, y_pred, zero_division=0)
    held, optimised = (recall, precision) if kind == "recall" else (precision, recall)
    return float(optimised) if held >= floor else float(held) - 1.0


def tune_threshold(labels: Any, probabilities: Any, policy: ThresholdPolicy) -> float:
    """The policy's threshold over out-of-fold probabilities of training requests, found by
    `TunedThresholdClassifierCV` (its search over 100 candidate thresholds)."""
    import numpy as np
    from sklearn.model_selection import TunedThresholdClassifierCV

    if not policy.tuned:
        return float(policy.value)
    y = np.asarray(labels, dtype=int)
    p = np.asarray(probabilities, dtype=float).reshape(-1, 1)
    if len(np.unique(y)) < 2:
        raise BadInput("cannot choose a threshold: the training part holds only one class")
    scores = _score_column().fit(p, y)
    tuner = TunedThresholdClassifierCV(scores, scoring=_scorer(policy), cv="prefit", refit=False)
    return round(float(tuner.fit(p, y).best_threshold_), 6)


def inner_folds(ids: Any, labels: Any, rows: Any, seed: int) -> list[tuple[Any, Any]]:
    """Stratified folds of the training rows `rows` (indices into ids/labels), independent
    of input order: (train, validation) index pairs into the same arrays."""
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    rows = np.asarray(rows)
    order = rows[np.argsort(np.asarray(ids, dtype=object)[rows], kind="stable")]
    y = np.asarray(labels, dtype=int)[order]
    smallest = int(min(y.sum(), len(y) - y.sum()))
    if smallest < 2:
        raise BadInput(
            "cannot choose a threshold: the training part needs at least 2 requests of each "
            "class (use --threshold-policy fixed:0.5)"
        )
    splitter = StratifiedKFold(min(INNER_FOLDS, smallest), shuffle=True, random_state=seed)
    return [
        (np.sort(order[train]), np.sort(order[valid]))
        for train, valid in splitter.split(np.zeros(len(y)), y)
    ]


@functools.cache
def _score_column_class() -> type:
    from sklearn.base import BaseEstimator, ClassifierMixin

    class ScoreColumn(ClassifierMixin, BaseEstimator):
        """A 'classifier' whose probability of success is its one input column: lets
        `TunedThresholdClassifierCV` search thresholds over precomputed probabilities."""

        def fit(self, X: Any, y: Any) -> ScoreColumn:
            import numpy as np

            self.classes_ = np.array([0, 1])
            return self

        def predict_proba(self, X: Any) -> Any:
            import numpy as np

            p = np.asarray(X, dtype=float)[:, 0]
            return np.column_stack([1 - p, p])

    return ScoreColumn


def _score_column() -> Any:
    return _score_column_class()()


# --- flags and undefined rates -----------------------------------------------------------


def flags_of(metrics: dict[str, Any] | None) -> list[str]:
    """Warnings about a version's decisions: `single-class` when every test request got the
    same decision (all pizza or none), so its precision, recall or rates say little."""
    matrix = (metrics or {}).get("confusion_matrix")
    if not isinstance(matrix, dict):
        return []
    flagged = matrix.get("tp", 0) + matrix.get("fp", 0)
    passed = matrix.get("tn", 0) + matrix.get("fn", 0)
    return [SINGLE_CLASS] if flagged == 0 or passed == 0 else []


def flag_warning(version: int, metrics: dict[str, Any] | None) -> str | None:
    """The sentence shown beside a flagged version, or None."""
    if SINGLE_CLASS not in flags_of(metrics):
        return None
    matrix = metrics["confusion_matrix"]
    everyone = "a pizza" if matrix.get("tn", 0) + matrix.get("fn", 0) == 0 else "no pizza"
    threshold = metrics.get("threshold")
    at = f" at its threshold {threshold:.3g}" if isinstance(threshold, int | float) else ""
    return (
        f"v{version} predicts {everyone} for every test request{at}: its precision, recall "
        "and F1 say nothing about it (flag single-class)."
    )


# --- common operating points for Compare -------------------------------------------------

AT_CHOICES = ("own", "fpr", "flagged", "threshold")


@dataclass(frozen=True)
class CommonPoint:
    """Where Compare puts every version: its own threshold, equal FPR, equal share flagged,
    or one threshold for all."""

    mode: str = "own"
    value: float | None = None

    def label(self) -> str:
        if self.mode == "fpr":
            return f"equal false positive rate {self.value:g}"
        if self.mode == "flagged":
            return f"{self.value:.0%} of requests flagged by each version"
        if self.mode == "threshold":
            return f"one threshold {self.value:g} for every version"
        return "each version's own threshold"


def parse_at(text: str | None) -> CommonPoint:
    """`own` (or None), `fpr=0.2`, `flagged=0.3` or `threshold=0.4`; BadInput otherwise."""
    if text is None or str(text).strip().lower() in ("", "own"):
        return CommonPoint()
    mode, _, raw = str(text).strip().lower().partition("=")
    if mode not in AT_CHOICES[1:] or not raw:
        raise BadInput(
            f"--at {str(text)[:40]!r}: use own, fpr=X, flagged=X or threshold=X (X in (0, 1))"
        )
    try:
        value = float(raw)
    except ValueError:
        raise BadInput(f"--at {mode}: {raw[:20]!r} is not a number") from None
    if not 0 < value < 1:
        raise BadInput(f"--at {mode}: {value:g} must be between 0 and 1 (exclusive)")
    return CommonPoint(mode, value)


def threshold_for(point: CommonPoint, labels: Any, probabilities: Any) -> float:
    """The threshold that puts one version's predictions at `point` (not for `own`).

    Equal FPR: the lowest threshold whose false positive rate does not exceed the target
    (sklearn's ROC curve). Equal share flagged: the probability quantile that flags that
    share."""
    import numpy as np
    from sklearn.metrics import roc_curve

    p = np.asarray(probabilities, dtype=float)
    if point.mode == "threshold":
        return float(point.value)
    if point.mode == "flagged":
        return float(np.quantile(p, 1 - point.value, method="higher"))
    y = np.asarray(labels, dtype=int)
    if len(np.unique(y)) < 2:
        raise BadInput("equal false positive rate needs both classes among the test requests")
    fpr, _, thresholds = roc_curve(y, p, drop_intermediate=False)
    allowed = np.flatnonzero(fpr <= point.value + 1e-12)
    return float(min(1.0, thresholds[allowed[-1]]))


def row_thresholds(row: Any, details: Any) -> Any:
    """The threshold each stored test request was decided at, aligned with
    `details.test_ids`: the version's threshold, or for a cross-validated version the
    threshold of the fold that scored the request (averaged over repeats)."""
    import numpy as np

    from core.evaluate import make_folds

    n = len(details.test_ids)
    evaluation = (row.metrics or {}).get("evaluation")
    chosen = evaluation.get("fold_thresholds") if isinstance(evaluation, dict) else None
    if not chosen:
        return np.full(n, float(row.threshold))
    plan = make_folds(
        list(details.test_ids),
        [bool(v) for v in details.test_labels],
        int(evaluation["seed"]),
        int(evaluation["folds"]),
        int(evaluation["repeats"]),
        "",
    )
    cut = np.zeros((plan.repeats, n))
    for repeat, tests in enumerate(plan.test_indices):
        for fold, test in enumerate(tests):
            cut[repeat, test] = chosen[repeat][fold]
    return cut.mean(axis=0)


def threshold_words(row: Any) -> str:
    """`0.27 (policy f1)`, and for a cross-validated version how its folds were decided."""
    evaluation = (row.metrics or {}).get("evaluation")
    chosen = evaluation.get("fold_thresholds") if isinstance(evaluation, dict) else None
    words = f"{row.threshold:.3g} (policy {policy_label(row.metrics, row.threshold)})"
    if chosen:
        flat = [t for repeat in chosen for t in repeat]
        words += (
            f"; its out-of-fold figures use each fold's own threshold "
            f"({min(flat):.3g} to {max(flat):.3g}, chosen inside the fold's training part)"
        )
    return words
