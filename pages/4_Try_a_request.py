"""Try a request: type a pizza request and see each version's predicted success probability."""

from __future__ import annotations

import time

import streamlit as st

from core import charts
from core.dataset import MAX_TEXT_CHARS, MAX_TITLE_CHARS
from core.errors import AltruismError, NotFound
from core.predict import explain, make_request, predict_proba
from core.schema import READY
from ui.common import cached_model, chart, get_registry, label, md, model_name, page_setup

ALL = "All ready versions"

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
    title = st.text_input("Title", placeholder="[Request] Broke student in Ohio, payday Friday")
    text = st.text_area(
        "Request text",
        height=160,
        placeholder="Lost my job last week and the fridge is empty. I'll pay "
        "it forward when I'm back on my feet!",
    )
    with st.expander("Requester metadata (optional)"):
        cols = st.columns(3)
        meta = {
            "requester_account_age_in_days_at_request": cols[0].number_input(
                "Account age (days)", 0.0, 10_000.0, 365.0
            ),
            "requester_number_of_comments_at_request": cols[1].number_input(
                "Comments", 0, 100_000, 50
            ),
            "requester_number_of_posts_at_request": cols[2].number_input("Posts", 0, 100_000, 5),
            "requester_number_of_posts_on_raop_at_request": cols[0].number_input(
                "Posts on RAOP", 0, 1_000, 0
            ),
            "requester_number_of_comments_in_raop_at_request": cols[1].number_input(
                "Comments on RAOP", 0, 10_000, 0
            ),
            "requester_number_of_subreddits_at_request": cols[2].number_input(
                "Subreddits", 0, 1_000, 10
            ),
            "requester_upvotes_minus_downvotes_at_request": cols[0].number_input(
                "Karma (up − down)", -100_000, 10_000_000, 100
            ),
            "requester_upvotes_plus_downvotes_at_request": cols[1].number_input(
                "Votes (up + down)", 0, 10_000_000, 300
            ),
            "requester_days_since_first_post_on_raop_at_request": cols[2].number_input(
                "Days since first RAOP post", 0.0, 10_000.0, 0.0
            ),
        }
    submitted = st.form_submit_button("Predict", type="primary")

st.caption(
    f"Titles up to {MAX_TITLE_CHARS:,} and texts up to {MAX_TEXT_CHARS:,} characters. "
    "Request time is now."
)
if not submitted:
    st.stop()
try:
    now = time.time()
    record = make_request(
        title, text, unix_timestamp_of_request=now, unix_timestamp_of_request_utc=now, **meta
    )
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
        results.append((row, pipeline, predict_proba(pipeline, [record])[0]))
    except AltruismError as exc:
        st.error(md(f"v{row.version}: {exc}"))
if not results:
    st.stop()

if len(results) == 1:
    row, pipeline, probability = results[0]
    st.metric(
        f"Predicted chance of getting a pizza ({md(label(row, aliases))})", f"{probability:.1%}"
    )
else:
    bars = [{"version": label(row, aliases), "probability": p} for row, _, p in results]
    chart(st, charts.probability_bars(bars))

# Explain the picked version, or in "all" mode the champion (else the newest).
row, pipeline, _ = next((r for r in results if r[0].version == default), results[0])
words = explain(pipeline, record)
if words:
    st.markdown(f"**Words that pushed {md(label(row, aliases))} up or down**")
    chart(st, charts.contribution_bars(words))
