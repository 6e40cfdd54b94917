"""Held-out split, metrics and paired statistics, checked against sklearn/scipy directly."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from core.errors import BadInput
from core.evaluate import (
    classification_metrics,
    make_split,
    paired_comparison,
    paired_comparisons,
    probability_digest,
    split_hash,
)
from tests.conftest import SAMPLE


@pytest.fixture(scope="module")
def sample_ids_labels() -> tuple[list[str], list[bool]]:
    records = json.loads(SAMPLE.read_text())
    return [r["request_id"] for r in records], [r["requester_received_pizza"] for r in records]


def _scores(n: int, seed: int, signal: float) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities that carry `signal` (0 = noise), rounded to create ties."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    p = np.clip(signal * y + (1 - signal) * rng.random(n), 0, 1)
    return y, np.round(p, 2)


# --- split ---------------------------------------------------------------------------------
def test_split_is_a_stratified_partition(sample_ids_labels):
    ids, labels = sample_ids_labels
    split = make_split(ids, labels, seed=42, test_size=0.2)
    train, test = set(split.train_index.tolist()), set(split.test_index.tolist())
    assert not train & test
    assert train | test == set(range(len(ids)))
    assert len(test) == math.ceil(0.2 * len(ids))
    y = np.asarray(labels)
    overall = y.mean()
    # stratified: each part's positive count is within one of its proportional share
    assert abs(y[split.test_index].sum() - overall * len(test)) <= 1
    assert abs(y[split.train_index].sum() - overall * len(train)) <= 1


def test_split_is_deterministic_for_a_seed_and_changes_with_it(sample_ids_labels):
    ids, labels = sample_ids_labels
    a = make_split(ids, labels, seed=7, test_size=0.25)
    b = make_split(ids, labels, seed=7, test_size=0.25)
    c = make_split(ids, labels, seed=8, test_size=0.25)
    assert np.array_equal(a.test_index, b.test_index)
    assert a.hash == b.hash
    assert not np.array_equal(a.test_index, c.test_index)
    assert a.hash != c.hash


def test_split_is_independent_of_input_order(sample_ids_labels):
    ids, labels = sample_ids_labels
    perm = np.random.default_rng(3).permutation(len(ids))
    ids_shuffled = [ids[i] for i in perm]
    labels_shuffled = [labels[i] for i in perm]
    original = make_split(ids, labels, seed=42, test_size=0.2)
    shuffled = make_split(ids_shuffled, labels_shuffled, seed=42, test_size=0.2)
    assert {ids[i] for i in original.test_index} == {ids_shuffled[i] for i in shuffled.test_index}
    assert original.hash == shuffled.hash


def test_split_hash_is_sha256_of_sorted_test_ids(sample_ids_labels):
    ids, labels = sample_ids_labels
    split = make_split(ids, labels, seed=42, test_size=0.2)
    test_ids = sorted(ids[i] for i in split.test_index)
    expected = hashlib.sha256("\n".join(test_ids).encode("utf-8")).hexdigest()
    assert split.hash == expected
    assert split_hash(list(reversed(test_ids))) == expected
    assert split_hash(test_ids[1:]) != expected


@pytest.mark.parametrize("test_size", [0.0, 0.01, 0.51, 0.9])
def test_split_refuses_out_of_range_test_size(sample_ids_labels, test_size):
    ids, labels = sample_ids_labels
    with pytest.raises(BadInput, match="test size"):
        make_split(ids, labels, seed=1, test_size=test_size)


def test_split_with_too_few_of_a_class_is_bad_input():
    ids = [f"id{i}" for i in range(20)]
    labels = [True] + [False] * 19
    with pytest.raises(BadInput, match="stratified"):
        make_split(ids, labels, seed=0, test_size=0.2)


# --- metrics -------------------------------------------------------------------------------
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_classification_metrics_match_sklearn(threshold):
    y, p = _scores(300, seed=11, signal=0.2)
    m = classification_metrics(y, p, threshold)
    pred = (p >= threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    assert min(tn, fp, fn, tp) > 0 and tn != tp  # every rate below is exercised
    assert m["confusion_matrix"] == {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
    assert m["n"] == len(y) == tn + fp + fn + tp
    assert m["positives"] == int(y.sum())
    assert m["threshold"] == threshold
    assert m["fpr"] == pytest.approx(fp / (fp + tn))
    assert m["fnr"] == pytest.approx(fn / (fn + tp))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert m["average_precision"] == pytest.approx(skm.average_precision_score(y, p))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred, zero_division=0))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert m["recall"] == pytest.approx(1 - m["fnr"])
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, p))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, p, labels=[0, 1]))
    json.dumps(m)  # stored as JSON: plain Python numbers only


def test_threshold_moves_the_confusion_matrix():
    y, p = _scores(300, seed=5, signal=0.4)
    low = classification_metrics(y, p, 0.2)["confusion_matrix"]
    high = classification_metrics(y, p, 0.8)["confusion_matrix"]
    assert low["tp"] + low["fp"] > high["tp"] + high["fp"]


def test_rates_are_none_without_negatives_or_positives():
    only_pos = classification_metrics([1, 1, 1], [0.9, 0.2, 0.6])
    assert only_pos["fpr"] is None and only_pos["roc_auc"] is None
    assert only_pos["fnr"] == pytest.approx(1 / 3)
    only_neg = classification_metrics([0, 0], [0.9, 0.2])
    assert only_neg["fnr"] is None and only_neg["fpr"] == pytest.approx(0.5)


# --- paired comparison ---------------------------------------------------------------------
def test_paired_auc_difference_matches_sklearn_and_lies_in_its_ci():
    y, p_a = _scores(400, seed=1, signal=0.2)
    _, p_b = _scores(400, seed=1, signal=0.35)
    rng = np.random.default_rng(9)
    p_b = np.round(np.clip(p_b + rng.normal(0, 0.05, len(y)), 0, 1), 2)
    result = paired_comparison(y, p_a, p_b, n_resamples=800, seed=3)
    expected = skm.roc_auc_score(y, p_b) - skm.roc_auc_score(y, p_a)
    assert result["auc_difference"] == pytest.approx(expected, abs=1e-12)
    low, high = result["auc_difference_ci95"]
    assert low < expected < high
    assert result["bootstrap_resamples"] == 800
    # the bootstrap is seeded: the same call gives the same interval
    again = paired_comparison(y, p_a, p_b, n_resamples=800, seed=3)
    assert again["auc_difference_ci95"] == result["auc_difference_ci95"]


def test_paired_comparison_aligns_direction():
    y, weak = _scores(300, seed=2, signal=0.05)
    _, strong = _scores(300, seed=2, signal=0.6)
    forward = paired_comparison(y, weak, strong, n_resamples=300)
    backward = paired_comparison(y, strong, weak, n_resamples=300)
    assert forward["auc_difference"] > 0
    assert forward["auc_difference_ci95"][0] > 0  # a clearly better model: CI excludes 0
    assert backward["auc_difference"] == pytest.approx(-forward["auc_difference"])


def test_mcnemar_counts_and_p_value_match_an_exact_binomial_test():
    y, p_a = _scores(250, seed=4, signal=0.3)
    _, p_b = _scores(250, seed=40, signal=0.3)
    result = paired_comparison(y, p_a, p_b, threshold_a=0.5, threshold_b=0.4, n_resamples=200)
    correct_a = [(pa >= 0.5) == bool(t) for pa, t in zip(p_a, y, strict=True)]
    correct_b = [(pb >= 0.4) == bool(t) for pb, t in zip(p_b, y, strict=True)]
    only_a = sum(a and not b for a, b in zip(correct_a, correct_b, strict=True))
    only_b = sum(b and not a for a, b in zip(correct_a, correct_b, strict=True))
    mc = result["mcnemar"]
    assert (mc["only_first_correct"], mc["only_second_correct"]) == (only_a, only_b)
    assert only_a + only_b > 0
    assert 0.0 <= mc["p_value"] <= 1.0
    assert mc["p_value"] == pytest.approx(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)


def test_identical_predictions_have_p_value_one_and_zero_difference():
    y, p = _scores(200, seed=6, signal=0.3)
    result = paired_comparison(y, p, p.copy(), n_resamples=200)
    assert result["mcnemar"]["p_value"] == 1.0
    assert result["mcnemar"]["only_first_correct"] == 0
    assert result["mcnemar"]["only_second_correct"] == 0
    assert result["auc_difference"] == 0.0
    assert result["auc_difference_ci95"] == [0.0, 0.0]


def test_probability_digest_ignores_noise_below_six_digits():
    p = np.array([0.1234561, 0.5, 0.9])
    assert probability_digest(p) == probability_digest(p + 1e-9)
    assert probability_digest(p) != probability_digest(p + 1e-5)


@pytest.mark.parametrize(
    ("ci", "diff", "start"),
    [
        (
            (0.106, 0.235),
            0.169,
            "v7 is better than v4: ROC AUC v7 − v4 = +0.169 (95% CI +0.106 to +0.235)",
        ),
        (
            (-0.2, -0.05),
            -0.12,
            "v4 is better than v7: ROC AUC v7 − v4 = −0.120 (95% CI −0.200 to −0.050)",
        ),
        ((-0.03, 0.04), 0.005, "No clear difference between v4 and v7"),
    ],
)
def test_pair_verdict_names_the_winner_only_when_the_interval_excludes_zero(ci, diff, start):
    from core.compare import pair_verdict

    pair = {
        "first": 4,
        "second": 7,
        "auc_difference": diff,
        "auc_difference_ci95": list(ci),
        "n": 649,
        "mcnemar": {"only_first_correct": 120, "only_second_correct": 87, "p_value": 0.58},
    }
    said = pair_verdict(pair, "equal false positive rate 0.2 (thresholds 0.31 and 0.29)")
    assert said.startswith(start), said
    assert said.endswith(
        "at equal false positive rate 0.2 (thresholds 0.31 and 0.29) they disagree on 207 of "
        "649 requests, McNemar p = 0.58."
    )


def test_several_versions_against_one_baseline_get_a_bonferroni_interval():
    from core.compare import pair_verdict

    y, p_a = _scores(400, seed=3, signal=0.3)
    _, p_b = _scores(400, seed=3, signal=0.35)
    one = paired_comparison(y, p_a, p_b, n_resamples=500)
    three = paired_comparison(y, p_a, p_b, n_resamples=500, comparisons=3)
    assert one["auc_difference_ci"] == one["auc_difference_ci95"] == three["auc_difference_ci95"]
    low, high = three["auc_difference_ci"]
    assert low < one["auc_difference_ci95"][0] and high > one["auc_difference_ci95"][1]
    said = pair_verdict(three | {"first": 1, "second": 2, "n": 400}, "each version's own")
    assert "(98.33% Bonferroni-adjusted CI " in said and "-" not in said.split(":")[1][:40]


def test_pairs_bootstrapped_together_get_exactly_what_each_gets_alone():
    """Compare bootstraps a baseline against up to three versions in one pass: each pair's
    interval, adjusted interval and McNemar must be bit for bit those of the pair alone."""
    y, base = _scores(500, seed=4, signal=0.3)
    others = []
    for seed, signal in ((5, 0.35), (6, 0.05), (7, 0.6)):
        _, p = _scores(500, seed=seed, signal=signal)
        others.append((p, 0.3 + signal / 4))
    together = paired_comparisons(y, base, others, 0.4, n_resamples=700, seed=2, comparisons=3)
    alone = [
        paired_comparison(y, base, p, 0.4, cut, n_resamples=700, seed=2, comparisons=3)
        for p, cut in others
    ]
    assert together == alone
    assert len({json.dumps(r["auc_difference_ci"]) for r in together}) == 3  # three pairs


def test_the_quick_class_count_bounds_never_exceed_the_exact_split() -> None:
    """`check_class_counts` skips scikit-learn when its bounds clear the limits: they must be
    lower bounds of the real split's counts, for any size, balance, test size and seed."""
    import random

    from core.class_counts import _split_bounds, _split_least

    rng = random.Random(3)
    for _ in range(400):
        rows = rng.randint(6, 3000)
        positives = rng.randint(2, rows - 2)
        test_size = rng.choice([0.1, 0.2, 0.25, 0.33, 0.5])
        seed = rng.randint(0, 10_000)
        try:
            exact = _split_least(rows, positives, seed, test_size, "")
        except Exception:
            continue
        low = _split_bounds(rows, positives, test_size)
        assert low[0] <= exact[0] and low[1] <= exact[1], (rows, positives, test_size, seed)


def test_bootstrap_auc_by_counts_is_the_rank_sum_auc_exactly() -> None:
    """The paired bootstrap counts negatives per distinct score instead of sorting each
    resample: the same AUC as average ranks (scipy's rankdata), bit for bit, ties included."""
    from core.evaluate import _auc_by_counts

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, size=(50, 120)).astype(float)
    scores = np.round(rng.random((50, 120)), 1)  # many ties
    distinct, codes = np.unique(scores, return_inverse=True)
    ranks = stats.rankdata(scores, axis=-1)
    n_pos = y.sum(axis=-1)
    by_ranks = ((ranks * y).sum(axis=-1) - n_pos * (n_pos + 1) / 2) / (n_pos * (120 - n_pos))
    by_counts = _auc_by_counts(y, codes.reshape(scores.shape), len(distinct))
    assert np.array_equal(by_counts, by_ranks)
    assert by_counts[0] == skm.roc_auc_score(y[0], scores[0])
