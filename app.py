"""Home: the champion, the latest builds, which builder is active, where the registry lives."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import builds, charts
from core.config import settings
from core.errors import AltruismError, NotFound
from core.schema import ACTIVE_STATUSES, READY
from ui.common import builder_status, fmt, get_registry, label, model_name, page_setup, show_error

page_setup("Home")
registry = get_registry()
model = model_name()

st.title("🍕 Altruism Lab")
st.caption("Which model is live, how was it built, and is the new one really better?")

counts = registry.status_counts(model)
builder, reason = builder_status()

if not counts:
    st.info(
        "The registry is empty. Train the three starter recipes on the bundled sample "
        "to get going, or open **Build** to choose your own."
    )
    if st.button("Train starter recipes on the bundled sample", type="primary"):
        try:
            started = builds.launch_starters(registry)
            st.success(f"Started {len(started)} builds with the {builder} builder.")
            st.rerun()
        except AltruismError as exc:
            show_error(exc)

try:
    champion = registry.resolve("champion", model)
except NotFound:
    champion = None

aliases = registry.aliases_by_version(model) if counts else {}
left, right = st.columns([3, 2])
with left:
    st.subheader("Champion")
    if champion is None:
        st.write("No version holds the **champion** alias yet. Promote one on **Versions**.")
    else:
        m = champion.metrics or {}
        st.markdown(
            f"**{label(champion, aliases)}** · built by `{champion.builder}` · "
            f"data `{champion.data_sha256[:10]}`"
        )
        cols = st.columns(4)
        cols[0].metric("ROC AUC", fmt(m.get("roc_auc")))
        cols[1].metric("False positive rate", fmt(m.get("fpr")))
        cols[2].metric("False negative rate", fmt(m.get("fnr")))
        cols[3].metric("F1", fmt(m.get("f1")))
with right:
    st.subheader("Registry")
    cols = st.columns(3)
    cols[0].metric("Ready", counts.get(READY, 0))
    cols[1].metric("Building", sum(counts.get(s, 0) for s in ACTIVE_STATUSES))
    cols[2].metric("Failed", counts.get("failed", 0) + counts.get("cancelled", 0))
    if builder == "docker":
        st.success(f"Builder: **Docker** ({reason})", icon="🐳")
    else:
        st.warning(f"Builder: **local fallback** ({reason})", icon="💻")
    conf = settings()
    st.caption(
        f"Registry `{registry.url}` · artifacts `{conf.artifact_root}` · "
        f"data folder `{conf.data_dir}`"
    )


@st.fragment(run_every=3)
def latest_builds() -> None:
    rows = registry.list_versions(model, include_archived=False, limit=10)
    if not rows:
        return
    st.subheader("Latest builds")
    frame = pd.DataFrame(
        [
            {
                "version": r.version,
                "status": r.status + (f" · {r.stage}" if r.stage else ""),
                "recipe": r.recipe,
                "ROC AUC": (r.metrics or {}).get("roc_auc"),
                "builder": r.builder,
                "aliases": ", ".join(aliases.get(r.id, [])),
                "created": r.created_at,
                "error": r.error or "",
            }
            for r in rows
        ]
    )
    st.dataframe(
        frame,
        hide_index=True,
        width="stretch",
        column_config={"ROC AUC": st.column_config.NumberColumn(format="%.4f")},
    )
    ready = [r for r in registry.list_versions(model, include_archived=False, status=READY)]
    if ready:
        st.subheader("ROC AUC by version")
        st.altair_chart(
            charts.auc_history(
                [
                    {
                        "version": r.version,
                        "recipe": r.recipe,
                        "roc_auc": r.metrics["roc_auc"],
                        "data": r.data_sha256[:10],
                    }
                    for r in ready
                ]
            ),
            width="stretch",
        )


latest_builds()
