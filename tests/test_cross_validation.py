"""Cross-validated evaluation: folds, out-of-fold predictions, CV versions and their comparison."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.config import SAMPLE_DATA
from core.dataset import load_dataset
from core.evaluate import folds_hash, make_folds
from core.registry import Registry
from core.train import cross_validate
from tests.helpers import run_cli

ROOT = Path(__file__).resolve().parent.parent


def _labels(n: int, positives: int) -> tuple[list[str], list[bool]]:
    ids = [f"t3_{i:05d}" for i in range(n)]
    return ids, [i % (n // positives) == 0 for i in range(n)]


def _fold_ids(folds, ids: list[str]) -> list[list[list[str]]]:
    return [[sorted(ids[i] for i in test) for test in repeat] for repeat in folds.test_indices]


def test_folds_are_stratified_cover_every_row_once_per_repeat_and_ignore_order() -> None:
    ids, labels = _labels(1000, 250)
    folds = make_folds(ids, labels, seed=7, folds=5, repeats=3, data_sha256="d" * 64)
    y = np.asarray(labels)
    for repeat in folds.test_indices:
        together = np.concatenate(repeat)
        assert sorted(together.tolist()) == list(range(1000))  # each row exactly once
        for test in repeat:
            assert len(test) == 200 and abs(int(y[test].sum()) - 50) <= 1  # stratified
    assert folds.test_indices[0][0].tolist() != folds.test_indices[1][0].tolist()

    # the same requests in another order give the same folds (by request id)
    order = np.random.default_rng(1).permutation(1000)
    shuffled_ids = [ids[i] for i in order]
    shuffled = make_folds(shuffled_ids, [labels[i] for i in order], 7, 5, 3, "d" * 64)
    assert _fold_ids(shuffled, shuffled_ids) == _fold_ids(folds, ids)
    assert shuffled.hash == folds.hash
    # the hash names seed, folds, repeats and data
    hashes = {
        folds_hash(7, 5, 3, "d" * 64),
        folds_hash(8, 5, 3, "d" * 64),
        folds_hash(7, 4, 3, "d" * 64),
        folds_hash(7, 5, 2, "d" * 64),
        folds_hash(7, 5, 3, "e" * 64),
    }
    assert len(hashes) == 5


def test_too_few_of_a_class_for_the_folds_is_a_clear_error() -> None:
    from core.errors import BadInput

    ids, labels = _labels(40, 4)
    with pytest.raises(BadInput, match="each class needs at least 5"):
        make_folds(ids, labels, 0, 5, 1, "d" * 64)


def test_out_of_fold_predictions_cover_every_request_and_do_not_depend_on_parallelism() -> None:
    dataset = load_dataset(SAMPLE_DATA)
    quiet = {"log": lambda _: None}
    one = cross_validate(dataset, "tfidf-logreg", {}, 3, 4, 2, "f1", jobs=1, **quiet)
    two = cross_validate(dataset, "tfidf-logreg", {}, 3, 4, 2, "f1", jobs=2, **quiet)
    ids = [r["request_id"] for r in dataset.records]
    assert one.test_ids == ids and len(one.test_probabilities) == dataset.rows
    assert one.test_probabilities == two.test_probabilities
    assert one.test_labels == [int(r["requester_received_pizza"]) for r in dataset.records]
    evaluation = one.metrics["evaluation"]
    assert evaluation["kind"] == "cv" and (evaluation["folds"], evaluation["repeats"]) == (4, 2)
    spread = evaluation["fold_metrics"]["roc_auc"]
    assert 0 < spread["sd"] < 0.3 and 0.3 < spread["mean"] < 1
    assert one.metrics["n"] == dataset.rows and one.split_hash == evaluation["hash"]
    assert evaluation["fold_thresholds"] == two.metrics["evaluation"]["fold_thresholds"]
    assert [len(r) for r in evaluation["fold_thresholds"]] == [4, 4]
    assert one.metrics["threshold"] == two.metrics["threshold"]
    # pooled metrics are those of the out-of-fold probabilities
    from sklearn.metrics import roc_auc_score

    assert one.metrics["roc_auc"] == pytest.approx(
        roc_auc_score(one.test_labels, one.test_probabilities)
    )


def _json(done) -> dict:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _train(*args: str) -> dict:
    return _json(run_cli("train", "--backend", "local", "--json", "--quiet", *args))


def test_cv_versions_compare_on_every_request_and_never_with_a_split_version(lab: Path) -> None:
    rows = len(json.loads(SAMPLE_DATA.read_text()))
    first = _train("--recipe", "tfidf-logreg", "--cv", "3")
    second = _train("--recipe", "nb-bow", "--cv", "3")
    split = _train("--recipe", "nb-bow")
    assert first["metrics"]["n"] == rows and first["split_hash"] == second["split_hash"]
    assert first["provenance"]["split"]["cv"] == {"folds": 3, "repeats": 1}
    assert first["provenance"]["split"]["test_size"] is None

    compared = _json(run_cli("compare", "1", "2", "--json", "--resamples", "200"))
    assert [e["kind"] for e in compared["evaluations"]] == ["cv", "cv"]
    (pair,) = compared["paired"]
    assert pair["n"] == rows  # every request, not a test fifth
    assert f"of {rows} requests" in pair["verdict"]

    refused = run_cli("compare", "1", str(split["version"]))
    assert refused.returncode == 2 and "evaluated differently" in refused.stderr
    assert "cross-validation" in refused.stderr and "held-out" in refused.stderr
    # other folds of the same data are not paired either
    other = _train("--recipe", "tfidf-logreg", "--cv", "4")
    refused = run_cli("compare", "1", str(other["version"]))
    assert refused.returncode == 2 and "different cross-validation folds" in refused.stderr

    # the same request again is the same version; a different K or R is not
    assert _train("--recipe", "tfidf-logreg", "--cv", "3")["reused"] is True
    assert _train("--recipe", "tfidf-logreg", "--cv", "3", "--cv-repeats", "2")["reused"] is False
    # a CV version's model is already fitted on all its data: no refit
    refit = run_cli("refit", "1")
    assert refit.returncode == 2 and "cross-validated" in refit.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--cv", "1"], "--cv"),
        (["--cv", "21"], "--cv"),
        (["--cv", "five"], "--cv"),
        (["--cv", "3", "--cv-repeats", "0"], "--cv-repeats"),
        (["--cv-repeats", "2"], "need a number of folds"),
    ],
)
def test_bad_cross_validation_settings_are_refused_and_change_nothing(
    lab: Path, args: list[str], message: str
) -> None:
    done = run_cli("train", "--recipe", "nb-bow", "--backend", "local", *args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    assert Registry().list_versions() == []


def test_the_dashboard_shows_how_a_version_was_evaluated_and_the_spread_over_folds(
    lab: Path,
) -> None:
    _train("--recipe", "tfidf-logreg", "--cv", "3")
    _train("--recipe", "nb-bow", "--cv", "3")
    at = AppTest.from_file(str(ROOT / "pages" / "2_Versions.py"), default_timeout=60)
    at.query_params["v"] = "1"
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    captions = " ".join(c.value for c in at.caption)
    assert "3-fold cross-validation" in captions and "per fold" in captions
    assert "±" in captions

    at = AppTest.from_file(str(ROOT / "pages" / "3_Compare.py"), default_timeout=60)
    at.query_params["v"] = "1,2"
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    captions = " ".join(c.value for c in at.caption)
    assert "3-fold cross-validation" in captions and "ROC AUC per fold" in captions
