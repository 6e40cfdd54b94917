"""Predictions a person can trust: no feature extrapolates, out-of-range inputs are reported,
blank requester fields are unknown (averaged), and the explanation adds up to the shown score."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core import builds
from core.dataset import TIMESTAMP, load_dataset
from core.explain import explain
from core.features import read_columns
from core.predict import (
    make_request,
    parse_request_time,
    predict_proba,
    request_meta,
    score,
)
from core.recipes import RECIPES, get_recipe
from core.registry import Registry
from core.train import fit_and_evaluate
from tests.conftest import SAMPLE
from tests.helpers import run_cli

TITLE = "Broke student"
TEXT = "Payday is Friday, I lost my job and would pay it forward"
AGE = "requester_account_age_in_days_at_request"


@pytest.fixture(scope="module")
def fitted() -> dict[str, Any]:
    """Every recipe fitted once on the bundled sample (no registry needed)."""
    dataset = load_dataset(SAMPLE)
    return {
        name: fit_and_evaluate(dataset, name, {}, 42, 0.2, "fixed:0.5", log=lambda _: None).pipeline
        for name in RECIPES
    }


def _at(iso: str, **fields: float) -> dict[str, Any]:
    return make_request(TITLE, TEXT, **request_meta(parse_request_time(iso), fields))


def test_a_request_dated_decades_later_scores_like_one_in_the_data(fitted) -> None:
    """Same hour, weekday and day of month, 28 years apart: the same probability."""
    then, later = "2012-03-01T19:00", "2040-03-01T19:00"  # both Thursdays
    assert datetime.fromisoformat(then).weekday() == datetime.fromisoformat(later).weekday()
    beyond = "2068-03-01T19:00"  # 28 more years: the calendar repeats, another Thursday
    for name, pipeline in fitted.items():
        a, b, c = predict_proba(pipeline, [_at(then), _at(later), _at(beyond)])
        if TIMESTAMP in read_columns(pipeline):
            # reads the date itself (trees, and a clipped linear term): past the data, a
            # request scores as at the data's end, however far past
            assert b == pytest.approx(c, abs=1e-12), name
        else:
            assert a == pytest.approx(b, abs=1e-12) and b == pytest.approx(c, abs=1e-12), name


def test_requester_numbers_are_clipped_to_the_training_range(fitted) -> None:
    pipeline = fitted["tfidf-meta-logreg"]
    _, high = pipeline.input_ranges_[AGE]
    at_max, far = predict_proba(
        pipeline, [_at("2012-03-01T19:00", **{AGE: high}), _at("2012-03-01T19:00", **{AGE: 1e9})]
    )
    assert at_max == pytest.approx(far, abs=1e-12)


def test_out_of_range_inputs_are_reported_per_feature(fitted) -> None:
    pipeline = fitted["tfidf-meta-logreg"]
    low, high = pipeline.input_ranges_[AGE]
    inside, outside = score(
        pipeline, [_at("2012-03-01T19:00", **{AGE: low}), _at("2012-03-01T19:00", **{AGE: 1e6})]
    )
    assert AGE not in [w["feature"] for w in inside["warnings"]]
    (warning,) = [w for w in outside["warnings"] if w["feature"] == AGE]
    assert warning == {"feature": AGE, "value": 1e6, "min": low, "max": high}
    assert AGE not in outside["unknown"]
    assert "requester_number_of_posts_at_request" in outside["unknown"]  # blank: not 0
    assert outside["defaults"] == {}
    # a text-only recipe reads no requester numbers: no unknowns, no warnings
    (text_only,) = score(fitted["tfidf-logreg"], [_at("2012-03-01T19:00", **{AGE: 1e6})])
    assert text_only["warnings"] == [] and text_only["unknown"] == []


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_the_explanation_adds_up_to_the_score(fitted, name: str) -> None:
    record = _at("2013-06-01T03:00", **{AGE: 300, "requester_number_of_posts_at_request": 4})
    (scored,) = score(fitted[name], [record])
    probability = scored["probability"]
    explained = explain(fitted[name], record)
    assert explained["method"].startswith("shap")
    total = explained["base"] + sum(c["value"] for c in explained["contributions"])
    assert total == pytest.approx(math.log(probability / (1 - probability)), abs=1e-6)
    groups = [c["group"] for c in explained["contributions"]]
    assert "words (title and text)" in groups
    if get_recipe(name).name != "nb-bow" and name != "tfidf-logreg":
        assert "Account age (days)" in groups
        assert "request time (hour, weekday, day of month)" in groups


def test_the_default_class_weight_keeps_probabilities_calibrated() -> None:
    for name in ("tfidf-logreg", "tfidf-meta-logreg"):
        assert get_recipe(name).resolve({})["class_weight"] == "none"


@pytest.mark.parametrize(
    "text",
    ["yesterday", "2013-13-01", "²", "9" * 40, "2013-05-04T25:00", "", "1e400"],
)
def test_a_bad_request_time_is_refused(text: str) -> None:
    from core.errors import BadInput

    with pytest.raises(BadInput, match="request time"):
        parse_request_time(text)


def test_request_time_forms() -> None:
    assert parse_request_time("1356998400") == 1356998400.0
    assert parse_request_time("2013-01-01") == 1356998400.0
    assert parse_request_time("2013-01-01T01:00+01:00") == 1356998400.0
    assert datetime.fromtimestamp(parse_request_time("2013-01-01T00:00"), UTC).year == 2013


def test_cli_predict_reports_warnings_defaults_and_refuses_bad_options(lab: Path) -> None:
    request = builds.TrainRequest(recipe="tfidf-meta-logreg", backend="local", force=True)
    row, _ = builds.train(request, Registry())
    assert row.status == "ready", row.error
    base = ["predict", str(row.version), "--title", TITLE, "--text", TEXT]
    done = run_cli(*base, "--time", "2012-03-01T19:00", "--meta", f"{AGE}=1000000", "--json")
    assert done.returncode == 0, done.stderr
    (prediction,) = json.loads(done.stdout)["predictions"]
    assert 0.0 < prediction["probability"] < 1.0
    assert [w["feature"] for w in prediction["warnings"]] == [AGE]
    assert "unix_timestamp_of_request_utc" not in prediction["defaults"]
    assert "requester_number_of_posts_at_request" in prediction["unknown"]

    text = run_cli(*base)
    assert text.returncode == 0, text.stderr
    assert (
        "defaults used for typed:" in text.stdout
        and "unix_timestamp_of_request_utc=now" in text.stdout
    )

    for bad in (["--time", "soon"], ["--meta", "karma=5"], ["--meta", f"{AGE}=lots"]):
        refused = run_cli(*base, *bad)
        assert refused.returncode == 2, (bad, refused.stderr)
        assert refused.stderr.startswith("error:") and "Traceback" not in refused.stderr


def test_real_data_gives_an_ordinary_request_today_a_sensible_probability(
    lab: Path, shared_data: Path
) -> None:
    request = builds.TrainRequest(
        recipe="tfidf-meta-logreg", backend="local", data_path=shared_data, force=True
    )
    row, _ = builds.train(request, Registry())
    assert row.status == "ready", row.error
    done = run_cli("predict", str(row.version), "--title", TITLE, "--text", TEXT, "--json")
    assert done.returncode == 0, done.stderr
    (prediction,) = json.loads(done.stdout)["predictions"]
    assert 0.05 < prediction["probability"] < 0.95, prediction
    assert all(w["feature"] != "unix_timestamp_of_request_utc" for w in prediction["warnings"])
