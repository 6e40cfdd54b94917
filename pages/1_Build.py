"""Build: a form generated from the recipe definitions; builds run in the background."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from core import builds, sweeps
from core.builders.select import BACKENDS
from core.builds import MAX_FOLDS, MAX_REPEATS
from core.config import SAMPLE_DATA, settings
from core.datafiles import list_data_files, resolve_data_file, save_upload
from core.errors import AltruismError
from core.operating_point import DEFAULT_POLICY, POLICY_EXAMPLES
from core.recipes import Param
from core.schema import ACTIVE_STATUSES, CANCELLED, READY
from ui import guards
from ui.common import (
    actor,
    builder_status,
    dataset_label,
    get_registry,
    md,
    model_name,
    page_setup,
    recipe_choices,
    show_error,
)

CUSTOM_POLICY = "other (type it below)"
page_setup("Build")
registry = get_registry()
st.title("Build a candidate model")
builder, reason = builder_status()
st.caption(
    f"Builds run in the background, several at once. Builder `auto` currently picks "
    f"**{builder}** ({reason})."
)

RECENT, RECENT_SHOWN = timedelta(hours=24), 5  # finished builds kept in the panel
SOURCES = ("Bundled sample", "File in the data folder", "Upload a Kaggle-format file")
EVALUATIONS = ("Held-out split", "Cross-validation")


def param_widget(recipe: str, param: Param) -> Any:
    """One widget per recipe parameter, bounded by its declared range or choices."""
    key = f"param-{recipe}-{param.name}"
    help_text = param.help + (
        f" (valid: {param.low:g} to {param.high:g})" if param.low is not None else ""
    )
    if param.many:
        picked = st.multiselect(
            param.name,
            param.many,
            default=[f for f in str(param.default).split(",") if f in param.many],
            key=key,
            help=help_text,
        )
        return ",".join(picked)
    if param.choices:
        return st.selectbox(
            param.name,
            param.choices,
            key=key,
            help=help_text,
            index=param.choices.index(param.default),
        )
    if param.kind is bool:
        return st.checkbox(param.name, value=param.default, key=key, help=help_text)
    if param.kind is int:
        return st.number_input(
            param.name,
            min_value=int(param.low),
            max_value=int(param.high),
            value=int(param.default),
            step=1,
            key=key,
            help=help_text,
        )
    if param.kind is float:
        return st.number_input(
            param.name,
            min_value=float(param.low),
            max_value=float(param.high),
            value=float(param.default),
            format="%g",
            key=key,
            help=help_text,
        )
    return st.text_input(param.name, value=param.default, key=key, help=help_text)


def sweep_grid(recipe_name: str, text: str) -> dict[str, list[str]] | None:
    """The typed sweep as a grid, its size said under the field; None when empty or bad."""
    items = [item for item in text.split(";") if item.strip()]
    if not items:
        return None
    try:
        grid = sweeps.parse_grid(items)
        count = len(sweeps.combinations(recipe_name, grid))
    except AltruismError as exc:
        show_error(exc)
        return None
    st.caption(
        f"This sweep launches **{count} builds** ("
        + " × ".join(f"{len(v)} {k}" for k, v in grid.items())
        + f"), {sweeps.parallel_builds()} at a time (on a swarm, as many as its nodes have CPUs)."
    )
    return grid


def launch_sweep(request: builds.TrainRequest, grid: dict[str, list[str]]) -> None:
    sweep = sweeps.submit_sweep(request, grid, registry)
    fresh = [s.version.id for s in sweep.submissions if not s.reused]
    if fresh:
        sweeps.launch_sweep(sweep, registry)
    st.session_state.setdefault("my_builds", []).extend(fresh)
    st.toast(f"{sweep.sweep_id}: {len(fresh)} builds started")
    st.success(
        f"{sweep.sweep_id}: {len(sweep.submissions)} versions "
        f"({len(sweep.submissions) - len(fresh)} already built). Filter them on **Versions** "
        "by this sweep; **Compare** offers the best of it against the champion."
    )


def choose_dataset(source: str) -> str | None:
    """The dataset path the build will read, or None until one is chosen and valid."""
    if source == SOURCES[0]:
        st.caption(f"`{SAMPLE_DATA.name}`: 400 synthetic requests in the Kaggle format.")
        return str(SAMPLE_DATA)
    if source == SOURCES[1]:
        files = list_data_files()
        if not files:
            st.info(
                "No .json, .jsonl or .zip files of yours in the data folder yet (the bundled "
                "sample is under 'Bundled sample'). Put the Kaggle train.json.zip there."
            )
            return None
        name = st.selectbox("Dataset file", files)
        try:
            return str(resolve_data_file(name))
        except AltruismError as exc:
            show_error(exc)
            return None
    context = get_script_run_ctx()
    held, total = guards.uploads_held(context.session_id if context else None)
    room = total - held
    if room < settings().upload_limit_mb:
        st.warning(
            f"The server holds {held:.0f} MB of uploads for all visitors (limit {total:g} MB, "
            f"UPLOADS_TOTAL_MB): an upload over {max(room, 0):.0f} MB is refused now (the "
            "uploader then says 'status code 413'). Try again in a few minutes, or put the "
            "file in the data folder."
        )
    upload = st.file_uploader(
        "Kaggle-format dataset",
        type=["json", "jsonl", "zip"],
        help=f"One upload at a time per visitor (a new one replaces it), at most "
        f"{settings().upload_limit_mb:g} MB; the server holds at most "
        f"{settings().uploads_total_mb:g} MB of uploads for everyone at once (UPLOADS_TOTAL_MB) "
        "and refuses more until they are gone. Larger files: put them in the data folder.",
    )
    if upload is None:
        return None
    cache = st.session_state.setdefault("uploads", {})
    key = (upload.name, upload.size, upload.file_id)
    if key not in cache:
        try:
            path, dataset = save_upload(upload.name, upload.getvalue())
            cache[key] = (str(path), dataset.rows, dataset.positives)
        except AltruismError as exc:
            show_error(exc)
            return None
    path, rows, positives = cache[key]
    st.success(
        f"Valid: {rows} requests, {positives} received a pizza. Stored as "
        f"{md(path.rsplit('/', 1)[-1])}."
    )
    return path


left, right = st.columns([3, 2])
with left:
    usable, broken = recipe_choices()
    recipe_name = st.selectbox(
        "Recipe",
        list(usable),
        key="recipe",
        format_func=lambda name: f"{name} ({usable[name].origin})",
        help="Built-in recipes and the team's recipe files (RECIPE_DIR)",
    )
    recipe = usable[recipe_name]
    st.caption(md(recipe.summary))
    for name, error in broken:
        st.warning(md(f"Team recipe {name} cannot be built: {error}"))
    source = st.radio("Dataset", SOURCES, horizontal=True, key="source")
    data_path = choose_dataset(source)
    evaluation = st.radio(
        "Evaluation",
        EVALUATIONS,
        horizontal=True,
        key="evaluation",
        help="Cross-validation scores every request out of fold (K fits plus the final fit on "
        "all the data): comparisons between versions then use every request, not one test "
        "fifth. Versions compare only when evaluated the same way on the same data.",
    )
    cv = evaluation == EVALUATIONS[1]
    grid_text = st.text_input(
        "Sweep (optional)",
        key="sweep",
        placeholder="e.g. C=0.1,1,10; min_df=1,3",
        help="One build per combination of these parameter values (they replace the form's "
        f"value for that parameter); at most {sweeps.MAX_SWEEP} builds, run "
        "MAX_PARALLEL_BUILDS at a time (on a swarm, as many as its nodes have CPUs) and tagged "
        "with one sweep id.",
    )
    grid = sweep_grid(recipe_name, grid_text)

    with st.form("build-form"):
        st.markdown("**Parameters**")
        cols = st.columns(2)
        params = {}
        for i, param in enumerate(recipe.params):
            with cols[i % 2]:
                params[param.name] = param_widget(recipe_name, param)
        st.markdown("**Evaluation, builder and limits**")
        cols = st.columns(4 if cv else 3)
        seed = cols[0].number_input("Seed", 0, 2**31 - 1, 42, step=1)
        if cv:
            folds = cols[1].number_input("Folds", 2, MAX_FOLDS, 5, step=1)
            repeats = cols[2].number_input("Repeats", 1, MAX_REPEATS, 1, step=1)
            test_size = 0.2
        else:
            test_size = cols[1].number_input("Test fraction", 0.05, 0.5, 0.2, step=0.05)
        policy = cols[-1].selectbox(
            "Decision threshold",
            (*POLICY_EXAMPLES, "fixed:0.5", CUSTOM_POLICY),
            key="threshold_policy",
            help="How the threshold that turns probabilities into decisions (the confusion "
            "matrix, FPR, FNR, precision, recall, F1) is chosen, on the training data only: "
            "f1 (default), balanced-accuracy, cost:FN=3,FP=1 (a missed pizza costs 3, a false "
            "promise 1), recall>=0.6, precision>=0.5, or fixed:T. Pick 'other' to type your "
            "own numbers.",
        )
        custom_policy = st.text_input(
            "Other threshold policy (when 'other' is picked)",
            key="custom_policy",
            placeholder="e.g. cost:FN=5,FP=1, recall>=0.7, precision>=0.4 or fixed:0.3",
        )
        cols = st.columns(3)
        backend = cols[0].selectbox(
            "Builder",
            BACKENDS,
            help="auto: Docker when an engine answers, else local. swarm: a one-off job on "
            "the Docker Swarm that DOCKER_HOST manages (needs SWARM_IMAGE_REGISTRY)",
        )
        timeout = cols[1].number_input("Timeout (s)", 10, 86_400, 3600, step=60)
        memory = cols[2].text_input("Memory (Docker)", "4g")
        cols = st.columns(3)
        cpus = cols[0].number_input(
            "CPUs (Docker)", 0.0, 64.0, 0.0, step=0.5, help="0 means every CPU of the engine"
        )
        force = cols[1].checkbox(
            "Retrain if identical",
            help="Otherwise an identical ready version is reused instead of training again",
        )
        submitted = st.form_submit_button("Start build", type="primary")

    if submitted:
        if data_path is None:
            st.error("Choose a dataset first.")
        elif grid_text.strip() and grid is None:
            st.error("Fix the sweep above (or empty it) first; nothing was started.")
        else:
            request = builds.TrainRequest(
                recipe=recipe_name,
                params=params,
                data_path=data_path,
                seed=int(seed),
                test_size=float(test_size),
                threshold_policy=(custom_policy if policy == CUSTOM_POLICY else policy)
                or DEFAULT_POLICY,
                model=model_name(),
                backend=backend,
                force=force,
                timeout_s=float(timeout),
                memory=memory.strip() or None,
                cpus=float(cpus) or None,
                cv_folds=int(folds) if cv else None,
                cv_repeats=int(repeats) if cv else 1,
                actor=actor(),
            )
            try:
                if grid:
                    launch_sweep(request, grid)
                else:
                    submission = builds.submit(request, registry)
                    row = submission.version
                    if submission.reused and row.status in ACTIVE_STATUSES:
                        st.session_state.setdefault("my_builds", []).append(row.id)
                        st.info(
                            f"Version {row.version} is already building from exactly this "
                            "request; following it below instead of starting a duplicate."
                        )
                    elif submission.reused:
                        st.info(
                            f"Version {row.version} was already built from exactly this "
                            f"recipe, parameters, dataset ({md(dataset_label(row))}), "
                            "evaluation, threshold policy and code; reusing it. Tick "
                            "'Retrain if identical' to build again."
                        )
                    else:
                        builds.launch(row.id, registry)
                        st.session_state.setdefault("my_builds", []).append(row.id)
                        st.toast(f"Build v{row.version} started ({submission.builder})")
            except AltruismError as exc:
                show_error(exc)


def _finished_since(row: object, since: datetime) -> bool:
    finished = getattr(row, "finished_at", None)
    if finished is None:
        return False
    if finished.tzinfo is None:  # SQLite hands back naive UTC
        finished = finished.replace(tzinfo=UTC)
    return finished >= since


def elapsed(row: object) -> str:
    """`running 1m 05s` / `queued 12s`: how long the build has been at it."""
    since = getattr(row, "started_at", None) or getattr(row, "created_at", None)
    if since is None:
        return ""
    if since.tzinfo is None:  # SQLite hands back naive UTC
        since = since.replace(tzinfo=UTC)
    seconds = max(0, int((datetime.now(UTC) - since).total_seconds()))
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def sweep_progress(rows: list) -> list[str]:
    """`sweep-ab12cd: 3 of 6 builds done (1 failed)` for each sweep with a build shown."""
    lines = []
    for sweep in sweeps.sweeps_of(rows):
        members = [
            r["status"] for r in registry.list_rows(model_name(), tag=sweep, include_archived=True)
        ]
        finished = [s for s in members if s not in ACTIVE_STATUSES]
        failed = sum(s != READY for s in finished)
        lines.append(
            f"{sweep}: {len(finished)} of {len(members)} builds done"
            + (f" ({failed} failed or cancelled)" if failed else "")
        )
    return lines


@st.fragment(run_every=2)
def build_panel() -> None:
    """Active builds and this session's builds, with live log tails; refreshes itself."""
    mine = st.session_state.get("my_builds", [])
    since = datetime.now(UTC) - RECENT
    recent = []  # finished lately: still listed after a reload
    rows = []
    for r in registry.list_versions(model_name(), limit=50):
        if r.status in ACTIVE_STATUSES or r.id in mine:
            rows.append(r)
        elif _finished_since(r, since) and len(recent) < RECENT_SHOWN:
            recent.append(r)
    rows += recent
    swept = {
        version_id: values
        for sweep in sweeps.sweeps_of(rows)
        for version_id, values in sweeps.swept_values(
            [r for r in rows if sweep in [t.name for t in r.tags]]
        ).items()
    }
    st.subheader("Builds")
    if not rows:
        st.caption("No builds running. Start one with the form.")
        return
    for line in sweep_progress(rows):
        st.caption(line)
    for row in rows:
        state = (
            "running"
            if row.status in ACTIVE_STATUSES
            else "complete"
            if row.status == READY
            else "error"
        )
        detail = row.stage or row.status
        if row.status in ACTIVE_STATUSES:
            detail += f" · {elapsed(row)}"
        auc = (row.metrics or {}).get("roc_auc")
        f1 = (row.metrics or {}).get("f1")
        title = (
            f"v{row.version} · {md(row.recipe)}"
            + (f" ({md(sweeps.swept_words(swept[row.id]))})" if swept.get(row.id) else "")
            + f" · {md(row.builder)} · {detail}"
            + (f" · ROC AUC {auc:.4f}" if auc is not None else "")
            + (f" · F1 {f1:.3f} at threshold {row.threshold:.3g}" if f1 is not None else "")
            + (" · ⚠ single-class" if row.flags else "")
            + f" · {md(dataset_label(row))}"
        )
        expanded = state == "running" or row.id in mine  # this session's: open, with links
        # not `with st.status(...)`: leaving that block marks a running status complete (✓)
        box = st.status(title, state=state, expanded=expanded)
        with box.container():
            if row.status not in ACTIVE_STATUSES:
                st.markdown(f"[Open v{row.version} on Versions](./Versions?v={row.version})")
            if row.error:
                (st.warning if row.status == CANCELLED else st.error)(md(row.error))
            tail = registry.log_tail(row.id, 2500) or row.log_tail or ""
            if tail:
                st.code(tail, language=None, wrap_lines=True)
            if row.status in ACTIVE_STATUSES and not row.cancel_requested:
                if st.button("Cancel build", key=f"cancel-{row.id}"):
                    try:
                        registry.request_cancel(row.id, actor=actor())
                        st.toast(f"Cancelling v{row.version} ...")
                    except AltruismError as exc:
                        show_error(exc)
            elif row.cancel_requested and row.status in ACTIVE_STATUSES:
                st.caption("Cancelling ...")


with right:
    build_panel()
