"""Dashboard entry point (`streamlit run app.py`): navigation and the Home page.

Home shows the champion, the latest builds, which builder is active and where the registry
lives. The other pages are in `pages/`; all logic is in `core/`.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import builds, charts
from core.config import settings
from core.errors import AltruismError, NotFound
from core.operating_point import flag_warning, policy_label
from core.registry import version_dict
from core.schema import ACTIVE_STATUSES, READY
from core.serving.live import live
from ui.common import (
    actor,
    builder_status,
    chart,
    dataset_label,
    fmt,
    get_registry,
    label,
    md,
    model_name,
    page_setup,
    registry_where,
    show_error,
)


def starter_button(builder: str) -> None:
    st.info(
        "The registry is empty. Train the three starter recipes on the bundled sample to "
        "get going, or open **Build** to choose your own."
    )
    if st.button("Train starter recipes on the bundled sample", type="primary"):
        try:
            started = builds.launch_starters(get_registry(), actor=actor())
            st.session_state["flash"] = (
                f"Started {len(started)} builds with the {builder} builder; they appear below "
                "as they progress."
            )
            st.rerun()
        except AltruismError as exc:
            show_error(exc)


def real_data_hint() -> None:
    """How to get the real RAOP data, until a version has been trained on something other
    than the synthetic sample."""
    conf = settings()
    with st.expander("Get the real Random Acts of Pizza data", expanded=True):
        st.markdown(
            "The bundled sample is **synthetic**: good for trying the tool, meaningless as a "
            "model. The real requests are the `train.json` of Kaggle's *Random Acts of Pizza* "
            "competition: 4,040 labelled requests from the Stanford RAOP dataset (`.json`, "
            "`.jsonl` or a `.zip` of one). Download it from "
            "[kaggle.com/c/random-acts-of-pizza/data]"
            "(https://www.kaggle.com/c/random-acts-of-pizza/data), put the file in the data "
            "folder "
            f"`{conf.data_dir}` and pick it on **Build** under "
            "*File in the data folder* (or upload it there)."
        )


def champion_panel(aliases: dict[int, list[str]]) -> None:
    st.subheader("Champion")
    try:
        champion = get_registry().resolve("champion", model_name())
    except NotFound:
        st.write("No version holds the **champion** alias yet. Promote one on **Versions**.")
        return
    m = champion.metrics or {}
    st.markdown(
        f"**{md(label(champion, aliases))}** · built by {md(champion.builder)} · "
        f"data `{champion.data_sha256[:10]}`"
    )
    if champion.data_kind == "sample":
        st.warning(
            "The champion was trained on the bundled synthetic sample, not real requests: "
            "its scores say little about real ones."
        )
    cols = st.columns(4)
    cols[0].metric("ROC AUC", fmt(m.get("roc_auc")))
    cols[1].metric("False positive rate", fmt(m.get("fpr")))
    cols[2].metric("False negative rate", fmt(m.get("fnr")))
    cols[3].metric("F1", fmt(m.get("f1")))
    st.caption(
        f"Rates and F1 at its threshold {champion.threshold:.3g} "
        f"(policy {md(policy_label(m, champion.threshold))}): a request at or above it is "
        "predicted to get a pizza."
    )
    if warning := flag_warning(champion.version, m):
        st.warning(md(warning))


def live_panel() -> None:
    """Which version each alias serves and what `python -m core serve` answered with it."""
    entries = live(get_registry(), model_name())
    if not entries:
        return
    st.subheader("Live")
    for entry in entries:
        st.markdown(md(entry.sentence()))
    if not any(e.served.calls for e in entries):
        st.caption("Start the prediction service with `python -m core serve` (docs/deploy.md).")


def registry_panel(counts: dict[str, int], builder: str, reason: str) -> None:
    st.subheader("Registry")
    cols = st.columns(3)
    cols[0].metric("Ready", counts.get(READY, 0))
    cols[1].metric("Building", sum(counts.get(s, 0) for s in ACTIVE_STATUSES))
    cols[2].metric("Failed", counts.get("failed", 0) + counts.get("cancelled", 0))
    if builder in ("docker", "swarm"):
        st.success(f"Builder: **{builder.title()}** ({reason})", icon=":material/deployed_code:")
    else:
        st.warning(f"Builder: **local fallback** ({reason})", icon=":material/computer:")
    conf = settings()
    st.caption(
        f"Registry {registry_where(get_registry().display_url)} · "
        f"artifacts `{conf.artifact_root}` · "
        f"data folder `{conf.data_dir}`"
    )


@st.fragment(run_every=3)
def latest_builds() -> None:
    """The newest builds and the AUC history; refreshes itself while builds run."""
    registry, model = get_registry(), model_name()
    rows = registry.list_versions(model, include_archived=False, limit=10)
    if not rows:
        return
    aliases = registry.aliases_by_version(model)
    st.subheader("Latest builds")
    frame = pd.DataFrame(
        [
            {
                "version": r.version,
                "status": r.status + (f" · {r.stage}" if r.stage else ""),
                "recipe": r.recipe,
                "dataset": dataset_label(r),
                "ROC AUC": fmt((r.metrics or {}).get("roc_auc"), 4),  # "—" while building
                "evaluated": version_dict(r)["evaluated"],
                "builder": r.builder,
                "aliases": ", ".join(aliases.get(r.id, [])),
                "created": f"{r.created_at:%Y-%m-%d %H:%M}",
                "error": r.error or "",
            }
            for r in rows
        ]
    )
    # an HTML table: a running build's stage and a long error wrap instead of being cut off
    st.table(frame, hide_index=True)
    ready = [
        r for r in registry.version_summaries(model, include_archived=False) if r.status == READY
    ]
    if ready:
        auc_by_dataset(ready, aliases)


def auc_by_dataset(ready: list, aliases: dict[int, list[str]]) -> None:
    """ROC AUC by version on one dataset at a time: scores on different data never share
    an axis. The champion's dataset first, else the newest version's."""
    datasets: dict[str, str] = {}  # shown name -> data sha256
    champion = next((r for r in ready if "champion" in aliases.get(r.id, [])), None)
    for r in ([champion] if champion else []) + ready:
        datasets.setdefault(f"{dataset_label(r)} · {r.data_sha256[:10]}", r.data_sha256)
    st.subheader("ROC AUC by version")
    picked = datasets[st.selectbox("Dataset", list(datasets), key="home-dataset")]
    on_it = [r for r in ready if r.data_sha256 == picked]
    chart(
        st,
        charts.auc_history,
        [
            {
                "version": r.version,
                "recipe": r.recipe,
                "roc_auc": r.metrics["roc_auc"],
                "data": dataset_label(r),
                "evaluated": r.evaluated,
                "kind": charts.EVALUATION_KINDS[
                    2 if r.refit_of is not None else 1 if r.cv_folds else 0
                ],
            }
            for r in on_it
        ],
    )
    if len(datasets) > 1:
        st.caption(
            f"{len(datasets)} datasets; pick one above. Held-out scores on different "
            "data are not comparable."
        )
    st.caption(
        "Shapes say how each score was measured: one held-out split, or cross-validation on "
        "every request (steadier). A hollow mark is a refit: it carries its parent's score."
    )


def home() -> None:
    """The Home page."""
    registry = get_registry()
    st.title("Altruism Lab")
    st.caption("Which model is live, how was it built, and is the new one really better?")
    if flash := st.session_state.pop("flash", None):
        st.success(flash)
    counts = registry.status_counts(model_name())
    builder, reason = builder_status()
    if not counts:
        starter_button(builder)
    aliases = registry.aliases_by_version(model_name()) if counts else {}
    left, right = st.columns([3, 2])
    with left:
        champion_panel(aliases)
    with right:
        registry_panel(counts, builder, reason)
    live_panel()
    if not registry.has_real_data(model_name()):
        real_data_hint()
    latest_builds()


page_setup("Home")
navigation = st.navigation(
    [
        st.Page(home, title="Home", icon=":material/home:", default=True),
        st.Page("pages/1_Build.py", title="Build", icon=":material/construction:"),
        st.Page("pages/2_Versions.py", title="Versions", icon=":material/list:"),
        st.Page("pages/3_Compare.py", title="Compare", icon=":material/compare_arrows:"),
        st.Page("pages/4_Try_a_request.py", title="Try a request", icon=":material/edit_note:"),
    ]
)
navigation.run()
