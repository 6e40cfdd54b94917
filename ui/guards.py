"""Guards for the dashboard's server process: installed once, by the first page run.

Streamlit runs every page run in a thread of its own, and answers HTTP (the health endpoint,
uploads) on one asyncio event loop, in the same process. Two things go wrong without these:

* CPU: with 50 visitors each page run is a Python thread wanting the GIL; the event loop gets
  a turn only once in ~50, and `/_stcore/health` took seconds (bench/ui_bench.py --load).
  At most SCRIPT_RUNS page runs execute at once (default 2); the others wait on a semaphore,
  where they do not compete for the GIL. The GIL is also handed over every 1 ms instead of
  5 ms, so the loop waits less for its turn.
* Memory: Streamlit keeps every uploaded file in memory for as long as its session lives,
  and accepts any number of them, before any page (or the login gate) sees them. Each
  session now holds at most one upload (a newer one replaces the older), and the server
  holds at most UPLOADS_TOTAL_MB of them in all; beyond it an upload is refused with HTTP
  413 and a sentence saying why (Streamlit's uploader shows only the status code, so the
  Build page says it too, from `uploads_held`).
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from core.config import settings

_installed = False
_lock = threading.Lock()
SWITCH_INTERVAL_S = 0.001
UPLOAD_REFUSED = (
    "The server holds {held:.0f} MB of uploads already (limit {limit:g} MB, UPLOADS_TOTAL_MB): "
    "try again in a few minutes, or put the file in the data folder."
)


def install() -> None:
    """Install the guards into this Streamlit server process (idempotent). Not under
    `AppTest` (the page tests): it runs pages in the test's own process, not a server."""
    global _installed
    with _lock:
        if _installed or "streamlit.testing.v1.app_test" in sys.modules:
            return
        conf = settings()
        _navigation_only()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        _limit_script_runs(conf.script_runs)
        _cap_uploads(int(conf.uploads_total_mb * 1024 * 1024))
        _installed = True


# What the pages import (and what those modules import lazily on a first build, compare or
# explanation): imported before the server takes visitors, not by the first page run of each
# kind while 50 others wait on the import and the GIL.
WARM_MODULES = (
    "pandas",
    "altair",
    "sklearn.linear_model",
    "ui.common",
    "core.builds",
    "core.sweeps",
    "core.compare",
    "core.evaluate",
    "core.explain",
    "core.modelcard",
    "core.predict",
    "core.serving.live",
    "core.datafiles",
    "pandas.io.formats.style",  # the Styler of the tables (and jinja2)
    "streamlit.emojis",  # st.set_page_config's check of the page icon
)


def warm_imports() -> None:
    """Import WARM_MODULES now (the launcher calls it before the server starts), and skip
    the first page run's one-off check for a REPL (Streamlit's warning about not running
    under `streamlit run`, which this launcher always is): it walks the whole stack with
    `inspect.stack()`, reading every frame's source, ~0.3 s. One chart is built, as the
    pages build theirs (ui.common.chart_spec), so the first page's charts do not pay
    Altair's one-off set-up (~0.07 s)."""
    import importlib

    for name in WARM_MODULES:
        importlib.import_module(name)
    from streamlit import delta_generator

    from core import charts

    charts.rates_bars([{"version": "v1", "fpr": 0.1, "fnr": 0.2}]).to_dict(validate=False)

    delta_generator._use_warning_has_been_displayed = True


def _navigation_only() -> None:
    """The pages are declared by app.py's `st.navigation`. Streamlit still takes a `pages/`
    folder beside app.py for its older folder-based navigation, process-wide, until some
    session has run `st.navigation`: on a fresh server, a first visitor who opened
    /Versions (a bookmark, a link from another page) got the page run without app.py, and
    a sidebar listing the folder, Home labelled "app". Say at start-up what st.navigation
    would say on its first run."""
    from streamlit.runtime.pages_manager import PagesManager

    PagesManager.uses_pages_directory = False


def _limit_script_runs(slots: int) -> None:
    from streamlit.runtime.scriptrunner.script_runner import ScriptRunner

    original = ScriptRunner._run_script
    gate = threading.BoundedSemaphore(slots)

    def run_script(self: Any, rerun_data: Any) -> None:
        with gate:
            original(self, rerun_data)

    run_script.__wrapped__ = original  # type: ignore[attr-defined]
    ScriptRunner._run_script = run_script  # type: ignore[method-assign]


def upload_quota(
    held: dict[str, dict[str, Any]], session_id: str, file_id: str, size: int, limit: int
) -> tuple[list[str], str | None]:
    """Which of the session's held files a new upload replaces, and why it is refused
    (None: accepted). `held` maps session id -> file id -> record with `.data`."""
    replaced = [fid for fid in held.get(session_id, {}) if fid != file_id]
    total = sum(len(rec.data) for files in held.values() for rec in files.values())
    mine = sum(len(rec.data) for rec in held.get(session_id, {}).values())
    if total - mine + size > limit:
        mib = 1024 * 1024
        return replaced, UPLOAD_REFUSED.format(held=(total - mine) / mib, limit=limit / mib)
    return replaced, None


def _cap_uploads(limit: int) -> None:
    from starlette.exceptions import HTTPException
    from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager

    original = MemoryUploadedFileManager.add_file

    def add_file(self: Any, session_id: str, file: Any) -> None:
        with self._lock:
            replaced, refused = upload_quota(
                self.file_storage, session_id, file.file_id, len(file.data), limit
            )
        if refused:
            raise HTTPException(status_code=413, detail=refused)
        for file_id in replaced:  # one upload per session: the newest
            self.remove_file(session_id, file_id)
        original(self, session_id, file)

    add_file.__wrapped__ = original  # type: ignore[attr-defined]
    MemoryUploadedFileManager.add_file = add_file  # type: ignore[method-assign]


def uploads_held(session_id: str | None = None) -> tuple[float, float]:
    """(MB of uploads this server holds for the other sessions now, UPLOADS_TOTAL_MB): the
    room a new upload of `session_id` has (its own held upload would be replaced). (0, total)
    outside a server."""
    total = settings().uploads_total_mb
    try:
        from streamlit.runtime import Runtime

        manager = Runtime.instance().uploaded_file_mgr
        with manager._lock:
            held = sum(
                len(record.data)
                for session, files in manager.file_storage.items()
                if session != session_id
                for record in files.values()
            )
    except Exception:
        return 0.0, total
    return held / (1024 * 1024), total
