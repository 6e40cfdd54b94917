"""Held-out split, metrics at a threshold, curves, and paired statistics between versions."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve
from sklearn.model_selection import train_test_split

from core.errors import BadInput

CURVE_POINTS = 200
ROUND_DIGITS = 6


@dataclass(frozen=True)
class Split:
    """Indices of a stratified train/test split and the hash that identifies its test set."""

    train_index: np.ndarray
    test_index: np.ndarray
    seed: int
    test_size: float
    hash: str


def split_hash(test_ids: list[str]) -> str:
    """sha256 over the sorted test request ids: equal hashes mean the same test set."""
    return hashlib.sha256("\n".join(sorted(test_ids)).encode("utf-8")).hexdigest()


def make_split(ids: list[str], labels: list[bool], seed: int, test_size: float) -> Split:
    """Stratified split, independent of input order (rows are ordered by id first)."""
    if not 0.05 <= test_size <= 0.5:
        raise BadInput(f"test size {test_size} is outside [0.05, 0.5]")
    order = np.argsort(np.asarray(ids, dtype=object), kind="stable")
    y = np.asarray(labels, dtype=bool)[order]
    try:
        train, test = train_test_split(order, test_size=test_size, random_state=seed, stratify=y)
    except ValueError as exc:
        raise BadInput(f"cannot make a stratified split: {exc}") from exc
    train, test = np.sort(train), np.sort(test)
    return Split(train, test, seed, test_size, split_hash([ids[i] for i in test]))


@dataclass(frozen=True)
class Folds:
    """Stratified K-fold test indices, repeated R times, and the hash that identifies them."""

    test_indices: list[list[np.ndarray]]  # [repeat][fold] -> row indices, sorted
    seed: int
    folds: int
    repeats: int
    hash: str

    def describe(self) -> dict[str, Any]:
        return {"folds": self.folds, "repeats": self.repeats, "seed": self.seed}


def folds_hash(seed: int, folds: int, repeats: int, data_sha256: str) -> str:
    """sha256 of what fixes the folds: equal hashes mean the same folds of the same data."""
    text = f"cv|seed={seed}|folds={folds}|repeats={repeats}|data={data_sha256}"
    return hashlib.sha256(text.encode()).hexdigest()


def make_folds(
    ids: list[str], labels: list[bool], seed: int, folds: int, repeats: int, data_sha256: str
) -> Folds:
    """Repeated stratified K-fold, independent of input order (rows ordered by id first)."""
    from sklearn.model_selection import RepeatedStratifiedKFold

    if folds < 2 or repeats < 1:
        raise BadInput(f"cannot cross-validate with {folds} folds and {repeats} repeats")
    order = np.argsort(np.asarray(ids, dtype=object), kind="stable")
    y = np.asarray(labels, dtype=bool)[order]
    if min(int(y.sum()), int((~y).sum())) < folds:
        raise BadInput(
            f"cannot make {folds} stratified folds: each class needs at least {folds} requests"
        )
    splitter = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    tests = [np.sort(order[test]) for _, test in splitter.split(np.zeros(len(y)), y)]
    by_repeat = [tests[r * folds : (r + 1) * folds] for r in range(repeats)]
    return Folds(by_repeat, seed, folds, repeats, folds_hash(seed, folds, repeats, data_sha256))


def fold_spread(per_fold: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean and sample sd over folds of every numeric top-level metric."""
    out = {}
    for key in per_fold[0]:
        values = [m[key] for m in per_fold if isinstance(m.get(key), int | float)]
        if key in ("threshold", "n", "positives") or len(values) != len(per_fold):
            continue
        array = np.asarray(values, dtype=float)
        sd = float(array.std(ddof=1)) if len(array) > 1 else 0.0
        out[key] = {"mean": round(float(array.mean()), ROUND_DIGITS), "sd": round(sd, ROUND_DIGITS)}
    return out


def _downsample(*arrays: np.ndarray, points: int = CURVE_POINTS) -> list[list[float]]:
    n = len(arrays[0])
    keep = np.unique(np.linspace(0, n - 1, min(n, points)).round().astype(int))
    return [np.round(a[keep], ROUND_DIGITS).tolist() for a in arrays]


def curves(y_true: np.ndarray, proba: np.ndarray) -> dict[str, Any]:
    """ROC and precision-recall curve points, downsampled for storage and charts."""
    fpr, tpr, _ = skm.roc_curve(y_true, proba)
    precision, recall, _ = skm.precision_recall_curve(y_true, proba)
    roc_fpr, roc_tpr = _downsample(fpr, tpr)
    pr_recall, pr_precision = _downsample(recall[::-1], precision[::-1])
    return {
        "roc": {"fpr": roc_fpr, "tpr": roc_tpr},
        "pr": {"recall": pr_recall, "precision": pr_precision},
    }


def _defined(value: float) -> float | None:
    """A rate or score, or None where its denominator is zero (never a made-up 0)."""
    return None if value != value else float(value)


def classification_metrics(y_true: Any, proba: Any, threshold: Any = 0.5) -> dict[str, Any]:
    """Confusion matrix at `threshold` (one number, or one per request: a cross-validated
    version decides each request at its fold's threshold), FPR/FNR and the usual
    threshold-free scores. A metric whose denominator is zero is None."""
    y = np.asarray(y_true, dtype=int)
    p = np.clip(np.asarray(proba, dtype=float), 0.0, 1.0)
    pred = (p >= np.asarray(threshold, dtype=float)).astype(int)
    tn, fp, fn, tp = (int(v) for v in skm.confusion_matrix(y, pred, labels=[0, 1]).ravel())
    both = len(np.unique(y)) == 2
    undefined = {"zero_division": np.nan}
    out: dict[str, Any] = {
        "threshold": float(threshold) if np.ndim(threshold) == 0 else None,
        "n": len(y),
        "positives": int(y.sum()),
        "confusion_matrix": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
        "fpr": fp / (fp + tn) if fp + tn else None,
        "fnr": fn / (fn + tp) if fn + tp else None,
        "precision": _defined(skm.precision_score(y, pred, **undefined)),
        "recall": _defined(skm.recall_score(y, pred, **undefined)),
        "f1": _defined(skm.f1_score(y, pred, **undefined)),
        "accuracy": float(skm.accuracy_score(y, pred)) if len(y) else None,
        "roc_auc": float(skm.roc_auc_score(y, p)) if both else None,
        "average_precision": float(skm.average_precision_score(y, p)) if both else None,
        "brier": float(skm.brier_score_loss(y, p)),
        "log_loss": float(skm.log_loss(y, p, labels=[0, 1])),
    }
    return out


def _auc_by_counts(y: np.ndarray, codes: np.ndarray, size: int, axis: int = -1) -> np.ndarray:
    """ROC AUC as the Mann-Whitney statistic, vectorised over bootstrap resamples, from each
    score's place among the `size` distinct scores (`codes`, ties share one): per resample,
    count the negatives at and below each place instead of sorting the resample. Every
    count is a whole or half number, so the result is exactly the rank-sum AUC (average
    ranks for ties), only without an argsort per resample."""
    y, codes = np.moveaxis(y, axis, -1), np.moveaxis(codes, axis, -1)
    rows = int(np.prod(codes.shape[:-1], dtype=np.int64))
    places = (codes.reshape(rows, -1) + size * np.arange(rows)[:, None]).ravel()
    positive = y.reshape(rows, -1).ravel()
    pos = np.bincount(places, weights=positive, minlength=rows * size).reshape(rows, size)
    neg = np.bincount(places, weights=1 - positive, minlength=rows * size).reshape(rows, size)
    beaten = np.cumsum(neg, axis=1) - neg / 2  # negatives below, and half of those tied
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (pos * beaten).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))
    return auc.reshape(codes.shape[:-1])


def paired_comparison(
    y: Any,
    p_a: Any,
    p_b: Any,
    threshold_a: float = 0.5,
    threshold_b: float = 0.5,
    n_resamples: int = 2000,
    seed: int = 0,
    comparisons: int = 1,
) -> dict[str, Any]:
    """Paired bootstrap 95% CI of AUC(b) - AUC(a) and McNemar's exact p at the thresholds.

    With `comparisons` > 1 (several versions against one baseline) the same resamples also
    give a Bonferroni-adjusted interval at 1 - 0.05/comparisons (`auc_difference_ci`), which
    the verdict uses, so that calling any one of them better stays a 5% risk in all."""
    (result,) = paired_comparisons(
        y, p_a, [(p_b, threshold_b)], threshold_a, n_resamples, seed, comparisons
    )
    return result


def paired_comparisons(
    y: Any,
    p_a: Any,
    others: list[tuple[Any, Any]],
    threshold_a: Any = 0.5,
    n_resamples: int = 2000,
    seed: int = 0,
    comparisons: int = 1,
) -> list[dict[str, Any]]:
    """`paired_comparison` of `p_a` against each of `others` ((probabilities, threshold)
    pairs, aligned with `y`), in one bootstrap: every pair sees the same resamples, as it
    would alone with the same seed, so each result equals `paired_comparison`'s for that
    pair; the baseline's AUC is computed once per resample instead of once per pair."""
    y = np.asarray(y, dtype=float)
    p_a = np.asarray(p_a, dtype=float)
    p_others = [np.asarray(p, dtype=float) for p, _ in others]
    distinct_a, codes_a = np.unique(p_a, return_inverse=True)
    coded = [np.unique(p, return_inverse=True) for p in p_others]
    sizes = [len(distinct) for distinct, _ in coded]

    def auc_differences(yy: np.ndarray, aa: np.ndarray, *bbs: np.ndarray, axis: int = -1):
        """AUC(b) - AUC(a) of (resampled) labels and score places, one row per b."""
        auc_a = _auc_by_counts(yy, aa.astype(np.int64), len(distinct_a), axis)
        return np.stack(
            [
                _auc_by_counts(yy, bb.astype(np.int64), size, axis) - auc_a
                for bb, size in zip(bbs, sizes, strict=True)
            ]
        )

    codes = [c for _, c in coded]
    boot = stats.bootstrap(
        (y, codes_a, *codes),
        auc_differences,
        paired=True,
        vectorized=True,
        n_resamples=n_resamples,
        confidence_level=0.95,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    observed = auc_differences(y, codes_a, *codes)
    level = 1 - 0.05 / max(1, comparisons)
    tail = 100 * (1 - level) / 2
    results = []
    for k, (p_b, (_, threshold_b)) in enumerate(zip(p_others, others, strict=True)):
        ci95 = [float(boot.confidence_interval.low[k]), float(boot.confidence_interval.high[k])]
        adjusted = np.nanpercentile(boot.bootstrap_distribution[k], [tail, 100 - tail])
        results.append(
            {
                "auc_difference": float(observed[k]),
                "auc_difference_ci95": ci95,
                "confidence_level": level,
                "auc_difference_ci": ci95 if comparisons <= 1 else [float(v) for v in adjusted],
                "bootstrap_resamples": n_resamples,
                "mcnemar": mcnemar(y, p_a >= threshold_a, p_b >= threshold_b),
            }
        )
    return results


def mcnemar(y: np.ndarray, decided_a: np.ndarray, decided_b: np.ndarray) -> dict[str, Any]:
    """McNemar's exact test of two sets of decisions on the same labelled requests."""
    correct_a = decided_a == (y == 1)
    correct_b = decided_b == (y == 1)
    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(~correct_a & correct_b))
    discordant = only_a + only_b
    p_value = stats.binomtest(only_a, discordant, 0.5).pvalue if discordant else 1.0
    return {"only_first_correct": only_a, "only_second_correct": only_b, "p_value": float(p_value)}


def probability_digest(probabilities: Any) -> str:
    """sha256 of probabilities rounded to 6 digits: equal digests mean the same answers."""
    rounded = np.round(np.asarray(probabilities, dtype=float), ROUND_DIGITS)
    return hashlib.sha256(",".join(f"{v:.6f}" for v in rounded).encode()).hexdigest()


def calibration_points(labels: Any, probabilities: Any, bins: int = 10) -> list[dict[str, float]]:
    """Reliability diagram points: mean predicted probability against the observed success
    rate in `bins` equal-count bins of the held-out predictions."""
    y, p = np.asarray(labels, dtype=int), np.asarray(probabilities, dtype=float)
    if len(y) == 0 or len(np.unique(y)) < 2:
        return []
    bins = max(2, min(bins, len(np.unique(p))))
    observed, predicted = calibration_curve(y, p, n_bins=bins, strategy="quantile")
    return [
        {"predicted": round(float(a), ROUND_DIGITS), "observed": round(float(b), ROUND_DIGITS)}
        for a, b in zip(predicted, observed, strict=True)
    ]
