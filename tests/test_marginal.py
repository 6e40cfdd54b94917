"""The fast marginal path (`core.marginal`: each column transformer run once per request,
background blocks cached) gives the same probabilities as scoring every masked row, for
every built-in recipe and a team recipe file, with blank, partial and full requester
fields, one at a time and in a batch."""

from __future__ import annotations

from typing import Any

import pytest

from core.dataset import REQUESTER_COUNTS, load_dataset
from core.explain import explainer_for, marginal_proba
from core.predict import make_request, request_meta, score
from core.train import fit_and_evaluate
from tests.conftest import SAMPLE

RECIPES = ["narrative-vote", "tfidf-meta-logreg", "tfidf-logreg", "nb-bow", "sgd-words"]
TITLE = "[Request] Broke student in Ohio, payday is Friday"
TEXT = "Lost my job last week and the fridge is empty. I will pay it forward, promise!"
WHEN = 1_370_000_000.0


def _requests() -> list[dict[str, Any]]:
    blank = make_request(TITLE, TEXT, **request_meta(None, {}))
    timed = make_request(TITLE, "", **request_meta(WHEN, {}))
    partial = make_request(
        TITLE,
        TEXT,
        **request_meta(
            WHEN,
            {
                "requester_account_age_in_days_at_request": 400.0,
                "requester_upvotes_minus_downvotes_at_request": -3.0,
            },
        ),
    )
    full = make_request(
        "Pizza for a family of four?",
        TEXT + " My kids would love it.",
        **request_meta(WHEN, {f: float(7 * i + 1) for i, f in enumerate(REQUESTER_COUNTS)}),
    )
    return [blank, timed, partial, full]


@pytest.fixture(scope="module", params=RECIPES)
def fitted(request) -> tuple[str, Any]:
    dataset = load_dataset(SAMPLE)
    result = fit_and_evaluate(dataset, request.param, {}, 42, 0.2, "fixed:0.5", log=lambda _: None)
    return request.param, result.pipeline


def test_the_fast_path_equals_scoring_every_masked_row(fitted) -> None:
    name, pipeline = fitted
    assert explainer_for(pipeline).fast is not None, f"{name}: no fast path"
    records = _requests()
    for one in records:  # one at a time
        (fast,) = marginal_proba(pipeline, [one])
        (naive,) = marginal_proba(pipeline, [one], naive=True)
        assert fast == pytest.approx(naive, abs=1e-12, rel=0), (name, one)
    batch = [*records, *records[::-1], records[2]]  # mixed kinds, repeats, in one call
    fast = marginal_proba(pipeline, batch)
    naive = marginal_proba(pipeline, batch, naive=True)
    assert fast == pytest.approx(naive, abs=1e-12, rel=0), name
    scored = score(pipeline, batch)
    assert [s["probability"] for s in scored] == fast


def test_a_model_of_another_shape_keeps_the_naive_path() -> None:
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from core.marginal import fast_model

    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0]})
    features = ColumnTransformer([("x", "passthrough", ["a"])], transformer_weights={"x": 2.0})
    weighted = Pipeline([("features", features), ("classifier", LogisticRegression())])
    weighted.fit(frame, [0, 1, 0, 1])
    assert fast_model(weighted, frame) is None
    assert fast_model(LogisticRegression().fit(frame, [0, 1, 0, 1]), frame) is None
    assert fast_model(object(), None) is None
