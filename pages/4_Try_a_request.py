"""Try a request: type a pizza request and see each version's predicted success probability."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import streamlit as st

from core import charts
from core.dataset import MAX_TEXT_CHARS, MAX_TITLE_CHARS, REQUESTER_COUNTS
from core.errors import AltruismError, NotFound
from core.explain import explain
from core.features import CAPTIONS
from core.operating_point import flag_warning
from core.predict import decision_words, make_request, request_meta, score
from core.schema import READY, ModelVersion
from ui.common import cached_model, chart, get_registry, label, md, model_name, page_setup

ALL = "All ready versions"
REQUESTER_FIELDS = tuple(  # field, lowest value, step
    (field, None if "minus" in field else 0.0, 1.0)
    for field in CAPTIONS
    if field in REQUESTER_COUNTS
)

page_setup("Try a request")
registry = get_registry()
model = model_name()
st.title("Try a request")

# Summaries for the picker (cheap with thousands of versions); full rows only when used.
ready = [s for s in registry.version_summaries(model, include_archived=False) if s.status == READY]
if not ready:
    st.info("No ready versions yet. Build one on **Build** first.")
    st.stop()
aliases = registry.aliases_by_version(model)
by_version = {r.version: r for r in ready}
try:
    default = registry.resolve("champion", model).version
except NotFound:
    default = ready[0].version
options = [ALL, *by_version]
picked = st.selectbox(
    "Version",
    options,
    index=options.index(default),
    format_func=lambda v: v if v == ALL else label(by_version[v], aliases),
)

with st.form("request"):
    title = st.text_input(
        "Title",
        max_chars=MAX_TITLE_CHARS,
        placeholder="[Request] Broke student in Ohio, payday Friday",
    )
    text = st.text_area(
        "Request text",
        height=160,
        max_chars=MAX_TEXT_CHARS,
        placeholder="Lost my job last week and the fridge is empty. I'll pay "
        "it forward when I'm back on my feet!",
    )
    now = datetime.now(UTC)
    when = st.columns(2)
    day = when[0].date_input("Request date (UTC)", value=now.date())
    clock = when[1].time_input("Request time (UTC)", value=now.time().replace(microsecond=0))
    with st.expander(
        "Requester metadata (optional; a blank field is unknown: averaged over the "
        "requesters in the training data)"
    ):
        cols = st.columns(3)
        meta = {
            field: cols[i % 3].number_input(CAPTIONS[field], min_value=low, value=None, step=step)
            for i, (field, low, step) in enumerate(REQUESTER_FIELDS)
        }
    submitted = st.form_submit_button("Predict", type="primary")

st.caption(
    f"Titles up to {MAX_TITLE_CHARS:,} and texts up to {MAX_TEXT_CHARS:,} characters. "
    "The request time defaults to now; hour, weekday and day of month are what a model uses."
)
if not submitted:
    st.stop()
try:
    posted = datetime.combine(day, clock, tzinfo=UTC).timestamp()
    given = {k: v for k, v in meta.items() if v is not None}
    record = make_request(title, text, **request_meta(posted, given))
except AltruismError as exc:
    st.warning(str(exc))
    st.stop()

targets = [
    registry.get_by_id(s.id)
    for s in (by_version.values() if picked == ALL else [by_version[picked]])
]
results = []
for row in targets:
    try:
        pipeline = cached_model(row)
        results.append((row, pipeline, score(pipeline, [record])[0]))
    except AltruismError as exc:
        st.error(md(f"v{row.version}: {exc}"))
if not results:
    st.stop()

if len(results) == 1:
    row, pipeline, scored = results[0]
    st.metric(
        f"Predicted chance of getting a pizza ({md(label(row, aliases))})",
        f"{scored['probability']:.1%}",
    )
else:
    bars = [
        {"version": label(row, aliases), "probability": s["probability"]} for row, _, s in results
    ]
    chart(st, charts.probability_bars, bars)
for row, _, scored in results:
    prefix = "" if len(results) == 1 else f"{label(row, aliases)}: "
    st.markdown(md(f"{prefix}{decision_words(row, scored['probability'])}"))
    if warning := flag_warning(row.version, row.metrics):  # its decision says little
        st.warning(md(warning))
for row, _, scored in results:
    for w in scored["warnings"]:
        st.warning(
            md(
                f"{label(row, aliases)}: {w['feature']} = {w['value']:g} is outside what it "
                f"was trained on ({w['min']:g} to {w['max']:g})"
            )
        )
notes = sorted({s["unknown_note"] for _, _, s in results if s["unknown"]})
for note in notes:
    st.caption(md(f"Unknown fields: {note[0].upper()}{note[1:]}."))
zeroed = sorted({k for _, _, s in results for k in s["defaults"] if not k.startswith("unix")})
if zeroed:  # versions built before background rows were kept
    st.caption(md(f"Counted as 0 by older versions: {', '.join(CAPTIONS[k] for k in zeroed)}."))


def show_explanation(row: ModelVersion, pipeline: Any, scored: dict[str, Any]) -> None:
    """Each feature group's log-odds contribution, the base, and the words group split."""
    name = md(label(row, aliases))
    explained = explain(pipeline, record)
    if "base" not in explained:
        st.caption(f"No explanation for {name}: {explained['method']}.")
        return
    known = [c for c in explained["contributions"] if not c["unknown"]]
    st.markdown(f"**What moved the score of {name}** (log-odds)")
    chart(st, charts.contribution_bars, [{"word": c["group"], "weight": c["value"]} for c in known])
    moved = sum(c["value"] for c in known)
    log_odds = explained["base"] + moved
    unknown = explained["unknown_note"]
    st.caption(
        f"Base {explained['base']:+.3f} + contributions {moved:+.3f} = log-odds "
        f"{log_odds:+.3f}, i.e. a probability of {scored['probability']:.1%}. "
        f"Method: {explained['method']}."
        + (f" Unknown, contributing 0: {unknown}." if unknown else "")
    )
    if explained.get("words", {}).get("count"):
        st.markdown(f"**Words that pushed {name} up or down**")
        chart(st, charts.word_bars, explained["words"])


# Every version shown is explained; the picked one (or the champion) first.
for row, pipeline, scored in sorted(results, key=lambda r: r[0].version != default):
    show_explanation(row, pipeline, scored)
