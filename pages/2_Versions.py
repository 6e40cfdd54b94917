"""Versions: a sortable, filterable table; details, actions and downloads for one version."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from core import builds, charts
from core.compare import evaluation_of, fold_spread_of
from core.errors import AltruismError
from core.evaluate import calibration_points
from core.modelcard import model_card, model_card_markdown
from core.operating_point import LEGACY_SUFFIX, flag_warning, parse_policy, policy_label
from core.recipe_files import recipe_paths
from core.recipes import RECIPES
from core.schema import ACTIVE_STATUSES, READY, STATUSES
from core.serving.live import history as serving_history
from core.sweeps import MAX_SWEEP, RANKING_WORDS, SWEEP_TAG, sweeps_of, swept_values
from ui.common import (
    actor,
    chart,
    dataset_label,
    fmt,
    get_registry,
    get_store,
    label,
    md,
    model_name,
    page_setup,
    show_error,
    version_numbers,
)

DETAIL_CHOICES = 500
# Shown by default: they fit 1280 px without a horizontal scroll; the rest on demand.
VERSION_COLUMNS = [
    "version",
    "status",
    "recipe",
    "ROC AUC",
    "F1",
    "evaluated",  # how the figures beside it were measured (split, K-fold CV, refit of vN)
    "dataset",
    "aliases",
    "tags",
]
# (sweep tags have the Sweep picker above and a column here, so `tags` stays short; the
# table is newest first, and each version's details give its creation time)
MORE_COLUMNS = ["created", "FPR", "FNR", "threshold", "flags", "sweep", "data", "builder"]

page_setup("Versions")
registry = get_registry()
model = model_name()
st.title("Versions")
if flash := st.session_state.pop("flash", None):  # said before the page reloaded
    st.toast(md(flash))

cols = st.columns([2, 2, 3, 1])
statuses = cols[0].multiselect("Status", STATUSES, placeholder="any status")
recipes = cols[1].multiselect(
    "Recipe", list(dict.fromkeys([*RECIPES, *recipe_paths()])), placeholder="any recipe"
)
search = cols[2].text_input("Search tags, aliases, notes, dataset name or hash", "")
show_archived = cols[3].checkbox("Archived", help="Include archived versions")

rows = registry.version_summaries(model, include_archived=show_archived)
aliases = registry.aliases_by_version(model)
sweep_names = sweeps_of(rows)
sweep = (
    st.selectbox("Sweep", ["any", *sweep_names], help="The builds one grid launched together")
    if sweep_names
    else "any"
)


def matches(row) -> bool:
    if statuses and row.status not in statuses:
        return False
    if recipes and row.recipe not in recipes:
        return False
    if sweep != "any" and sweep not in row.tags:
        return False
    if search:
        haystack = " ".join(
            [
                *aliases.get(row.id, []),
                *row.tags,
                row.note or "",
                row.data_sha256,
                row.data_name or "",
                row.recipe,
            ]
        ).lower()
        return search.lower() in haystack
    return True


def threshold_cell(row) -> str:
    """`0.238 (f1)`; a queued tuned build shows only its policy until the build sets it."""
    policy = row.threshold_policy or policy_label(None, row.threshold)
    if row.status != READY and not policy.startswith("fixed"):
        return policy
    return f"{row.threshold:.3g} ({policy.replace(LEGACY_SUFFIX, ', before operating points')})"


shown = [r for r in rows if matches(r)]
if not rows:
    st.info("No versions yet. Start a build on **Build**.")
    st.stop()


def sweep_view(sweep: str) -> None:
    """The sweep's swept parameter values beside its metric, as a table and a chart."""
    members = [registry.get_by_id(r.id) for r in shown if sweep in r.tags][:MAX_SWEEP]
    values = swept_values(members)
    keys = sorted({k for v in values.values() for k in v})
    if not keys:
        return
    table = [
        {
            "version": r.version,
            **values[r.id],
            "ROC AUC": (r.metrics or {}).get("roc_auc"),
            "F1": (r.metrics or {}).get("f1"),
            "status": r.status,
        }
        for r in members
    ]
    st.markdown(f"**{md(sweep)}**: {len(members)} builds over {md(', '.join(keys))}")
    frame = pd.DataFrame(table)
    st.dataframe(
        frame.style.format({"ROC AUC": "{:.4f}", "F1": "{:.4f}"}, na_rep="—"), hide_index=True
    )
    ready = [t for t in table if t["ROC AUC"] is not None]
    if ready:
        chart(st, charts.sweep_chart, ready, keys)
    st.caption(f"Best of the sweep means {RANKING_WORDS}. F1 at each version's own threshold.")


if sweep != "any":
    sweep_view(sweep)

table = pd.DataFrame(
    [
        {
            "version": r.version,
            "status": r.status + (" (archived)" if r.archived else ""),
            "recipe": r.recipe,
            "ROC AUC": (r.metrics or {}).get("roc_auc"),
            "F1": (r.metrics or {}).get("f1"),
            "FPR": (r.metrics or {}).get("fpr"),
            "FNR": (r.metrics or {}).get("fnr"),
            "threshold": threshold_cell(r),
            "evaluated": r.evaluated,
            "flags": "⚠ " + ", ".join(r.flags) if r.flags else "",
            "data": r.data_sha256[:10],
            "dataset": dataset_label(r),
            "builder": r.builder + (" · imported" if r.imported else ""),
            "aliases": ", ".join(aliases.get(r.id, [])),
            "tags": ", ".join(t for t in r.tags if not SWEEP_TAG.match(t)),
            "sweep": ", ".join(t for t in r.tags if SWEEP_TAG.match(t)),
            "created": r.created_at,
        }
        for r in shown
    ],
    columns=[*VERSION_COLUMNS, *MORE_COLUMNS],
)
st.caption(
    f"{len(shown)} of {len(rows)} versions. Click a column header to sort. F1, FPR and FNR "
    "are taken at each version's own threshold (its operating point, chosen on its training "
    "data by the policy in brackets); — means undefined. ⚠ single-class: every test request "
    "got the same decision."
)
numbers = ["ROC AUC", "F1", "FPR", "FNR"]
more = st.multiselect(
    "More columns",
    MORE_COLUMNS,
    placeholder="created, FPR, FNR, threshold, flags, sweep, data hash, builder",
    help="At 1280 px the table shows every default column in full; more columns may scroll.",
)


def open_selected_row() -> None:
    """A click on a row shows that version's details. Runs before the next page run, with
    this run's `shown`: the table the click was made on."""
    rows = st.session_state["table"].selection.rows
    if rows and rows[0] < len(shown):
        st.session_state["detail"] = shown[rows[0]].version


st.dataframe(
    table.style.format({n: "{:.4f}" for n in numbers}, na_rep="—"),
    hide_index=True,
    width="stretch",
    height=320,
    column_order=[*VERSION_COLUMNS, *more],
    column_config={"created": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm")},
    key="table",
    on_select=open_selected_row,
    selection_mode="single-row",
)

if not shown:
    st.stop()
by_version = {r.version: r for r in shown}


def detail_options() -> list[int]:
    """The versions offered under "Details for" (newest first; a longer list helps nobody),
    with the one being shown when it is older. Sets what is shown: a row clicked in the
    table or the version picked (`open_selected_row`, the picker), else `?v=N` on a first
    visit."""
    if "detail" not in st.session_state:
        wanted = version_numbers(st.query_params.get("v"), limit=1)
        st.session_state["detail"] = wanted[0] if wanted else None
    if st.session_state["detail"] not in by_version:  # filtered out, or never existed
        st.session_state["detail"] = None
    options = list(by_version)[:DETAIL_CHOICES]
    if st.session_state["detail"] is not None and st.session_state["detail"] not in options:
        options.append(st.session_state["detail"])
    return options


options = detail_options()
if len(shown) > DETAIL_CHOICES:
    st.caption(
        f"Details: the newest {DETAIL_CHOICES:,} of the {len(shown):,} versions shown are "
        "listed; filter the table, or open one with `?v=NUMBER` in the address."
    )
chosen = st.selectbox(
    "Details for",
    options,
    index=None,
    key="detail",
    placeholder="select a row in the table, or choose a version here",
    # no aliases in these labels: the browser keeps the chosen label, and a promote (here or
    # by a teammate) that changed it would leave the choice matching no option
    format_func=lambda v: label(by_version[v]),
)
if chosen is None:
    st.query_params.pop("v", None)
    st.caption(
        "A version's details: its metrics and confusion matrix at its threshold, calibration, "
        "provenance, build log, actions (promote, tag, refit, archive) and downloads."
    )
    st.stop()
st.query_params["v"] = str(chosen)
row = registry.get_by_id(by_version[chosen].id)  # the full row, for the details below

st.subheader(md(label(row, aliases)))
st.caption(
    f"status **{row.status}**"
    + (f" · {row.stage}" if row.stage else "")
    + f" · builder {md(row.builder)}"
    + (" · **imported** from an archive (not built here)" if row.imported else "")
    + f" · dataset {md(dataset_label(row))}"
    + f" · created {row.created_at:%Y-%m-%d %H:%M} UTC"
    + (f" by {md(row.created_by)}" if row.created_by else "")
    + (
        f" · {'archived' if row.archived else 'restored'} by {md(row.archived_by)}"
        f" {row.archived_at:%Y-%m-%d %H:%M} UTC"
        if row.archived_by and row.archived_at
        else ""
    )
)
if row.note:
    st.text(f"Note: {row.note}")
if changes := registry.changes(row.id):
    with st.expander(f"Changes ({len(changes)})"):
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "at": (c["at"] or "")[:19],
                        "change": c["action"] + (f" {c['detail']}" if c["detail"] else ""),
                        "by": c["actor"] or "unknown",
                    }
                    for c in changes
                ]
            ),
            hide_index=True,
        )
if row.tags:
    st.text("Tags: " + ", ".join(t.name for t in row.tags))
parent = (row.provenance or {}).get("refit_of")
if isinstance(parent, dict):
    where = " (in the registry it was exported from)" if row.imported else ""
    st.info(
        f"Refitted on all {(row.provenance or {}).get('data_rows', '?')} requests of its "
        f"dataset. The metrics, curves and test predictions below are "
        f"v{parent.get('version')}'s{where}, measured on its held-out split before the refit."
    )


def refit_button(row) -> None:
    """Train this version again on all of its data, as a new version scored by this one."""
    if not st.button(
        "Refit on all data",
        key="refit",
        help="After comparing on a held-out split: the same recipe, parameters and data, "
        "fitted on every request. The new version carries this version's metrics.",
    ):
        return
    try:
        submission = builds.submit_refit(row, registry, actor=actor())
        if not submission.reused:
            builds.launch(submission.version.id, registry)
        done = "already exists" if submission.reused else "is building"
        st.success(
            f"v{submission.version.version}, the refit of v{row.version}, {done}: "
            f"[open it](./Versions?v={submission.version.version})."
        )
    except AltruismError as exc:
        show_error(exc)


def overview_tab() -> None:
    """Metrics, the decisions at its threshold, the confusion matrix, parameters and calibration."""
    if row.error:
        st.error(md(row.error))
    m = row.metrics or {}
    if m:
        cols = st.columns(6)
        for col, (name, key) in zip(
            cols,
            [
                ("ROC AUC", "roc_auc"),
                ("Avg precision", "average_precision"),
                ("F1", "f1"),
                ("FPR", "fpr"),
                ("FNR", "fnr"),
                ("Brier", "brier"),
            ],
            strict=True,
        ):
            col.metric(name, fmt(m.get(key)))
            spread = fold_spread_of(row, key)
            if spread:
                col.caption(f"per fold {spread[0]:.3f} ± {spread[1]:.3f}")
        st.caption(
            f"Evaluated by {evaluation_of(row)['label']}"
            + (
                "; the model is fitted on all of them, and the figures above are pooled over "
                "the out-of-fold predictions (the mean ± sd over folds beneath each)"
                if fold_spread_of(row)
                else ""
            )
            + "."
        )
        policy = policy_label(m, row.threshold)
        st.markdown(
            f"**Decisions at threshold {row.threshold:.3g}**, policy `{md(policy)}`: "
            + (
                "fixed by hand before operating points were chosen."
                if policy.endswith(LEGACY_SUFFIX)
                else parse_policy(policy).meaning() + "."
            )
            + " The confusion matrix, F1, FPR and FNR are taken there."
        )
        if warning := flag_warning(row.version, m):
            st.warning(warning)
        left, right = st.columns([1, 1])
        normalize = left.toggle("Row-normalised", key="cm-normalize")
        title, at = f"v{row.version}", f"at threshold {row.threshold:.3g} ({policy})"
        chart(left, charts.confusion_heatmap, title, m["confusion_matrix"], normalize, at)
        right.markdown("**Parameters**")
        right.json(row.params)
        try:
            details = registry.details(row.id)
        except AltruismError as exc:  # damaged stored predictions: say so, show the rest
            details = None
            show_error(exc)
        if details is not None:
            points = calibration_points(details.test_labels, details.test_probabilities)
            left, right = st.columns([1, 1])
            chart(left, charts.calibration_overlay, {f"v{row.version}": points})
            right.caption(
                f"Brier score {fmt(m.get('brier'))} (mean squared error of the probabilities; "
                "lower is better). Points on the dashed diagonal mean the probabilities can be "
                "read as chances; points below it mean the model is over-confident."
            )


def provenance_tab() -> None:
    """Where the version came from: data, code, environment, the last reproduction."""
    st.json(row.provenance or {}, expanded=2)
    recorded = (row.provenance or {}).get("recipe_file")
    if isinstance(recorded, dict):
        st.markdown(
            f"**Recipe source** (team {md(str(recorded.get('kind')))} "
            f"{md(str(recorded.get('path')))}, sha256 {md(str(recorded.get('sha256'))[:12])})"
        )
        st.code(str(recorded.get("source") or ""), language="python")
    if row.reproduction:
        st.markdown("**Last reproduction**")
        st.json(row.reproduction, expanded=False)


def log_tab() -> None:
    """The tail of the build log."""
    tail = registry.log_tail(row.id, 6000) or row.log_tail
    st.code(tail or "no log recorded", language=None, wrap_lines=True)


def actions_tab() -> None:
    """Promote, tag, note, refit, archive and the downloads."""
    left, right = st.columns(2)
    with left:
        with st.form("promote"):
            alias = st.text_input("Alias", "champion")
            if st.form_submit_button("Promote to alias", disabled=row.status != READY):
                try:
                    registry.promote(row.version, alias, model, actor=actor())
                    st.session_state["flash"] = f"{alias.strip().lower()} → v{row.version}"
                    st.rerun()
                except AltruismError as exc:
                    show_error(exc)
        alias_names = sorted({"champion", *(a for v in aliases.values() for a in v)})
        with st.expander("Alias history"):
            held = st.selectbox("Alias", alias_names, key="history_alias")
            spans = registry.alias_history(held, model)[-20:]
            if spans:
                st.dataframe(
                    pd.DataFrame(
                        [
                            {
                                "version": s["version"],
                                "from": s["from"][:19],
                                "until": (s["until"] or "now")[:19],
                                "set by": f"{s['set_by'] or 'unknown'} ({s['how']})",
                                "ended by": s["ended_by"] or "",
                            }
                            for s in reversed(spans)
                        ]
                    ),
                    hide_index=True,
                )
                st.caption("Newest first; `python -m core history ALIAS` lists all of it.")
            else:
                st.caption(f"{md(held)} was never set.")
        with st.form("tag"):
            tag = st.text_input("Tag")
            add, remove = st.columns(2)
            add_clicked = add.form_submit_button("Add tag")
            remove_clicked = remove.form_submit_button("Remove tag")
            if add_clicked or remove_clicked:
                try:
                    if remove_clicked:
                        registry.remove_tag(row.id, tag.strip().lower(), actor=actor())
                    else:
                        registry.add_tag(row.id, tag, actor=actor())
                    st.rerun()
                except AltruismError as exc:
                    show_error(exc)
    with right:
        with st.form("note"):
            note = st.text_area("Note", row.note or "", max_chars=10_000)
            if st.form_submit_button("Save note"):
                try:
                    registry.set_note(row.id, note, actor=actor())
                    st.rerun()
                except AltruismError as exc:
                    show_error(exc)
        cross_validated = evaluation_of(row)["kind"] == "cv"
        if row.status == READY and not isinstance(parent, dict) and not cross_validated:
            refit_button(row)
        elif cross_validated:
            st.caption("Cross-validated: the model is already fitted on all of its data.")
        if row.status in ACTIVE_STATUSES:
            st.caption("Running builds can be cancelled on **Build**.")
        elif st.button("Restore" if row.archived else "Archive", key="archive"):
            try:
                registry.set_archived(row.id, not row.archived, actor=actor())
                st.rerun()
            except AltruismError as exc:
                show_error(exc)

    if row.status == READY:
        st.markdown("**Downloads**")
        card = model_card(row, registry)
        cols = st.columns(3)
        cols[1].download_button(
            "Model card (Markdown)",
            model_card_markdown(card),
            file_name=f"{model}-v{row.version}-card.md",
            mime="text/markdown",
        )
        cols[2].download_button(
            "Model card (JSON)",
            json.dumps(card, indent=2, default=str),
            file_name=f"{model}-v{row.version}-card.json",
            mime="application/json",
        )
        store = get_store()
        present = store.exists(row.artifact_sha256)
        cols[0].download_button(
            "Artifact (.joblib)",
            # read and hashed at click time; the hashed bytes are the bytes served
            lambda: store.read_verified(row.artifact_sha256),
            file_name=f"{model}-v{row.version}.joblib",
            mime="application/octet-stream",
            disabled=not present,
            help=None if present else "the artifact file is missing; run python -m core check",
        )


# Only the open tab's content is computed and sent (the others on a click, which reruns the
# page): the log's syntax highlighter, the JSON viewers, the forms and the model card cost
# the browser more than the rest of the page. ?tab=Log opens one from the address.
TABS = {
    "Overview": overview_tab,
    "Provenance": provenance_tab,
    "Log": log_tab,
    "Actions": actions_tab,
}
tabs = st.tabs(list(TABS), key="tab", bind="query-params")
for tab, show in zip(tabs, TABS.values(), strict=True):
    if tab.open:
        with tab:
            show()

# --- where and when `python -m core serve` answered with this version ---------------------
if row.status == READY:
    st.markdown("**Serving history**")
    served = serving_history(registry, model, row.id)
    if served:
        st.dataframe(pd.DataFrame(served), hide_index=True, width="stretch", key="serving")
        st.caption("Per hour and host (UTC), from the service's per-minute aggregates.")
    else:
        st.caption(f"v{row.version} has not been served by `python -m core serve`.")
