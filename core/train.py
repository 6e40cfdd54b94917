"""Fit and evaluate one recipe on one dataset: the step every builder runs.

This module is pure (no registry, no files besides what it is given); `core.worker` wraps it
for subprocesses and containers, and `core.builds` records its results.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.dataset import LABEL, REQUEST_ID, Dataset
from core.evaluate import (
    ROUND_DIGITS,
    classification_metrics,
    curves,
    fold_spread,
    make_folds,
    make_split,
)
from core.features import input_ranges, to_frame
from core.operating_point import ThresholdPolicy, inner_folds, parse_policy, tune_threshold
from core.provenance import environment
from core.recipes import get_recipe

Log = Callable[[str], None]
PROGRESS = "progress:"  # a worker line `progress: D/N fits` becomes the build's stage


@dataclass(frozen=True)
class TrainResult:
    """A fitted pipeline and everything measured about it on the held-out split."""

    pipeline: Any
    metrics: dict[str, Any]
    curves: dict[str, Any]
    split_hash: str
    test_ids: list[str]
    test_labels: list[int]
    test_probabilities: list[float]
    fit_seconds: float
    evaluate_seconds: float
    environment: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """Everything but the pipeline, JSON-ready."""
        return {
            "metrics": self.metrics,
            "curves": self.curves,
            "split_hash": self.split_hash,
            "test_ids": self.test_ids,
            "test_labels": self.test_labels,
            "test_probabilities": self.test_probabilities,
            "fit_seconds": self.fit_seconds,
            "evaluate_seconds": self.evaluate_seconds,
            "environment": self.environment,
        }


# Fitted attributes that hold process-specific values (memory addresses): dropped before
# pickling so that the same build gives a byte-identical artifact. sklearn recomputes them.
VOLATILE_ATTRIBUTES = ("_stop_words_id",)


def strip_volatile_state(estimator: Any) -> Any:
    """Prepare a fitted pipeline for storage: remove process-specific cache attributes, and
    turn vocabulary indices from numpy integers into plain ints (joblib's pickler walks
    numpy scalars one by one: the dump of a 26,000-word vocabulary takes 3-4x longer and
    the load 3x; predictions are identical)."""
    stack = [estimator]
    while stack:
        current = stack.pop()
        for name in VOLATILE_ATTRIBUTES:
            if name in getattr(current, "__dict__", {}):
                delattr(current, name)
        vocabulary = getattr(current, "__dict__", {}).get("vocabulary_")
        if isinstance(vocabulary, dict):
            current.vocabulary_ = {term: int(index) for term, index in vocabulary.items()}
        stack.extend(step for _, step in getattr(current, "steps", []))
        stack.extend(t for _, t, _ in getattr(current, "transformers_", []))
        stack.extend(t for _, t in getattr(current, "transformer_list", []))
        stack.extend(getattr(current, "estimators_", None) or [])  # ensembles
    return estimator


def _fit(pipeline: Any, frame: Any, labels: Any, log: Log) -> float:
    """Fit and keep the training range of every numeric input in the pipeline (it travels
    inside the artifact, so every prediction can say what lies outside it), and a seeded
    sample of training rows (the background of explanations and of unknown fields);
    seconds taken."""
    from core.explain import background_rows

    started = time.perf_counter()
    pipeline.fit(frame, labels)
    pipeline.input_ranges_ = input_ranges(pipeline, frame)
    pipeline.background_ = background_rows(frame)
    fit_seconds = time.perf_counter() - started
    log(f"fit done in {fit_seconds:.2f}s")
    return fit_seconds


def _fit_all(pipeline: Any, recipe_name: str, frame: Any, labels: Any, log: Log) -> TrainResult:
    log(f"refitting {recipe_name} on all {len(labels)} requests ...")
    fit_seconds = _fit(pipeline, frame, labels, log)
    return TrainResult(
        pipeline=strip_volatile_state(pipeline),
        metrics={},
        curves={},
        split_hash="",
        test_ids=[],
        test_labels=[],
        test_probabilities=[],
        fit_seconds=fit_seconds,
        evaluate_seconds=0.0,
        environment=environment(),
    )


def fit_and_evaluate(
    dataset: Dataset,
    recipe_name: str,
    params: dict[str, Any],
    seed: int,
    test_size: float,
    policy: str,
    log: Log = print,
    jobs: int = 1,
) -> TrainResult:
    """Split, choose the operating point and fit on the training part, score the held-out
    part at that point. `test_size` 0 fits on every request and scores nothing (a refit:
    its evaluation and threshold are its parent's)."""
    recipe = get_recipe(recipe_name)
    params = recipe.resolve(params)
    frame = to_frame(dataset.records)
    labels = np.array([bool(r[LABEL]) for r in dataset.records])
    ids = [r[REQUEST_ID] for r in dataset.records]
    if test_size == 0:
        return _fit_all(recipe.pipeline(params), recipe_name, frame, labels, log)
    threshold_policy = parse_policy(policy)
    split = make_split(ids, labels.tolist(), seed, test_size)
    log(
        f"split: {len(split.train_index)} train / {len(split.test_index)} test "
        f"(seed {seed}, test size {test_size}, hash {split.hash[:12]})"
    )
    pipeline = recipe.pipeline(params)
    threshold = _operating_point(
        pipeline, frame, labels, ids, split.train_index, threshold_policy, seed, jobs, log
    )
    log(f"fitting {recipe_name} ...")
    fit_seconds = _fit(pipeline, frame.iloc[split.train_index], labels[split.train_index], log)
    started = time.perf_counter()
    y_test = labels[split.test_index].astype(int)
    proba = pipeline.predict_proba(frame.iloc[split.test_index])[:, 1]
    metrics = classification_metrics(y_test, proba, threshold) | {
        "threshold_policy": threshold_policy.label
    }
    result_curves = curves(y_test, proba)
    evaluate_seconds = time.perf_counter() - started
    log(
        f"evaluated in {evaluate_seconds:.2f}s: ROC AUC {metrics['roc_auc']:.4f}; at threshold "
        f"{threshold:g}: FPR {_rate(metrics['fpr'])}, FNR {_rate(metrics['fnr'])}"
    )
    return TrainResult(
        pipeline=strip_volatile_state(pipeline),
        metrics=metrics,
        curves=result_curves,
        split_hash=split.hash,
        test_ids=[ids[i] for i in split.test_index],
        test_labels=y_test.tolist(),
        test_probabilities=[float(p) for p in proba],
        fit_seconds=fit_seconds,
        evaluate_seconds=evaluate_seconds,
        environment=environment(),
    )


def _rate(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"


def _operating_point(
    pipeline: Any,
    frame: Any,
    labels: Any,
    ids: list[str],
    rows: Any,
    policy: ThresholdPolicy,
    seed: int,
    jobs: int,
    log: Log,
) -> float:
    """The policy's threshold for a model fitted on `rows`: tuned on out-of-fold
    probabilities of those rows only (never on the rows it will be scored on)."""
    if not policy.tuned:
        log(f"operating point: {policy.label} (not tuned)")
        return float(policy.value)
    tasks = inner_folds(ids, labels, rows, seed)
    started = time.perf_counter()
    scores = _run_folds(pipeline, frame, labels, tasks, jobs, log)
    threshold = _tuned(labels, tasks, scores, policy)
    log(
        f"operating point: threshold {threshold:g} by policy {policy.label}, from out-of-fold "
        f"probabilities of the {len(rows)} training requests ({len(tasks)} folds, "
        f"{time.perf_counter() - started:.2f}s)"
    )
    return threshold


def _tuned(labels: Any, tasks: list, scores: list, policy: ThresholdPolicy) -> float:
    """The policy's threshold over the pooled validation probabilities of `tasks`."""
    valid = np.concatenate([test for _, test in tasks])
    return tune_threshold(labels[valid], np.concatenate(scores), policy)


def _fold_scores(pipeline: Any, frame: Any, labels: Any, train: Any, test: Any) -> Any:
    """Fit a fresh copy on one fold's training rows; its probabilities on the fold's rows."""
    from sklearn.base import clone

    fitted = clone(pipeline).fit(frame.iloc[train], labels[train])
    return fitted.predict_proba(frame.iloc[test])[:, 1]


_FORKED: dict[str, Any] = {}  # what forked fold processes inherit (nothing is pickled)


def _forked_fold(number: int) -> Any:
    pipeline, frame, labels, tasks = _FORKED["folds"]
    return _fold_scores(pipeline, frame, labels, *tasks[number])


def _run_folds(
    pipeline: Any, frame: Any, labels: Any, tasks: list, jobs: int, log: Log | None = None
) -> list:
    """Each fold's probabilities, in order; `jobs` > 1 forks that many processes, which
    inherit the data (copy-on-write) and end with the pool. With `log`, a `progress: D/N
    fits` line after each fit (the build's stage shows it)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    def done(count: int) -> None:
        if log is not None:
            log(f"{PROGRESS} {count}/{len(tasks)} fits")

    if jobs <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        out = []
        for train, test in tasks:
            out.append(_fold_scores(pipeline, frame, labels, train, test))
            done(len(out))
        return out
    _FORKED["folds"] = (pipeline, frame, labels, tasks)
    try:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(jobs, mp_context=context) as pool:
            out = []
            for scores in pool.map(_forked_fold, range(len(tasks))):
                out.append(scores)
                done(len(out))
            return out
    finally:
        _FORKED.clear()


def cross_validate(
    dataset: Dataset,
    recipe_name: str,
    params: dict[str, Any],
    seed: int,
    folds: int,
    repeats: int,
    policy: str,
    jobs: int = 1,
    log: Log = print,
) -> TrainResult:
    """Repeated stratified K-fold: out-of-fold probabilities for every request (averaged over
    repeats), each decided at a threshold chosen inside its training fold; the pooled metrics
    on them, each fold's metrics as mean ± sd, and the pipeline refitted on all the data with
    a threshold chosen on the out-of-fold probabilities. `jobs` fits run at once (forked
    processes)."""
    recipe = get_recipe(recipe_name)
    params = recipe.resolve(params)
    threshold_policy = parse_policy(policy)
    frame = to_frame(dataset.records)
    labels = np.array([bool(r[LABEL]) for r in dataset.records])
    ids = [r[REQUEST_ID] for r in dataset.records]
    plan = make_folds(ids, labels.tolist(), seed, folds, repeats, dataset.sha256)
    everything = np.arange(len(labels))
    tasks = [(np.setdiff1d(everything, test), test) for rep in plan.test_indices for test in rep]
    inner = [
        inner_folds(ids, labels, train, seed) if threshold_policy.tuned else []
        for train, _ in tasks
    ]
    fits = len(tasks) + sum(len(i) for i in inner)
    log(
        f"cross-validation: {folds} folds x {repeats} repeat(s) on {len(labels)} requests, "
        f"each fold's threshold by policy {threshold_policy.label} inside its training part: "
        f"{fits} fits, {jobs} at a time (seed {seed}, hash {plan.hash[:12]})"
    )
    started = time.perf_counter()
    pipeline = recipe.pipeline(params)
    scores = _run_folds(pipeline, frame, labels, tasks + [t for i in inner for t in i], jobs, log)
    cv_seconds = time.perf_counter() - started
    fold_thresholds = _fold_thresholds(labels, inner, scores[len(tasks) :], threshold_policy)
    oof = np.zeros((repeats, len(labels)))
    cut = np.zeros((repeats, len(labels)))
    per_fold = []
    for number, ((_, test), proba, t) in enumerate(
        zip(tasks, scores, fold_thresholds, strict=False)
    ):
        oof[number // folds, test], cut[number // folds, test] = proba, t
        per_fold.append(classification_metrics(labels[test].astype(int), proba, t))
    proba = np.round(oof.mean(axis=0), ROUND_DIGITS)  # stored per request: 6 digits suffice
    y = labels.astype(int)
    threshold = tune_threshold(y, proba, threshold_policy)
    metrics = classification_metrics(y, proba, cut.mean(axis=0)) | {
        "threshold": threshold,
        "threshold_policy": threshold_policy.label,
    }
    metrics["evaluation"] = {
        "kind": "cv",
        **plan.describe(),
        "hash": plan.hash,
        "fold_metrics": fold_spread(per_fold),
        "fold_thresholds": [fold_thresholds[r * folds : (r + 1) * folds] for r in range(repeats)],
        "seconds": round(cv_seconds, 4),
    }
    spread = metrics["evaluation"]["fold_metrics"].get("roc_auc")
    log(
        f"cross-validated in {cv_seconds:.2f}s: pooled ROC AUC {metrics['roc_auc']:.4f}"
        + (f", per fold {spread['mean']:.4f} ± {spread['sd']:.4f}" if spread else "")
        + f"; fold thresholds {', '.join(f'{t:g}' for t in fold_thresholds)}; the final "
        f"model's threshold {threshold:g} (policy {threshold_policy.label}, chosen on the "
        "out-of-fold probabilities)"
    )
    final = _fit_all(recipe.pipeline(params), recipe_name, frame, labels, log)
    return TrainResult(
        pipeline=final.pipeline,
        metrics=metrics,
        curves=curves(y, proba),
        split_hash=plan.hash,
        test_ids=ids,
        test_labels=y.tolist(),
        test_probabilities=[float(p) for p in proba],
        fit_seconds=final.fit_seconds,
        evaluate_seconds=cv_seconds,
        environment=final.environment,
    )


def _fold_thresholds(
    labels: Any, inner: list[list], scores: list, policy: ThresholdPolicy
) -> list[float]:
    """Each outer fold's threshold, tuned on its own inner folds' probabilities."""
    if not policy.tuned:
        return [float(policy.value)] * len(inner)
    out, at = [], 0
    for tasks in inner:
        out.append(_tuned(labels, tasks, scores[at : at + len(tasks)], policy))
        at += len(tasks)
    return out
