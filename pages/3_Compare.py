"""Compare 2-4 versions on one page: metrics, confusion matrices, rates, curves, statistics."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from core import charts
from core.compare import METRIC_HELP, compare, fold_spread_of, signed
from core.errors import AltruismError, NotFound
from core.evaluate import calibration_points
from core.operating_point import CommonPoint, parse_at
from core.schema import READY
from core.sweeps import RANKING_WORDS, best_of_sweep, sweeps_of
from ui.common import (
    chart,
    get_registry,
    label,
    md,
    model_name,
    page_setup,
    show_error,
    version_numbers,
)

page_setup("Compare")
registry = get_registry()
model = model_name()
st.title("Compare versions")

# Summaries for the picker (cheap with thousands of versions); full rows only when used.
ready = [s for s in registry.version_summaries(model, include_archived=False) if s.status == READY]
if len(ready) < 2:
    st.info("Comparing needs at least two ready versions. Build some on **Build**.")
    st.stop()
aliases = registry.aliases_by_version(model)
by_version = {r.version: r for r in ready}


def default_selection() -> list[int]:
    """From the URL (?v=1,2) if valid; else a comparable pair (same test set): the champion
    and the newest version sharing its test set, or the newest two sharing one."""
    raw = st.query_params.get("v", "")
    wanted = [v for v in version_numbers(raw, limit=100) if v in by_version][:4]
    if len(wanted) >= 2:
        return wanted
    if raw:
        st.warning(
            md(f"?v={str(raw)[:60]} does not name two ready versions; showing the default pair.")
        )
    try:
        champion = registry.resolve("champion", model).version
    except NotFound:
        champion = None
    newest_first = list(by_version)
    order = ([champion] if champion in by_version else []) + newest_first
    for first in order:
        split = by_version[first].split_hash
        partner = next(
            (v for v in newest_first if v != first and by_version[v].split_hash == split), None
        )
        if partner is not None:
            return [first, partner]
    return newest_first[:2]


def best_of_sweep_control() -> None:
    """Pick a sweep: its best version (by ROC AUC, evaluated like the champion) against the
    champion."""
    names = sweeps_of(ready)
    try:
        champion = by_version.get(registry.resolve("champion", model).version)
    except NotFound:
        champion = None
    if not names or champion is None:
        return
    left, right = st.columns([2, 1], vertical_alignment="bottom")
    sweep = left.selectbox(
        "Best of a sweep against the champion",
        names,
        help=f"The sweep's best version is the one with {RANKING_WORDS}, among those evaluated "
        "like the champion.",
    )
    left.caption(f"Best means {RANKING_WORDS}.")
    if right.button("Compare best of sweep vs champion", width="stretch"):
        best = best_of_sweep(ready, sweep, like=champion)
        if best is None:
            st.warning(
                f"No ready version of {sweep} is evaluated like the champion "
                f"(v{champion.version}: same data, seed and split or folds), so none compares."
            )
            return
        st.query_params["v"] = f"{champion.version},{best.version}"
        st.rerun()


best_of_sweep_control()
chosen = st.multiselect(
    "Versions (2 to 4; the first is the baseline)",
    list(by_version),
    default=default_selection(),
    max_selections=4,
    format_func=lambda v: label(by_version[v], aliases),
)
st.query_params["v"] = ",".join(map(str, chosen))
if len(chosen) < 2:
    st.info("Pick at least two versions.")
    st.stop()
rows = [registry.get_by_id(by_version[v].id) for v in chosen]
AT_LABELS = {
    "own": "Each version's own threshold",
    "fpr": "Equal false positive rate",
    "flagged": "Equal share flagged",
    "threshold": "One threshold for all",
}


def operating_point_control() -> CommonPoint:
    """Where the confusion matrices, rates and McNemar are taken (kept in the URL, ?at=)."""
    try:
        start = parse_at(st.query_params.get("at"))
    except AltruismError:
        start = CommonPoint()
    left, right = st.columns([3, 2])
    mode = left.radio(
        "Operating point",
        list(AT_LABELS),
        index=list(AT_LABELS).index(start.mode),
        format_func=AT_LABELS.get,
        horizontal=True,
        key="at-mode",
        help="Threshold-dependent figures are only fair at comparable points: each version's "
        "own threshold (chosen on its training data), the thresholds giving every version the "
        "same false positive rate or the same share of requests predicted to get a pizza, or "
        "one threshold for all.",
    )
    if mode == "own":
        st.query_params.pop("at", None)
        return CommonPoint()
    words = {"fpr": "False positive rate", "flagged": "Share flagged", "threshold": "Threshold"}
    default = start.value if start.mode == mode else {"fpr": 0.2, "flagged": 0.3}.get(mode, 0.3)
    value = right.slider(words[mode], 0.01, 0.99, float(default), 0.01, key=f"at-{mode}")
    st.query_params["at"] = f"{mode}={value:g}"
    return CommonPoint(mode, float(value))


@st.cache_data(show_spinner=False, max_entries=64)
def comparison(
    ids: tuple[int, ...], digests: tuple[str, ...], mode: str, value: float | None
) -> dict[str, Any]:
    """Everything but the paired statistics (`paired` names the pairs only): fast."""
    rows = [registry.get_by_id(i) for i in ids]
    return compare(rows, registry, at=CommonPoint(mode, value), statistics=False)


@st.cache_data(show_spinner="Computing paired statistics ...", max_entries=64)
def paired_statistics(
    ids: tuple[int, ...], digests: tuple[str, ...], mode: str, value: float | None
) -> list[dict[str, Any]]:
    """The paired bootstrap and McNemar of each pair (the slow part)."""
    rows = [registry.get_by_id(i) for i in ids]
    return compare(rows, registry, at=CommonPoint(mode, value))["paired"]


point = operating_point_control()
selection = (tuple(r.id for r in rows), tuple(r.artifact_sha256 for r in rows))
try:
    result = comparison(*selection, point.mode, point.value)
except AltruismError as exc:
    show_error(exc)
    st.stop()
names = [f"v{r.version}" for r in rows]

if result["not_comparable"]:
    pairs = ", ".join(f"v{p['first']} and v{p['second']}" for p in result["not_comparable"])
    st.warning(
        f"Not comparable: {pairs}: {result['reason'] or 'measured on different requests'}. "
        "No paired statistics are shown for them; train with the same data, seed and "
        "evaluation (test fraction, or folds and repeats) to compare them pairwise."
    )
for note in result["notes"]:
    st.info(md(note))
for warning in result["warnings"]:
    st.warning(md(warning))

st.subheader("Metrics")
st.caption(
    "Evaluated on: "
    + "; ".join(
        f"v{e['version']} by {e['label']} "
        f"({r.metrics.get('positives', 0) / max(1, r.metrics.get('n', 0)):.1%} got a pizza)"
        + (f", ROC AUC per fold {spread[0]:.3f} ± {spread[1]:.3f}" if spread else "")
        for e, r in zip(result["evaluations"], rows, strict=True)
        for spread in [fold_spread_of(r)]
    )
)
st.caption(
    f"Threshold-dependent figures (F1, precision, recall, accuracy, FPR, FNR, the confusion "
    f"matrices and McNemar) at **{md(result['operating_point']['label'])}**: "
    + "; ".join(
        f"v{p['version']} at {md(p['threshold_label'])}"
        for p in result["operating_point"]["versions"]
    )
    + ". — means undefined (nothing to divide by)."
)
comparable = {(p["first"], p["second"]) for p in result["paired"]}
table = []
for m in result["metrics"]:
    readable, meaning = METRIC_HELP[m["metric"]]
    entry = {"metric": readable}
    for name, value in zip(names, m["values"], strict=True):
        entry[name] = value
    for name, delta, version in zip(
        names[1:], m["deltas"][1:], result["versions"][1:], strict=True
    ):
        if delta is None:
            entry[f"Δ {name}"] = "—"
            continue
        better = delta < 0 if m["lower_is_better"] else delta > 0
        judged = (result["versions"][0], version) in comparable  # same requests: a fair call
        arrow = (
            ""
            if delta == 0 or m["metric"] in ("tn", "fp", "fn", "tp") or not judged
            else (" ▲ better" if better else " ▼ worse")
        )
        entry[f"Δ {name}"] = (
            f"{signed(delta, 4)}{arrow}" if isinstance(delta, float) else f"{delta:+d}"
        )
    entry["what it means"] = meaning
    table.append(entry)
frame = pd.DataFrame(table)
# an HTML table: every row and every cell shown in full (a canvas grid scrolls and clips)
styled = frame.style.format({n: "{:.4f}" for n in names}, na_rep="—")
counts = [i for i, m in enumerate(result["metrics"]) if m["metric"] in ("tn", "fp", "fn", "tp")]
if counts:  # the confusion counts are whole numbers: 390, not 390.0000
    styled = styled.format("{:.0f}", subset=pd.IndexSlice[counts, names], na_rep="—")
st.table(styled, hide_index=True)
if len(comparable) < len(rows) - 1:
    st.caption("Δ without ▲/▼: the two were measured on different requests, so no better/worse.")

st.subheader("Who won")
# filled in last (below): the charts are drawn while the paired bootstrap runs
who_won = st.container()


def show_who_won(paired: list[dict[str, Any]]) -> None:
    """Each pair's verdict in words, and how the statistics were taken."""
    for pair in paired:
        st.markdown(md(pair["verdict"]))
    if not paired:
        st.info("No pair of these versions shares a test set, so none can be called better.")
        return
    st.caption(
        f"ROC AUC intervals from a paired bootstrap over the shared test requests "
        f"({paired[0]['bootstrap_resamples']:,} resamples); McNemar's exact test "
        "counts the requests exactly one of the two classified correctly."
        + (
            f" With {len(rows) - 1} versions against one baseline, each interval is "
            f"Bonferroni-adjusted to {100 * paired[0]['confidence_level']:.4g}% so "
            "that calling any of them better stays a 5% risk in all."
            if len(rows) > 2
            else ""
        )
    )


st.subheader("Confusion matrices")
normalize = st.toggle("Row-normalised (share of each actual class)", key="normalize")
for start in range(0, len(rows), 2):  # two per row: axis labels never overlap
    cols = st.columns(2)
    shown_points = result["operating_point"]["versions"][start : start + 2]
    matrices = result["confusion_matrices"][start : start + 2]
    for col, row, at, matrix in zip(
        cols, rows[start : start + 2], shown_points, matrices, strict=False
    ):
        at_words = f"at {at['threshold_label']}"
        chart(col, charts.confusion_heatmap, label(row, aliases), matrix, normalize, at_words)

# two per row: at 1280 px four side by side leave each chart half legend
left, middle = st.columns(2)
right, far = st.columns(2)
left.markdown("**False positive and false negative rates**")
at_point = {m["metric"]: m["values"] for m in result["metrics"]}
rates = [
    {"version": n, "fpr": fpr, "fnr": fnr}
    for n, fpr, fnr in zip(names, at_point["fpr"], at_point["fnr"], strict=True)
]
chart(left, charts.rates_bars, rates)
details = {n: registry.details(r.id) for n, r in zip(names, rows, strict=True)}
chart(middle, charts.curve_overlay, {n: d.curves for n, d in details.items()}, "roc")
chart(right, charts.curve_overlay, {n: d.curves for n, d in details.items()}, "pr")
calibration = {
    n: calibration_points(d.test_labels, d.test_probabilities) for n, d in details.items()
}
chart(far, charts.calibration_overlay, calibration)

st.subheader("Provenance")


def shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


everything = st.toggle("Show the fields that are the same too", key="provenance-all")
rows_shown = [d for d in result["provenance_diff"] if everything or d["differs"]]
diff = pd.DataFrame(
    [
        {
            "field": d["field"],
            "differs": "≠" if d["differs"] else "",
            **{n: shown(v) for n, v in zip(names, d["values"], strict=True)},
        }
        for d in rows_shown
    ],
    columns=["field", "differs", *names],
)
same = len(result["provenance_diff"]) - sum(d["differs"] for d in result["provenance_diff"])
st.caption(
    f"Rows marked ≠ differ between the versions; {same} fields are the same"
    + (" (shown)." if everything else " (hidden).")
)
st.table(  # long values (params, digests) wrap instead of being cut off
    diff.style.apply(
        lambda r: ["background-color: #fff3cd" if r["differs"] else "" for _ in r], axis=1
    ),
    hide_index=True,
)
for recipe_diff in result.get("recipe_diffs", []):
    st.markdown(
        f"**Recipe source, v{recipe_diff['first']} → v{recipe_diff['second']}** (unified diff)"
    )
    st.code(recipe_diff["diff"] or "(no source recorded)", language="diff")

with who_won:
    try:
        show_who_won(paired_statistics(*selection, point.mode, point.value))
    except AltruismError as exc:
        show_error(exc)
