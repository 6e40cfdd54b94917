"""Why this score: every recipe explained in log-odds groups that add up to the shown
probability, blank requester fields averaged over the training requesters (never 0), and
the decision at the version's own threshold."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from core import builds
from core.dataset import LABEL, REQUESTER_COUNTS, load_dataset
from core.explain import (
    BACKGROUND_ROWS,
    NO_BACKGROUND,
    background_rows,
    explain,
    unknown_note,
)
from core.features import to_frame
from core.predict import (
    BEFORE_OPERATING_POINTS,
    decision,
    decision_words,
    make_request,
    predict_proba,
    request_meta,
    score,
)
from core.registry import Registry
from core.train import fit_and_evaluate
from tests.conftest import SAMPLE, SHARED_DATA, _missing
from tests.helpers import run_cli

TITLE = "Broke student in Ohio, payday Friday"
TEXT = "Lost my job last week and the fridge is empty. I will pay it forward, promise!"
WHEN = 1_370_000_000.0  # a Friday evening in May 2013 (UTC)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


@pytest.fixture(scope="module")
def vote() -> Any:
    dataset = load_dataset(SAMPLE)
    return fit_and_evaluate(dataset, "narrative-vote", {}, 42, 0.2, "fixed:0.5", log=lambda _: None)


def test_background_rows_are_a_seeded_sample_independent_of_file_order() -> None:
    frame = to_frame(load_dataset(SAMPLE).records)
    first = background_rows(frame)
    shuffled = background_rows(frame.sample(frac=1.0, random_state=7))
    assert len(first) == min(BACKGROUND_ROWS, len(frame))
    assert first.equals(shuffled)
    assert set(first["request_id"]) == {"background"}  # ids are not kept


def test_the_artifact_does_not_need_pyarrow_to_load(vote) -> None:
    """pandas stores Arrow-backed strings when pyarrow is installed (the dashboard's
    environment); the trainer and serve images have no pyarrow, so the artifact must not
    name it or it would not load there."""
    assert b"pyarrow" not in pickle.dumps(vote.pipeline)


def test_unknown_fields_contribute_zero_and_are_named_in_words(vote) -> None:
    given = {"requester_number_of_posts_at_request": 4.0}
    record = make_request(TITLE, TEXT, **request_meta(WHEN, given))
    explained = explain(vote.pipeline, record)
    (scored,) = score(vote.pipeline, [record])
    total = explained["base"] + sum(c["value"] for c in explained["contributions"])
    assert total == pytest.approx(_logit(scored["probability"]), abs=1e-6)
    unknown = [c for c in explained["contributions"] if c["unknown"]]
    assert len(unknown) == len(REQUESTER_COUNTS) - 1
    assert all(c["value"] == 0.0 for c in unknown)
    assert "requester_number_of_posts_at_request" not in explained["unknown"]
    assert scored["unknown"] == explained["unknown"]
    assert scored["unknown_note"].startswith("account age, days since the first RAOP post,")
    assert scored["unknown_note"].endswith(
        "unknown: averaged over the requesters in the training data"
    )
    assert unknown_note([]) == ""
    groups = {c["group"] for c in explained["contributions"]}
    assert {"narrative: money", "gratitude", "text length", "words (title and text)"} <= groups


def test_the_words_chart_adds_up_to_the_words_group(vote) -> None:
    record = make_request(TITLE, TEXT, **request_meta(WHEN, {}))
    explained = explain(vote.pipeline, record, top=3)
    words = explained["words"]
    group = next(c["value"] for c in explained["contributions"] if c["group"].startswith("words"))
    assert words["total"] == group
    assert sum(w["value"] for w in words["words"]) + words["other"] == pytest.approx(group)
    assert words["shown"] == len(words["words"]) <= 3 < words["count"]


def test_a_blank_field_is_averaged_over_the_background_not_zero(vote) -> None:
    pipeline = vote.pipeline
    record = make_request(TITLE, TEXT, **request_meta(WHEN, {}))
    (scored,) = score(pipeline, [record])
    background = pipeline.background_
    requesters = [
        make_request(TITLE, TEXT, **request_meta(WHEN, {f: float(r[f]) for f in REQUESTER_COUNTS}))
        for _, r in background.iterrows()
    ]
    average = float(np.mean(predict_proba(pipeline, requesters)))
    assert scored["probability"] == pytest.approx(average, abs=1e-12)
    zeros = make_request(TITLE, TEXT, **request_meta(WHEN, dict.fromkeys(REQUESTER_COUNTS, 0.0)))
    assert predict_proba(pipeline, [zeros])[0] != pytest.approx(scored["probability"], abs=1e-9)


def test_a_version_without_background_rows_says_so_and_counts_blanks_as_zero(vote) -> None:
    from sklearn.base import clone

    old = clone(vote.pipeline)
    old.fit(
        to_frame(load_dataset(SAMPLE).records),
        [bool(r[LABEL]) for r in load_dataset(SAMPLE).records],
    )
    record = make_request(TITLE, TEXT, **request_meta(WHEN, {}))
    assert explain(old, record) == {"method": NO_BACKGROUND, "contributions": [], "unknown": []}
    (scored,) = score(old, [record])
    assert scored["unknown"] == [] and scored["defaults"][REQUESTER_COUNTS[0]] == "0"
    assert scored["probability"] == pytest.approx(predict_proba(old, [record])[0], abs=1e-12)


def test_the_decision_uses_the_version_threshold_and_names_its_policy() -> None:
    old = SimpleNamespace(version=3, threshold=0.5, metrics={})
    assert decision(old, 0.49) == {
        "decision": False,
        "threshold": 0.5,
        "threshold_policy": BEFORE_OPERATING_POINTS,
    }
    tuned = SimpleNamespace(version=5, threshold=0.27, metrics={"threshold_policy": "f1"})
    assert decision(tuned, 0.3)["decision"] is True
    assert decision_words(tuned, 0.3) == (
        "would get a pizza: yes, at v5's threshold 0.27 (policy f1)"
    )
    assert decision(SimpleNamespace(version=1, threshold=None, metrics=None), 0.6)["decision"]


def test_cli_explains_a_narrative_vote_version_without_meta(lab: Path) -> None:
    request = builds.TrainRequest(recipe="narrative-vote", backend="local", force=True)
    row, _ = builds.train(request, Registry())
    assert row.status == "ready", row.error
    done = run_cli(
        "predict", str(row.version), "--title", TITLE, "--text", TEXT, "--explain", "--json"
    )
    assert done.returncode == 0, done.stderr
    (prediction,) = json.loads(done.stdout)["predictions"]
    explained = prediction["explanation"]
    assert explained["method"].startswith("shap permutation explainer")
    total = explained["base"] + sum(c["value"] for c in explained["contributions"])
    assert total == pytest.approx(_logit(prediction["probability"]), abs=1e-6)
    assert set(prediction["unknown"]) == set(REQUESTER_COUNTS)
    assert prediction["decision"] == (prediction["probability"] >= prediction["threshold"])
    assert prediction["threshold_policy"] == row.metrics["threshold_policy"] == "f1"
    assert prediction["threshold"] == pytest.approx(row.metrics["threshold"])
    text = run_cli("predict", str(row.version), "--title", TITLE, "--text", TEXT, "--explain")
    assert text.returncode == 0, text.stderr
    assert (
        "all other words" in text.stdout and "unknown: averaged over the requesters" in text.stdout
    )


@pytest.fixture(scope="module")
def real() -> Any:
    if not SHARED_DATA.is_file():
        _missing(f"shared RAOP data not found at {SHARED_DATA}")
    return load_dataset(SHARED_DATA)


@pytest.mark.parametrize("recipe", ["narrative-vote", "tfidf-meta-logreg"])
def test_blank_fields_match_the_average_over_100_real_requesters(real, recipe: str) -> None:
    pipeline = fit_and_evaluate(real, recipe, {}, 42, 0.2, "fixed:0.5", log=lambda _: None).pipeline
    record = make_request(TITLE, TEXT, **request_meta(WHEN, {}))
    (blank,) = score(pipeline, [record])
    picked = np.random.default_rng(2024).choice(len(real.records), 100, replace=False)
    requesters = [
        make_request(
            TITLE,
            TEXT,
            **request_meta(WHEN, {f: float(real.records[i][f]) for f in REQUESTER_COUNTS}),
        )
        for i in picked
    ]
    average = float(np.mean(predict_proba(pipeline, requesters)))
    assert blank["probability"] == pytest.approx(average, abs=0.03), (blank, average)


@pytest.mark.slow
def test_explain_bench_runs_on_the_sample_without_writing_docs(lab: Path) -> None:
    from tests.helpers import run_bench

    doc = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
    before = doc.read_bytes()
    args = ("--data", str(SAMPLE), "--calls", "2", "--cold-runs", "1", "--no-write")
    completed = run_bench("explain_bench.py", *args)
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert completed.stdout.startswith("## Explanations (bench/explain_bench.py)")
    assert "narrative-vote, warm, fields blank" in completed.stdout
    assert doc.read_bytes() == before
