"""Charts for the dashboard: pure functions from registry data to Vega-Lite specs.

Each spec is a plain dict, the one Altair would build (Vega-Lite 6), with its data as
DataFrames under `datasets` (Streamlit sends them as Arrow). Building them by hand skips
Altair's schema validation and channel matching, ~50 ms a chart on every page run; the
tests validate the specs against the Vega-Lite schema instead.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

Spec = dict[str, Any]
SCHEMA = "https://vega.github.io/schema/vega-lite/v6.4.1.json"
CELLS = (
    ("actual: no pizza", "predicted: no pizza", "tn"),
    ("actual: no pizza", "predicted: pizza", "fp"),
    ("actual: pizza", "predicted: no pizza", "fn"),
    ("actual: pizza", "predicted: pizza", "tp"),
)
QUANTITATIVE = {"floating", "mixed-integer-float", "integer", "mixed-integer", "complex"}
TEMPORAL = {"datetime", "datetime64", "timedelta", "timedelta64", "date", "time", "period"}


# --- spec building blocks ----------------------------------------------------------------
def field_type(values: pd.Series) -> str:
    """The Vega-Lite type Altair infers for a column given without one."""
    kind = pd.api.types.infer_dtype(values, skipna=False)
    if kind in QUANTITATIVE:
        return "quantitative"
    if kind == "categorical" and values.cat.ordered:
        return "ordinal"
    return "temporal" if kind in TEMPORAL else "nominal"


def field(frame: pd.DataFrame, name: str) -> dict[str, Any]:
    """An encoding of column `name` of `frame`, typed from its values (Altair's shorthand)."""
    return {"field": name, "type": field_type(frame[name])}


def quantitative(name: str, **extra: Any) -> dict[str, Any]:
    return {"field": name, "type": "quantitative", **extra}


def nominal(name: str, **extra: Any) -> dict[str, Any]:
    return {"field": name, "type": "nominal", **extra}


def condition(test: str, when: Any, otherwise: Any) -> dict[str, Any]:
    return {"condition": {"test": test, "value": when}, "value": otherwise}


def spec(frame: pd.DataFrame, **parts: Any) -> Spec:
    """A top-level spec drawing `frame` (its only dataset)."""
    return {"$schema": SCHEMA, "data": {"name": "data"}, **parts, "datasets": {"data": frame}}


def diagonal(x: str, y: str) -> tuple[dict[str, Any], pd.DataFrame]:
    """The dashed grey y = x line layered on ROC and calibration charts, and its data."""
    layer = {
        "data": {"name": "diagonal"},
        "mark": {"type": "line", "color": "gray", "strokeDash": [4, 4]},
        "encoding": {"x": quantitative(x), "y": quantitative(y)},
    }
    return layer, pd.DataFrame({x: [0, 1], y: [0, 1]})


def with_diagonal(frame: pd.DataFrame, lines: dict[str, Any], x: str, y: str, **parts) -> Spec:
    """`lines` over `frame` with the diagonal, as a two-layer spec."""
    layer, line = diagonal(x, y)
    return {
        "$schema": SCHEMA,
        "layer": [{"data": {"name": "data"}, **lines}, layer],
        **parts,
        "datasets": {"data": frame, "diagonal": line},
    }


# --- the charts --------------------------------------------------------------------------
def confusion_frame(label: str, matrix: dict[str, int], normalize: bool) -> pd.DataFrame:
    """Long-form confusion matrix; `normalize` divides each actual-class row by its total."""
    rows = []
    for actual, predicted, key in CELLS:
        total = sum(matrix[k] for a, _, k in CELLS if a == actual) or 1
        count = matrix[key]
        rows.append(
            {
                "version": label,
                "actual": actual,
                "predicted": predicted,
                "cell": key,
                "count": count,
                "share": count / total,
                "value": count / total if normalize else count,
            }
        )
    return pd.DataFrame(rows)


def confusion_heatmap(
    label: str, matrix: dict[str, int], normalize: bool = False, subtitle: str | None = None
) -> Spec:
    """One version's confusion matrix as a heatmap with the numbers written in; `subtitle`
    says at which threshold its decisions were taken."""
    frame = confusion_frame(label, matrix, normalize)
    axes = {
        "x": nominal(
            "predicted",
            sort=["predicted: no pizza", "predicted: pizza"],
            title=None,
            axis={"labelAngle": 0, "orient": "top"},
        ),
        "y": nominal("actual", sort=["actual: no pizza", "actual: pizza"], title=None),
    }
    domain = [0, 1] if normalize else [0, int(frame["count"].max())]
    heat = {
        **axes,
        "color": quantitative("value", scale={"scheme": "blues", "domain": domain}, legend=None),
        "tooltip": [
            field(frame, "cell"),
            field(frame, "count"),
            quantitative("share", format=".1%", title="row share"),
        ],
    }
    text = {
        **axes,
        "text": quantitative("value", format=".0%" if normalize else "d"),
        "color": condition("(datum.share > 0.5)", "white", "black"),
    }
    return spec(
        frame,
        layer=[
            {"mark": {"type": "rect"}, "encoding": heat},
            {"mark": {"type": "text", "fontSize": 16}, "encoding": text},
        ],
        title={"text": label, "subtitle": subtitle} if subtitle else label,
        height=200,
    )


def rates_bars(rows: list[dict[str, Any]]) -> Spec:
    """FPR and FNR per version as grouped bars (rows: version label, fpr, fnr)."""
    frame = pd.DataFrame(rows).melt(
        id_vars="version", value_vars=["fpr", "fnr"], var_name="rate", value_name="value"
    )
    frame["rate"] = frame["rate"].map({"fpr": "FPR", "fnr": "FNR"})
    encoding = {
        "x": nominal("rate", title=None, axis={"labelAngle": 0}),
        "xOffset": nominal("version"),
        "y": quantitative("value", title="rate (lower is better)", scale={"domain": [0, 1]}),
        "color": nominal("version"),
        "tooltip": [
            field(frame, "version"),
            field(frame, "rate"),
            quantitative("value", format=".3f"),
        ],
    }
    return spec(frame, mark={"type": "bar"}, encoding=encoding, height=260)


CURVE_TITLES = {
    "fpr": "false positive rate",
    "tpr": "true positive rate",
    "recall": "recall",
    "precision": "precision",
}


def curve_overlay(curves: dict[str, dict[str, Any]], kind: str) -> Spec:
    """ROC (`kind="roc"`) or precision-recall (`"pr"`) curves of several versions, overlaid."""
    x_key, y_key = ("fpr", "tpr") if kind == "roc" else ("recall", "precision")
    rows = []
    for label, curve in curves.items():
        points = curve[kind]
        rows += [
            {"version": label, x_key: x, y_key: y, "order": i}
            for i, (x, y) in enumerate(zip(points[x_key], points[y_key], strict=True))
        ]
    frame = pd.DataFrame(rows)
    lines = {
        "mark": {"type": "line"},
        "encoding": {
            "x": quantitative(x_key, title=CURVE_TITLES[x_key], scale={"domain": [0, 1]}),
            "y": quantitative(y_key, title=CURVE_TITLES[y_key], scale={"domain": [0, 1]}),
            "color": nominal("version"),
            "order": quantitative("order"),
            "tooltip": [
                field(frame, "version"),
                quantitative(x_key, format=".3f"),
                quantitative(y_key, format=".3f"),
            ],
        },
    }
    if kind == "roc":
        return with_diagonal(frame, lines, "fpr", "tpr", title="ROC curve", height=300)
    return spec(frame, **lines, title="Precision-recall curve", height=300)


def probability_bars(rows: list[dict[str, Any]]) -> Spec:
    """Predicted success probability per version (rows: version label, probability)."""
    frame = pd.DataFrame(rows)
    encoding = {
        # the whole label (version, recipe, aliases, dataset): never cut short with "…"
        "y": nominal("version", title=None, sort=None, axis={"labelLimit": 0}),
        "x": quantitative(
            "probability",
            title="predicted probability of getting a pizza",
            scale={"domain": [0, 1]},
        ),
        "tooltip": [field(frame, "version"), quantitative("probability", format=".1%")],
    }
    colour = {"scheme": "redyellowgreen", "domain": [0, 1]}
    bars = {**encoding, "color": quantitative("probability", scale=colour, legend=None)}
    text = {
        **encoding,
        "text": quantitative("probability", format=".1%"),
        "color": {"value": "black"},
    }
    return spec(
        frame,
        layer=[
            {"mark": {"type": "bar"}, "encoding": bars},
            {"mark": {"type": "text", "align": "left", "dx": 4}, "encoding": text},
        ],
        height=max(60, 38 * len(frame)),
    )


def contribution_bars(
    words: list[dict[str, Any]], title: str | None = None, keep_order: bool = False
) -> Spec:
    """Words or feature groups that pushed the score up (green) or down (red), by log-odds
    contribution; sorted by it unless `keep_order` (rows shown as given)."""
    frame = pd.DataFrame(words)
    frame["direction"] = frame["weight"].map(lambda w: "pushes up" if w > 0 else "pushes down")
    encoding = {
        # every bar keeps its label (Vega hides every other one when they look crowded)
        "y": nominal(
            "word",
            sort=list(frame["word"]) if keep_order else "-x",
            title=None,
            axis={"labelLimit": 320, "labelOverlap": False},
        ),
        "x": quantitative("weight", title="contribution to log-odds"),
        "color": nominal(
            "direction",
            scale={"domain": ["pushes up", "pushes down"], "range": ["#2e7d32", "#c62828"]},
        ),
        "tooltip": [field(frame, "word"), quantitative("weight", format="+.3f")],
    }
    # + the x axis and its title, and the chart's title
    height = max(80, 24 * len(frame) + 60 + (30 if title else 0))
    titled = {"title": title} if title else {}
    return spec(frame, mark={"type": "bar"}, encoding=encoding, height=height, **titled)


EVALUATION_KINDS = ["held-out split", "cross-validation", "refit (its parent's score)"]
OTHER_WORDS = "all other words"


def word_bars(split: dict[str, Any]) -> Spec:
    """The words group split into its strongest words and "all other words": the bars add
    up to the group's contribution, and the title says how many words are shown."""
    rows = [{"word": w["word"], "weight": w["value"]} for w in split["words"]]
    rows.append({"word": OTHER_WORDS, "weight": split["other"]})
    title = (
        f"{split['shown']} of {split['count']} words shown; with all other words they add "
        f"up to the words group's {split['total']:+.3f}"
    )
    return contribution_bars(rows, title=title, keep_order=True)


def auc_history(rows: list[dict[str, Any]]) -> Spec:
    """ROC AUC of ready versions over version number, coloured by recipe, shaped by how
    each was evaluated (rows carry `kind`, one of EVALUATION_KINDS): a refit is drawn
    hollow, as its score is its parent's, not a new result."""
    frame = pd.DataFrame(rows)
    # from the first version shown to the last, half a step of room each side
    first, last = frame["version"].min() - 0.5, frame["version"].max() + 0.5
    encoding = {
        "x": quantitative(
            "version",
            title="version",
            axis={"tickMinStep": 1, "format": "d"},
            scale={"domain": [float(first), float(last)], "nice": False, "zero": False},
        ),
        "y": quantitative("roc_auc", title="ROC AUC", scale={"zero": False}),
        "color": nominal("recipe"),
        "shape": nominal("kind", title="evaluated by", scale={"domain": EVALUATION_KINDS}),
        "fillOpacity": condition(f"(datum.kind === {json.dumps(EVALUATION_KINDS[2])})", 0, 1),
        "tooltip": [
            field(frame, "version"),
            field(frame, "recipe"),
            quantitative("roc_auc", format=".4f"),
            nominal("evaluated", title="evaluated"),
            field(frame, "data"),
        ],
    }
    mark = {"type": "point", "size": 90, "filled": True}
    return spec(frame, mark=mark, encoding=encoding, height=220)


def calibration_overlay(points: dict[str, list[dict[str, float]]]) -> Spec:
    """Reliability diagrams of several versions: on the diagonal, a predicted 30% means
    that 30% of such requests got a pizza."""
    rows = [
        {"version": label, "order": i, **point}
        for label, version_points in points.items()
        for i, point in enumerate(version_points)
    ]
    frame = pd.DataFrame(rows, columns=["version", "order", "predicted", "observed"])
    axis = {"domain": [0, 1]}
    lines = {
        "mark": {"type": "line", "point": True},
        "encoding": {
            "x": quantitative("predicted", title="mean predicted probability", scale=axis),
            "y": quantitative("observed", title="share that got a pizza", scale=axis),
            "color": nominal("version"),
            "order": quantitative("order"),
            "tooltip": [
                field(frame, "version"),
                quantitative("predicted", format=".3f"),
                quantitative("observed", format=".3f"),
            ],
        },
    }
    return with_diagonal(frame, lines, "predicted", "observed", title="Calibration", height=300)


def sweep_panel(frame: pd.DataFrame, key: str, keys: list[str], metric: str) -> dict[str, Any]:
    """One swept parameter's small scatter: a log x axis where a numeric parameter spans
    10x or more."""
    values = pd.to_numeric(frame[key], errors="coerce")
    numeric = values.notna().all() and not frame[key].map(type).eq(bool).any()
    log = bool(numeric and (values > 0).all() and values.max() >= 10 * values.min())
    x = (
        quantitative(key, scale={"type": "log" if log else "linear", "zero": False})
        if numeric
        else nominal(key, axis={"labelAngle": 0})
    )
    tooltip = [field(frame, name) for name in ("version", *keys)]
    return {
        "mark": {"type": "circle", "size": 80},
        "encoding": {
            "x": x,
            "y": quantitative(metric, scale={"zero": False}),
            "tooltip": [*tooltip, quantitative(metric, format=".4f")],
        },
        "width": 220,
        "height": 200,
        "title": key,
    }


def sweep_chart(rows: list[dict[str, Any]], keys: list[str], metric: str = "ROC AUC") -> Spec:
    """A sweep's metric against each swept parameter, side by side (one small scatter per
    parameter, shared y axis). `rows` hold `version`, each key and `metric`."""
    frame = pd.DataFrame(rows)
    panels = [sweep_panel(frame, key, keys, metric) for key in keys]
    return spec(frame, hconcat=panels, resolve={"scale": {"y": "shared"}})
