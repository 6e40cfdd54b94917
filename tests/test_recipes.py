"""Recipes: sklearn Pipelines with typed, range-checked parameters, and the leak guard."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import Pipeline

from core.dataset import LABEL, REQUEST_TIME_NUMERIC, TEXT, TITLE, leak_reason, refuse_leaky
from core.errors import BadInput
from core.features import to_frame
from core.recipes import RECIPES, REQUESTER_COUNTS, Param, get_recipe
from tests.conftest import SAMPLE
from tests.helpers import run_cli

NAMES = ("nb-bow", "tfidf-logreg", "tfidf-meta-logreg")
CLASSIFIERS = {
    "nb-bow": MultinomialNB,
    "tfidf-logreg": LogisticRegression,
    "tfidf-meta-logreg": LogisticRegression,
}
EXACT_LEAKS = (
    "giver_username_if_known",
    "requester_user_flair",
    "post_was_edited",
    "request_text",
    LABEL,
)


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return json.loads(SAMPLE.read_text())


def retrieval_fields(records: list[dict]) -> list[str]:
    return sorted(k for k in records[0] if k.endswith("_at_retrieval"))


# --- pipelines and defaults ----------------------------------------------------------------
def test_the_three_recipes_are_registered():
    assert set(NAMES) <= set(RECIPES)


@pytest.mark.parametrize("name", NAMES)
def test_defaults_resolve_to_a_pipeline(name):
    recipe = get_recipe(name)
    resolved = recipe.resolve({})
    assert set(resolved) == {p.name for p in recipe.params}
    for param in recipe.params:
        assert resolved[param.name] == param.parse(param.default)
    pipeline = recipe.pipeline(resolved)
    assert isinstance(pipeline, Pipeline)
    assert isinstance(pipeline.steps[-1][1], CLASSIFIERS[name])


@pytest.mark.parametrize("name", NAMES)
def test_every_recipe_fits_and_scores_the_sample(name, records):
    recipe = get_recipe(name)
    pipeline = recipe.pipeline(recipe.resolve({}))
    frame = to_frame(records)
    y = np.array([r[LABEL] for r in records])
    pipeline.fit(frame, y)
    proba = pipeline.predict_proba(frame)[:, 1]
    assert proba.shape == (len(records),)
    assert np.all((proba >= 0) & (proba <= 1))
    # fitted on the sample, it ranks the sample's positives above its negatives
    assert proba[y].mean() > proba[~y].mean()


def test_given_params_reach_the_estimators():
    nb = get_recipe("nb-bow")
    pipe = nb.pipeline(nb.resolve({"alpha": "0.25", "fit_prior": "false", "min_df": "3"}))
    clf = pipe.named_steps["classifier"]
    assert clf.alpha == 0.25 and clf.fit_prior is False
    vec = pipe.named_steps["features"].transformers[0][1]
    assert vec.min_df == 3

    lr = get_recipe("tfidf-logreg")
    pipe = lr.pipeline(lr.resolve({"C": 2, "class_weight": "balanced", "max_iter": 77}))
    clf = pipe.named_steps["classifier"]
    assert (clf.C, clf.class_weight, clf.max_iter) == (2.0, "balanced", 77)
    default_clf = lr.pipeline(lr.resolve({})).named_steps["classifier"]
    assert default_clf.class_weight is None  # calibrated probabilities by default


def test_meta_fields_choose_the_numeric_columns():
    meta = get_recipe("tfidf-meta-logreg")
    field = "requester_number_of_posts_at_request"
    resolved = meta.resolve({"meta_fields": f" {field} , "})
    assert resolved["meta_fields"] == field
    columns = {
        n: cols for n, _, cols in meta.pipeline(resolved).named_steps["features"].transformers
    }
    assert columns["counts"] == [field, "text_length"]
    default = meta.resolve({})["meta_fields"].split(",")
    assert default == list(REQUESTER_COUNTS)


# --- ranges and types ----------------------------------------------------------------------
def _ranged() -> list[tuple[str, Param]]:
    return [
        (r.name, p)
        for r in RECIPES.values()
        for p in r.params
        if p.low is not None and p.high is not None
    ]


@pytest.mark.parametrize(
    ("recipe", "param"), _ranged(), ids=lambda x: x if isinstance(x, str) else x.name
)
def test_ranges_are_enforced(recipe, param):
    recipe_obj = get_recipe(recipe)
    low, high = param.kind(param.low), param.kind(param.high)
    assert recipe_obj.resolve({param.name: low})[param.name] == low
    assert recipe_obj.resolve({param.name: str(high)})[param.name] == high
    below = low - 1 if param.kind is int or low == 0 else low / 2
    above = high + 1 if param.kind is int else high * 2
    for bad in (below, above):
        with pytest.raises(BadInput, match=rf"parameter '{param.name}'.*outside the valid range"):
            recipe_obj.resolve({param.name: bad})


@pytest.mark.parametrize(
    ("recipe", "name", "value"),
    [
        ("nb-bow", "alpha", "abc"),
        ("nb-bow", "alpha", "nan"),
        ("nb-bow", "alpha", "inf"),
        ("nb-bow", "alpha", True),
        ("nb-bow", "fit_prior", "maybe"),
        ("nb-bow", "fit_prior", 2),
        ("nb-bow", "min_df", "2.5"),
        ("nb-bow", "min_df", 2.5),
        ("tfidf-logreg", "C", "abc"),
        ("tfidf-logreg", "C", None),
        ("tfidf-logreg", "max_iter", "many"),
        ("tfidf-logreg", "sublinear_tf", "yes please"),
        ("tfidf-meta-logreg", "meta_fields", 3),
    ],
)
def test_wrong_types_are_refused(recipe, name, value):
    with pytest.raises(BadInput, match=rf"parameter '{name}': expected"):
        get_recipe(recipe).resolve({name: value})


def test_strings_from_the_command_line_are_coerced():
    resolved = get_recipe("tfidf-logreg").resolve(
        {"C": "0.5", "min_df": "4", "sublinear_tf": "False", "max_features": "1000"}
    )
    assert resolved["C"] == 0.5 and isinstance(resolved["C"], float)
    assert resolved["min_df"] == 4 and isinstance(resolved["min_df"], int)
    assert resolved["sublinear_tf"] is False
    assert resolved["max_features"] == 1000


def test_choices_are_enforced():
    with pytest.raises(BadInput, match=r"parameter 'class_weight'.*not one of"):
        get_recipe("tfidf-logreg").resolve({"class_weight": "heavy"})


def test_unknown_parameter_names_the_known_ones():
    with pytest.raises(BadInput, match="no parameter 'gamma'") as info:
        get_recipe("nb-bow").resolve({"gamma": 1})
    assert "alpha" in str(info.value)


def test_unknown_recipe_lists_the_known_ones():
    with pytest.raises(BadInput, match="unknown recipe 'svm'") as info:
        get_recipe("svm")
    for name in NAMES:
        assert name in str(info.value)


def test_recipes_cli_describes_every_parameter():
    result = run_cli("recipes", "--json")
    assert result.returncode == 0, result.stderr
    listed = {r["name"]: r for r in json.loads(result.stdout)}
    assert {n for n, r in listed.items() if r["kind"] == "built-in"} == set(RECIPES)
    for name, recipe in RECIPES.items():
        params = {p["name"]: p for p in listed[name]["params"]}
        assert set(params) == {p.name for p in recipe.params}
        for p in recipe.params:
            assert params[p.name]["default"] == p.default
            assert params[p.name]["type"] == p.kind.__name__
            assert params[p.name]["low"] == p.low and params[p.name]["high"] == p.high


# --- leak guard ----------------------------------------------------------------------------
def test_leak_reason_flags_post_outcome_fields(records):
    fields = [*EXACT_LEAKS, *retrieval_fields(records)]
    assert len(fields) > len(EXACT_LEAKS)
    for field in fields:
        assert leak_reason(field), field


def test_leak_reason_allows_request_time_fields():
    for field in (*REQUEST_TIME_NUMERIC, TITLE, TEXT, "requester_subreddits_at_request"):
        assert leak_reason(field) is None, field


def test_refuse_leaky_names_the_first_leaky_field():
    refuse_leaky(list(REQUEST_TIME_NUMERIC), "ctx")  # clean: no error
    with pytest.raises(BadInput) as info:
        refuse_leaky(
            ["requester_number_of_posts_at_request", "post_was_edited", "request_text"], "ctx"
        )
    message = str(info.value)
    assert message.startswith("ctx: field 'post_was_edited' is refused")
    assert leak_reason("post_was_edited") in message
    assert "'request_text'" not in message


def test_no_recipe_reads_a_leaky_field():
    for recipe in RECIPES.values():
        assert recipe.input_fields
        assert [f for f in recipe.input_fields if leak_reason(f)] == []


@pytest.mark.parametrize(
    "value",
    [
        "requester_number_of_comments_at_retrieval",
        "requester_number_of_posts_at_request,requester_user_flair",
        "giver_username_if_known",
    ],
)
def test_meta_fields_refuse_leaky_fields(value):
    with pytest.raises(BadInput, match=r"parameter 'meta_fields'.*refused as a feature") as info:
        get_recipe("tfidf-meta-logreg").resolve({"meta_fields": value})
    leaky = next(f.strip() for f in value.split(",") if leak_reason(f.strip()))
    assert leak_reason(leaky) in str(info.value)


@pytest.mark.parametrize(
    ("value", "message"),
    [("", "at least one"), (" , ", "at least one"), ("requester_username", "unknown field")],
)
def test_meta_fields_must_name_known_request_time_fields(value, message):
    with pytest.raises(BadInput, match=message):
        get_recipe("tfidf-meta-logreg").resolve({"meta_fields": value})


def test_model_input_has_no_leaky_column(records):
    frame = to_frame(records)
    assert [c for c in frame.columns if leak_reason(c)] == []


@pytest.mark.parametrize("name", NAMES)
def test_predictions_ignore_leaky_fields(name, records):
    """Scrambling every post-outcome field changes nothing a fitted pipeline predicts."""
    recipe = get_recipe(name)
    pipeline = recipe.pipeline(recipe.resolve({}))
    y = np.array([r[LABEL] for r in records])
    pipeline.fit(to_frame(records), y)
    scrambled = copy.deepcopy(records)
    rng = np.random.default_rng(0)
    for record in scrambled:
        for field in retrieval_fields(records):
            record[field] = float(rng.integers(0, 10_000))
        record["giver_username_if_known"] = "generous_giver"
        record["requester_user_flair"] = "shroom"
        record["post_was_edited"] = True
        record["request_text"] = record["request_text_edit_aware"] + " EDIT: thank you!!"
        record[LABEL] = not record[LABEL]
    before = pipeline.predict_proba(to_frame(records))[:, 1]
    after = pipeline.predict_proba(to_frame(scrambled))[:, 1]
    assert np.array_equal(before, after)
    # ... while the request-time text does matter
    changed = copy.deepcopy(records)
    for record in changed:
        record["request_text_edit_aware"] = "pizza " * 3
    assert not np.array_equal(before, pipeline.predict_proba(to_frame(changed))[:, 1])
