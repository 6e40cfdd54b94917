"""Page set-up, login gate, cached registry and models, and small display helpers."""

from __future__ import annotations

import hmac
import os
import re
import time
from collections.abc import Callable
from typing import Any

import streamlit as st

from core import builds, charts
from core.actor import MAX_ACTOR_CHARS, current_actor
from core.artifacts import ArtifactStore, open_store
from core.builders import resolve_backend
from core.config import DEFAULT_MODEL, settings
from core.errors import AltruismError
from core.predict import load_model
from core.registry import Registry
from core.schema import ModelVersion
from ui import guards

PASSWORD_ENV = "DASHBOARD_PASSWORD"
MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&])")


def md(text: object) -> str:
    """`text` escaped so Markdown shows it literally: user and archive strings (recipes,
    builders, aliases, dataset names, errors echoing input) never render as links,
    images, HTML or colour directives."""
    return MARKDOWN_SPECIALS.sub(r"\\\1", " ".join(str(text).split("\n")))


def version_numbers(raw: object, limit: int = 4) -> list[int]:
    """Version numbers from a query parameter such as `?v=3` or `?v=1,2`: ASCII digits only
    (`str.isdigit` accepts '²'), at most `limit`, duplicates and junk dropped."""
    numbers = []
    for part in str(raw or "").split(",")[:100]:
        part = part.strip()
        if part.isascii() and part.isdigit() and len(part) <= 18:
            numbers.append(int(part))
    return list(dict.fromkeys(numbers))[:limit]


# At 1280 px with the sidebar open the wide layout's 5rem side padding leaves ~820 px; 1.5rem
# gives the tables and charts ~110 px more. HTML table cells wrap and break long values (JSON
# params, digests) instead of cutting them off with an ellipsis or passing the window; the
# first two columns (names: field, metric, version, status) are never broken mid-word.
LAYOUT_CSS = """<style>
[data-testid="stMainBlockContainer"] { padding-left: 1.5rem; padding-right: 1.5rem; }
[data-testid="stTable"] table { display: table !important; width: 100% !important; }
[data-testid="stTable"] td, [data-testid="stTable"] th,
[data-testid="stTable"] td *, [data-testid="stTable"] th * {
  white-space: normal !important; overflow-wrap: anywhere !important;
}
[data-testid="stTable"] tr > :is(td, th):nth-child(-n + 2),
[data-testid="stTable"] tr > :is(td, th):nth-child(-n + 2) * {
  white-space: nowrap !important; overflow-wrap: normal !important;
}
[data-testid="stTable"] [data-testid="stMarkdownContainer"] {
  display: block !important; width: auto !important; max-width: none !important;
  overflow: visible !important;
}
</style>"""


def page_setup(title: str, icon: str = "🍕") -> None:
    """Common page config, the server's guards, the optional login gate and the sidebar
    facts."""
    guards.install()
    st.set_page_config(page_title=f"{title} · Altruism Lab", page_icon=icon, layout="wide")
    st.html(LAYOUT_CSS)
    require_login()
    require_registry()


def require_registry() -> None:
    """Stop the page with one line when the registry cannot be opened or reached now."""
    try:
        registry = get_registry()
        registry.ping()
        recover_now(registry)
    except AltruismError as exc:
        st.error(f"The registry cannot be used right now: {md(exc)}")
        st.caption("Nothing was changed. Reload the page once the database is back.")
        st.stop()


def require_login() -> None:
    """When DASHBOARD_PASSWORD is set, ask for it (and the user's name, recorded with what
    they change) once per session (off by default)."""
    secret = os.environ.get(PASSWORD_ENV)
    if not secret or st.session_state.get("authenticated"):
        return
    st.title("Altruism Lab")
    with st.form("login"):
        name = st.text_input(
            "Your name", help="recorded with the versions you train, promote or archive"
        )
        typed = st.text_input("Team password", type="password")
        if st.form_submit_button("Sign in"):
            if hmac.compare_digest(typed.encode(), secret.encode()):
                st.session_state["authenticated"] = True
                st.session_state["login_name"] = " ".join(name.split())[:MAX_ACTOR_CHARS]
                st.rerun()
            st.error("Wrong password.")
    st.stop()


def actor() -> str:
    """Who this dashboard session acts as: the name given at sign-in, else the
    dashboard's ALTRUISM_ACTOR or OS user (`core.actor.current_actor`)."""
    return current_actor(st.session_state.get("login_name") or None)


RECOVERY_EVERY_S = 10.0
_last_recovery: dict[str, float] = {}


def recover_now(registry: Registry) -> None:
    """End builds that can never finish (a dead local worker, an expired lease), at most
    every RECOVERY_EVERY_S per registry for the whole server."""
    now = time.monotonic()
    if now - _last_recovery.get(registry.url, -RECOVERY_EVERY_S) < RECOVERY_EVERY_S:
        return
    _last_recovery[registry.url] = now
    builds.recover_orphans(registry)


@st.cache_resource(show_spinner=False)
def _registry(url: str) -> Registry:
    registry = Registry(url)
    builds.recover_orphans(registry)
    return registry


def get_registry() -> Registry:
    """The registry for REGISTRY_URL (opened, migrated and orphan-checked once per URL)."""
    return _registry(settings().registry_url)


def get_store() -> ArtifactStore:
    """The artifact store, one per ARTIFACT_ROOT for the whole server (an S3 client is slow
    to make: `import s3fs` and a connection)."""
    return _store(settings().artifact_root)


@st.cache_resource(show_spinner=False)
def _store(url: str) -> ArtifactStore:
    return open_store(url)


@st.cache_resource(show_spinner="Loading model ...", max_entries=16)
def _model(artifact_sha256: str, version_id: int, registry_url: str) -> Any:
    return load_model(_registry(registry_url).get_by_id(version_id), get_store())


def cached_model(row: ModelVersion) -> Any:
    """The version's pipeline, verified on first load and cached by artifact digest."""
    return _model(row.artifact_sha256, row.id, settings().registry_url)


@st.cache_data(ttl=30, show_spinner=False)
def builder_status() -> tuple[str, str]:
    """Which builder `auto` picks now and why (cached for 30 s)."""
    return resolve_backend("auto")


DATA_KINDS_SHOWN = {
    "sample": "bundled synthetic sample",
    "folder": "data folder",
    "upload": "upload",
    "file": "file",
    "imported": "imported",
}


def recipe_choices() -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Built-in recipes and the usable team recipes by name, and the team recipe files that
    cannot be used with why (one line each, never a traceback)."""
    from core.recipe_files import listing
    from core.recipes import RECIPES

    usable: dict[str, Any] = dict(RECIPES)
    broken = []
    for entry in listing():
        if entry["recipe"] is not None:
            usable[entry["name"]] = entry["recipe"]
        else:
            broken.append((entry["name"], entry["error"]))
    return usable, broken


def registry_where(url: str) -> str:
    """`SQLite file /path/registry.db` rather than `sqlite:////path/registry.db`."""
    if url.startswith("sqlite:///"):
        return f"SQLite file `{url[len('sqlite:///') :]}`"
    return f"`{url}`"


def dataset_label(row: Any) -> str:
    """`train.json.zip (data folder)`; the bundled sample is called what it is."""
    kind = getattr(row, "data_kind", None)
    if kind == "sample":
        return "synthetic sample"
    name = getattr(row, "data_name", None) or str(getattr(row, "data_sha256", "") or "")[:10]
    return f"{name} ({DATA_KINDS_SHOWN.get(kind, kind)})" if kind else name


def label(row: Any, aliases: dict[int, list[str]] | None = None) -> str:
    """`v3 · tfidf-logreg (champion) · train.json.zip (data folder)`."""
    names = (aliases or {}).get(row.id, [])
    alias_text = f" ({', '.join(names)})" if names else ""
    return f"v{row.version} · {row.recipe}{alias_text} · {dataset_label(row)}"


def model_name() -> str:
    """The model the dashboard shows (one model per registry by default)."""
    return st.session_state.get("model", DEFAULT_MODEL)


def show_error(exc: Exception) -> None:
    """A user-facing error without a traceback."""
    if isinstance(exc, AltruismError):
        st.error(md(exc))
    else:
        st.error(md(f"Something went wrong: {type(exc).__name__}: {exc}"))


def chart(container: Any, build: Callable[..., Any], *args: Any) -> None:
    """Draw core.charts' `build(*args)`, an Altair chart, at the height it asks for
    (Streamlit ignores it otherwise). Its Vega-Lite spec is cached per arguments: a finished
    version's figures never change, so a warm page run skips building the chart again
    (~10-40 ms a chart)."""
    spec = chart_spec(build.__name__, *args)
    height = spec.get("height")
    sized = {"height": int(height)} if isinstance(height, int | float) else {}
    container.vega_lite_chart(spec, width="stretch", **sized)


@st.cache_data(show_spinner=False, max_entries=512)
def chart_spec(name: str, *args: Any) -> dict[str, Any]:
    """The Vega-Lite spec of `core.charts.<name>(*args)`. Not validated here: Altair's
    jsonschema check is half of a chart's cost on a first page run, and every chart function
    is validated against the Vega-Lite schema by tests/test_charts.py instead."""
    return getattr(charts, name)(*args).to_dict(validate=False)


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"  # undefined (nothing to divide by) or not measured: never a made-up 0
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)
