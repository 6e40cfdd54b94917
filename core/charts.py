"""Altair charts for the dashboard: pure functions from registry data to chart specs."""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd

CELLS = (
    ("actual: no pizza", "predicted: no pizza", "tn"),
    ("actual: no pizza", "predicted: pizza", "fp"),
    ("actual: pizza", "predicted: no pizza", "fn"),
    ("actual: pizza", "predicted: pizza", "tp"),
)


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
) -> alt.LayerChart:
    """One version's confusion matrix as a heatmap with the numbers written in; `subtitle`
    says at which threshold its decisions were taken."""
    frame = confusion_frame(label, matrix, normalize)
    base = alt.Chart(frame).encode(
        x=alt.X(
            "predicted:N",
            title=None,
            sort=["predicted: no pizza", "predicted: pizza"],
            axis=alt.Axis(labelAngle=0, orient="top"),
        ),
        y=alt.Y("actual:N", title=None, sort=["actual: no pizza", "actual: pizza"]),
    )
    scale = alt.Scale(scheme="blues", domain=[0, 1] if normalize else [0, frame["count"].max()])
    fmt = ".0%" if normalize else "d"
    heat = base.mark_rect().encode(
        color=alt.Color("value:Q", scale=scale, legend=None),
        tooltip=[
            alt.Tooltip("cell:N"),
            alt.Tooltip("count:Q"),
            alt.Tooltip("share:Q", format=".1%", title="row share"),
        ],
    )
    text = base.mark_text(fontSize=16).encode(
        text=alt.Text("value:Q", format=fmt),
        color=alt.ColorValue(
            **alt.condition(alt.datum.share > 0.5, alt.value("white"), alt.value("black"))
        ),
    )
    title = alt.TitleParams(label, subtitle=subtitle) if subtitle else label
    return (heat + text).properties(title=title, height=200)


def rates_bars(rows: list[dict[str, Any]]) -> alt.Chart:
    """FPR and FNR per version as grouped bars (rows: version label, fpr, fnr)."""
    frame = pd.DataFrame(rows).melt(
        id_vars="version", value_vars=["fpr", "fnr"], var_name="rate", value_name="value"
    )
    frame["rate"] = frame["rate"].map({"fpr": "FPR", "fnr": "FNR"})
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("rate:N", title=None, axis=alt.Axis(labelAngle=0)),
            xOffset=alt.XOffset("version:N"),
            y=alt.Y("value:Q", title="rate (lower is better)", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("version:N"),
            tooltip=[
                alt.Tooltip("version:N"),
                alt.Tooltip("rate:N"),
                alt.Tooltip("value:Q", format=".3f"),
            ],
        )
        .properties(height=260)
    )


def curve_overlay(curves: dict[str, dict[str, Any]], kind: str) -> alt.Chart:
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
    titles = {
        "fpr": "false positive rate",
        "tpr": "true positive rate",
        "recall": "recall",
        "precision": "precision",
    }
    lines = (
        alt.Chart(frame)
        .mark_line()
        .encode(
            x=alt.X(f"{x_key}:Q", title=titles[x_key], scale=alt.Scale(domain=[0, 1])),
            y=alt.Y(f"{y_key}:Q", title=titles[y_key], scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("version:N"),
            order=alt.Order("order:Q"),
            tooltip=[
                alt.Tooltip("version:N"),
                alt.Tooltip(f"{x_key}:Q", format=".3f"),
                alt.Tooltip(f"{y_key}:Q", format=".3f"),
            ],
        )
    )
    chart = lines
    if kind == "roc":
        diagonal = (
            alt.Chart(pd.DataFrame({"fpr": [0, 1], "tpr": [0, 1]}))
            .mark_line(strokeDash=[4, 4], color="gray")
            .encode(x=alt.X("fpr:Q"), y=alt.Y("tpr:Q"))
        )
        chart = lines + diagonal
    return chart.properties(
        title="ROC curve" if kind == "roc" else "Precision-recall curve", height=300
    )


def probability_bars(rows: list[dict[str, Any]]) -> alt.LayerChart:
    """Predicted success probability per version (rows: version label, probability)."""
    frame = pd.DataFrame(rows)
    bars = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            # the whole label (version, recipe, aliases, dataset): never cut short with "…"
            y=alt.Y("version:N", title=None, sort=None, axis=alt.Axis(labelLimit=0)),
            x=alt.X(
                "probability:Q",
                title="predicted probability of getting a pizza",
                scale=alt.Scale(domain=[0, 1]),
            ),
            color=alt.Color(
                "probability:Q",
                scale=alt.Scale(scheme="redyellowgreen", domain=[0, 1]),
                legend=None,
            ),
            tooltip=[alt.Tooltip("version:N"), alt.Tooltip("probability:Q", format=".1%")],
        )
    )
    text = bars.mark_text(align="left", dx=4).encode(
        text=alt.Text("probability:Q", format=".1%"), color=alt.ColorValue("black")
    )
    return (bars + text).properties(height=max(60, 38 * len(frame)))


def contribution_bars(
    words: list[dict[str, Any]], title: str | None = None, keep_order: bool = False
) -> alt.Chart:
    """Words or feature groups that pushed the score up (green) or down (red), by log-odds
    contribution; sorted by it unless `keep_order` (rows shown as given)."""
    frame = pd.DataFrame(words)
    frame["direction"] = frame["weight"].map(lambda w: "pushes up" if w > 0 else "pushes down")
    sort = list(frame["word"]) if keep_order else "-x"
    chart = alt.Chart(frame, title=title) if title else alt.Chart(frame)
    return (
        chart.mark_bar()
        .encode(
            # every bar keeps its label (Vega hides every other one when they look crowded)
            y=alt.Y(
                "word:N", sort=sort, title=None, axis=alt.Axis(labelLimit=320, labelOverlap=False)
            ),
            x=alt.X("weight:Q", title="contribution to log-odds"),
            color=alt.Color(
                "direction:N",
                scale=alt.Scale(domain=["pushes up", "pushes down"], range=["#2e7d32", "#c62828"]),
            ),
            tooltip=[alt.Tooltip("word:N"), alt.Tooltip("weight:Q", format="+.3f")],
        )
        # + the x axis and its title, and the chart's title
        .properties(height=max(80, 24 * len(frame) + 60 + (30 if title else 0)))
    )


EVALUATION_KINDS = ["held-out split", "cross-validation", "refit (its parent's score)"]
OTHER_WORDS = "all other words"


def word_bars(split: dict[str, Any]) -> alt.Chart:
    """The words group split into its strongest words and "all other words": the bars add
    up to the group's contribution, and the title says how many words are shown."""
    rows = [{"word": w["word"], "weight": w["value"]} for w in split["words"]]
    rows.append({"word": OTHER_WORDS, "weight": split["other"]})
    title = (
        f"{split['shown']} of {split['count']} words shown; with all other words they add "
        f"up to the words group's {split['total']:+.3f}"
    )
    return contribution_bars(rows, title=title, keep_order=True)


def auc_history(rows: list[dict[str, Any]]) -> alt.Chart:
    """ROC AUC of ready versions over version number, coloured by recipe, shaped by how
    each was evaluated (rows carry `kind`, one of EVALUATION_KINDS): a refit is drawn
    hollow, as its score is its parent's, not a new result."""
    frame = pd.DataFrame(rows)
    return (
        alt.Chart(frame)
        .mark_point(size=90, filled=True)
        .encode(
            x=alt.X(
                "version:Q",
                title="version",
                axis=alt.Axis(tickMinStep=1, format="d"),
                # from the first version shown to the last, half a step of room each side
                scale=alt.Scale(
                    domain=[frame["version"].min() - 0.5, frame["version"].max() + 0.5],
                    nice=False,
                    zero=False,
                ),
            ),
            y=alt.Y("roc_auc:Q", title="ROC AUC", scale=alt.Scale(zero=False)),
            color=alt.Color("recipe:N"),
            shape=alt.Shape(
                "kind:N", title="evaluated by", scale=alt.Scale(domain=EVALUATION_KINDS)
            ),
            fillOpacity=alt.FillOpacityValue(
                **alt.condition(alt.datum.kind == EVALUATION_KINDS[2], alt.value(0), alt.value(1))
            ),
            tooltip=[
                alt.Tooltip("version"),
                alt.Tooltip("recipe"),
                alt.Tooltip("roc_auc:Q", format=".4f"),
                alt.Tooltip("evaluated:N", title="evaluated"),
                alt.Tooltip("data"),
            ],
        )
        .properties(height=220)
    )


def calibration_overlay(points: dict[str, list[dict[str, float]]]) -> alt.LayerChart:
    """Reliability diagrams of several versions: on the diagonal, a predicted 30% means
    that 30% of such requests got a pizza."""
    rows = [
        {"version": label, "order": i, **point}
        for label, version_points in points.items()
        for i, point in enumerate(version_points)
    ]
    frame = pd.DataFrame(rows, columns=["version", "order", "predicted", "observed"])
    axis = alt.Scale(domain=[0, 1])
    lines = (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=alt.X("predicted:Q", title="mean predicted probability", scale=axis),
            y=alt.Y("observed:Q", title="share that got a pizza", scale=axis),
            color=alt.Color("version:N"),
            order=alt.Order("order:Q"),
            tooltip=[
                alt.Tooltip("version:N"),  # typed: an empty frame has nothing to infer from
                alt.Tooltip("predicted:Q", format=".3f"),
                alt.Tooltip("observed:Q", format=".3f"),
            ],
        )
    )
    diagonal = (
        alt.Chart(pd.DataFrame({"predicted": [0, 1], "observed": [0, 1]}))
        .mark_line(strokeDash=[4, 4], color="gray")
        .encode(x=alt.X("predicted:Q"), y=alt.Y("observed:Q"))
    )
    return (lines + diagonal).properties(title="Calibration", height=300)


def sweep_chart(rows: list[dict[str, Any]], keys: list[str], metric: str = "ROC AUC") -> Any:
    """A sweep's metric against each swept parameter, side by side (one small scatter per
    parameter, shared y axis; a log x axis where a numeric parameter spans 10x or more).
    `rows` hold `version`, each key and `metric`."""
    frame = pd.DataFrame(rows)
    panels = []
    for key in keys:
        values = pd.to_numeric(frame[key], errors="coerce")
        numeric = values.notna().all() and not frame[key].map(type).eq(bool).any()
        log = bool(numeric and (values > 0).all() and values.max() >= 10 * values.min())
        x = (
            alt.X(f"{key}:Q", scale=alt.Scale(type="log" if log else "linear", zero=False))
            if numeric
            else alt.X(f"{key}:N", axis=alt.Axis(labelAngle=0))
        )
        panels.append(
            alt.Chart(frame)
            .mark_circle(size=80)
            .encode(
                x=x,
                y=alt.Y(f"{metric}:Q", scale=alt.Scale(zero=False)),
                tooltip=[
                    alt.Tooltip("version"),
                    *(alt.Tooltip(k) for k in keys),
                    alt.Tooltip(f"{metric}:Q", format=".4f"),
                ],
            )
            .properties(width=220, height=200, title=key)
        )
    return alt.hconcat(*panels).resolve_scale(y="shared")
