"""core.charts builds Altair charts; the pages draw their Vega-Lite specs, cached per
arguments (ui.common.chart_spec). Every chart must be valid Vega-Lite, with its data where
its layers look for it, and the cached spec must be the chart's own."""

from __future__ import annotations

import json
from typing import Any

import pytest

from core import charts

MATRIX = {"tn": 50, "fp": 10, "fn": 20, "tp": 30}
CURVE = {
    "roc": {"fpr": [0.0, 0.2, 1.0], "tpr": [0.0, 0.6, 1.0]},
    "pr": {"recall": [0.0, 0.5, 1.0], "precision": [1.0, 0.7, 0.4]},
}
AUC_ROWS = [
    {
        "version": 1,
        "roc_auc": 0.6,
        "recipe": "nb",
        "kind": "held-out split",
        "evaluated": "split",
        "data": "abc",
    },
    {
        "version": 3,
        "roc_auc": 0.7,
        "recipe": "lr",
        "kind": charts.EVALUATION_KINDS[2],
        "evaluated": "refit of v1",
        "data": "abc",
    },
]
SPECS = {
    "confusion": lambda: charts.confusion_heatmap("v1", MATRIX),
    "confusion, normalised": lambda: charts.confusion_heatmap("v1", MATRIX, True, "at 0.3"),
    "rates": lambda: charts.rates_bars(
        [{"version": "v1", "fpr": 0.1, "fnr": 0.2}, {"version": "v2", "fpr": 0.2, "fnr": None}]
    ),
    "roc": lambda: charts.curve_overlay({"v1": CURVE, "v2": CURVE}, "roc"),
    "pr": lambda: charts.curve_overlay({"v1": CURVE}, "pr"),
    "probability": lambda: charts.probability_bars([{"version": "v1", "probability": 0.3}]),
    "contributions": lambda: charts.contribution_bars(
        [{"word": "a", "weight": 0.5}, {"word": "b", "weight": -0.2}]
    ),
    "words": lambda: charts.word_bars(
        {
            "words": [{"word": "pizza", "value": 0.4}],
            "other": -0.1,
            "shown": 1,
            "count": 9,
            "total": 0.3,
        }
    ),
    "auc history": lambda: charts.auc_history(AUC_ROWS),
    "calibration": lambda: charts.calibration_overlay(
        {"v1": [{"predicted": 0.1, "observed": 0.2}, {"predicted": 0.5, "observed": 0.4}]}
    ),
    "calibration, empty": lambda: charts.calibration_overlay({}),
    "sweep": lambda: charts.sweep_chart(
        [
            {"version": 1, "alpha": 0.1, "ngram": "1", "ROC AUC": 0.6},
            {"version": 2, "alpha": 1.0, "ngram": "2", "ROC AUC": 0.7},
        ],
        ["alpha", "ngram"],
    ),
}


def data_names(node: Any) -> set[str]:
    if isinstance(node, dict):
        own = {node["data"]["name"]} if isinstance(node.get("data"), dict) else set()
        return own.union(*(data_names(v) for k, v in node.items() if k != "datasets"))
    if isinstance(node, list):
        return set().union(*(data_names(v) for v in node))
    return set()


@pytest.mark.parametrize("name", list(SPECS))
def test_chart_specs_are_valid_vega_lite(name: str) -> None:
    from altair.vegalite.v6.schema import SCHEMA_URL

    spec = SPECS[name]().to_dict()  # Altair validates it against the Vega-Lite schema
    assert spec["$schema"] == SCHEMA_URL
    assert data_names(spec) <= set(spec.get("datasets", {})), "a layer reads missing data"
    json.dumps(spec)  # plain JSON: what the page sends


def test_every_chart_function_is_validated_here() -> None:
    """The pages draw specs unvalidated (ui.common.chart_spec), so every chart function of
    core.charts must be called by one of SPECS, whose specs Altair validates above."""
    import inspect

    called = {name for spec in SPECS.values() for name in spec.__code__.co_names}
    functions = {
        name
        for name, fn in inspect.getmembers(charts, inspect.isfunction)
        if fn.__module__ == charts.__name__
        and str(fn.__annotations__.get("return")).startswith(("alt.", "Any"))
    }
    assert "confusion_heatmap" in functions and "sweep_chart" in functions
    assert functions <= called, f"not validated by a test: {sorted(functions - called)}"


def test_the_cached_spec_is_the_charts_own() -> None:
    from ui.common import chart_spec

    args = ("v1", MATRIX, True, "at 0.3")
    first = chart_spec("confusion_heatmap", *args)
    assert first == charts.confusion_heatmap(*args).to_dict()
    assert chart_spec("confusion_heatmap", *args) == first
    assert chart_spec("confusion_heatmap", "v1", MATRIX, False, "at 0.3") != first
