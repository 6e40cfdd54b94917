"""Dashboard benchmark: server-side page render times, Try-a-request latency, memory.

Run from the repository root:

    .venv/bin/python bench/ui_bench.py [--data PATH] [--runs 5] [--versions 5000]
                                       [--calls 200] [--no-browser] [--no-write]

    .venv/bin/python bench/ui_bench.py --load [--load-clients 50] [--load-seconds 60]
                                       [--load-builds 2] [--data PATH] [--no-write]

Everything runs against temporary REGISTRY_URL / ARTIFACT_ROOT / LOG_ROOT / DATA_DIR folders
(never the checkout's registry.db). Results are printed as markdown and, unless --no-write,
stored in docs/benchmarks.md under "## Dashboard (bench/ui_bench.py)" (other sections are
left alone).

What is measured:

* Compare with 4 versions: wall time of `AppTest.from_file("pages/3_Compare.py")` with
  `?v=1,2,3,4` (four real local builds on one split). "cold" clears `st.cache_data` before each
  run, so the paired bootstrap statistics (2,000 resamples x 3 pairs) are recomputed; "warm"
  is a rerun that hits the page's cache. Median of `--runs`.
* Versions with 5,000 versions: wall time of `AppTest.from_file("pages/2_Versions.py")` on a
  registry holding `--versions` versions (bulk-inserted with SQLAlchemy, cloned from the real
  builds with their full metrics and provenance JSON; 1 in 10 failed, a few tags and aliases).
  Median of `--runs`, with a per-call breakdown from timing-only wrappers around the registry
  reads, the table serialisation and the selectbox (no page code is changed).
* Try a request with the model cached: (a) wall time of an AppTest rerun of
  pages/4_Try_a_request.py after a new text is typed and Predict is clicked, i.e. the whole
  server-side script run from submit to the probability metric (and the word chart), after a
  first untimed predict that loads and caches the model; (b) the core path that run executes:
  `cached_model(row)` (a `st.cache_resource` hit) + `make_request` + `predict_proba`.
  p50 / p99 over `--calls` runs.
* Memory with 4 models cached: VmRSS / VmHWM of a `streamlit run app.py` server process after
  Chromium (Playwright) opened Try a request in "All ready versions" mode and predicted, which
  loads all four models into the server's cache. With --no-browser (or without Chromium), the
  fallback is the RSS of this process after the same AppTest run (it also holds AppTest itself).
* Under load (--load, its own section "## Dashboard under load"): a real dashboard server
  (`python -m ui.dashboard`), `/_stcore/health` timed every 0.1 s, first idle, then with
  `--load-clients` websocket visitors going round the pages (bench/ui_load.py) while
  `--load-builds` local cross-validated builds on `--data` run (a finished one is replaced);
  p50/p95/p99/max and the ratio to idle. Then three visitors who never signed in PUT six
  40 MB files each to the upload endpoint: accepted/refused counts and the server's RSS.
* Pages in a real browser (issue 23 item 10; its own section "## Dashboard pages in a browser
  (bench/ui_bench.py)"): Chromium (Playwright) at 1280 x 900 against `streamlit run app.py` on
  the four real builds. "first" is the page opened on a freshly started server (nothing cached:
  imports, registry, models, statistics); "warm" reloads the page on that server (a new
  session, the server's caches warm), median of `--runs`. Each time runs from navigation
  until the page's key elements are shown and Streamlit is idle (the script finished),
  checked in the page on every animation frame. Try a
  request is timed from pressing Predict to the probability shown, for one version. A blank
  Streamlit page (a title and a line, plain `streamlit run`) is timed the same way: the floor
  Streamlit and Chromium set on the machine. Only this part: `--pages-only`.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import resource
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import machine as shared_machine  # noqa: E402
from bench.common import quantile, read_text, table, write_section  # noqa: E402
from ui.server import CHROMIUM, CHROMIUM_ARGS, browser_status  # noqa: E402

DEFAULT_DATA = (ROOT / ".." / "shared" / "data" / "raop" / "train.json.zip").resolve()
SAMPLE_DATA = ROOT / "data" / "sample.json"
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Dashboard (bench/ui_bench.py)"
LOAD_SECTION = "## Dashboard under load (bench/ui_bench.py --load)"
HEALTH_P99_TARGET_S = 1.0
UPLOAD_RSS_TARGET_MB = 500.0
PAGES_SECTION = "## Dashboard pages in a browser (bench/ui_bench.py)"
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
# page: (path, warm target s, first-render target s or None); issue 23 item 10
PAGE_TARGETS: dict[str, tuple[str, float | None, float | None]] = {
    "Home": ("", 1.0, None),
    "Build": ("/Build", None, None),
    "Versions": ("/Versions", 1.0, None),
    "Versions, one version's details (?v=4)": ("/Versions?v=4", None, None),
    "Compare, 4 versions": ("/Compare?v=1,2,3,4", 1.5, 3.0),
    "Try a request, 1 version (Predict → probability)": ("/Try_a_request", 1.0, None),
}
COMPARE_TARGET_S = 1.5
VERSIONS_TARGET_S = 1.5
TRY_P99_TARGET_MS = 50.0
MEMORY_TARGET_MB = 400.0
BUILDS = (  # four versions on one split (seed 42): Compare shows paired statistics
    ("nb-bow", {}),
    ("tfidf-logreg", {}),
    ("tfidf-meta-logreg", {}),
    ("nb-bow", {"alpha": 0.3}),
)
TITLE = "[Request] Broke student in Ohio, payday is Friday"
TEXT = (
    "Lost my job last week and the fridge is empty. My kids would love a pizza tonight; "
    "I will pay it forward when I am back on my feet. Thank you all!"
)


# --- small helpers -----------------------------------------------------------------------


def seconds(value: float) -> str:
    return f"{value:.2f} s" if value >= 1 else f"{value * 1000:.0f} ms"


def ms(value: float) -> str:
    return f"{value * 1000:.1f} ms"


def verdict(ok: bool) -> str:
    return "✅ met" if ok else "❌ missed"


def machine() -> dict[str, Any]:
    import streamlit

    return shared_machine() | {"streamlit": streamlit.__version__}


def proc_status_kib(pid: int | str, field: str) -> int | None:
    match = re.search(rf"^{field}:\s*(\d+) kB", read_text(f"/proc/{pid}/status"), re.M)
    return int(match.group(1)) if match else None


class CpuMonitor:
    """How busy the rest of the machine was while the benchmark ran (from /proc/stat)."""

    def __init__(self) -> None:
        self.ticks = os.sysconf("SC_CLK_TCK")
        self.busy, self.total = self._system()
        self.own = self._own()
        self.wall = time.monotonic()
        self.load = read_text("/proc/loadavg").split()[:1]

    def _system(self) -> tuple[float, float]:
        fields = [float(v) for v in read_text("/proc/stat").splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
        return (sum(fields) - idle) / self.ticks, sum(fields) / self.ticks

    @staticmethod
    def _own() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    def report(self) -> str:
        busy, _ = self._system()
        wall = time.monotonic() - self.wall
        others = max(0.0, (busy - self.busy) - (self._own() - self.own))
        share = others / (wall * len(os.sched_getaffinity(0))) if wall > 0 else 0.0
        self.share = share
        load = read_text("/proc/loadavg").split()[:1]
        return (
            f"other processes used {share:.0%} of the machine's CPU time during the run "
            f"(1-minute load average {''.join(self.load) or '?'} at the start, "
            f"{''.join(load) or '?'} at the end)"
        )


def log(message: str) -> None:
    print(f"[ui_bench] {message}", file=sys.stderr, flush=True)


# --- environment -------------------------------------------------------------------------
def use_home(home: Path) -> None:
    """Point the settings at `home` (the pages read them on every run)."""
    (home / "data").mkdir(parents=True, exist_ok=True)
    os.environ["REGISTRY_URL"] = f"sqlite:///{home / 'registry.db'}"
    os.environ["ARTIFACT_ROOT"] = str(home / "artifacts")
    os.environ["LOG_ROOT"] = str(home / "logs")
    os.environ["DATA_DIR"] = str(home / "data")


def page(path: str, **query: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / path), default_timeout=120)
    at.query_params.update(query)
    return at


def checked(at):
    if at.exception:
        raise RuntimeError(f"the page raised: {[e.message for e in at.exception]}")
    return at


def timed_run(target) -> tuple[float, Any]:
    start = time.perf_counter()
    at = target.run()
    elapsed = time.perf_counter() - start
    return elapsed, checked(at)


# --- setup -------------------------------------------------------------------------------
def build_versions(data: Path) -> list[Any]:
    """Four real local builds on one split of `data`."""
    from core import builds
    from core.registry import Registry

    registry = Registry()
    rows = []
    for recipe, params in BUILDS:
        start = time.perf_counter()
        row, _ = builds.train(
            builds.TrainRequest(
                recipe=recipe, params=params, data_path=data, backend="local", force=True
            ),
            registry,
        )
        if row.status != "ready":
            raise RuntimeError(f"build of {recipe} failed: {row.error}")
        log(f"built v{row.version} {recipe} in {time.perf_counter() - start:.1f} s")
        rows.append(row)
    return rows


def bulk_registry(templates: list[Any], count: int) -> None:
    """`count` versions cloned from the real builds, inserted in a few transactions."""
    from sqlalchemy import insert

    from core.registry import Registry
    from core.schema import Alias, Model, ModelVersion, Tag, utcnow

    registry = Registry()
    columns = [c.key for c in ModelVersion.__table__.columns if c.key not in ("id", "model_id")]
    with registry.session(write=True) as session:
        model = Model(name=templates[0].model.name, created_at=utcnow())
        session.add(model)
        session.flush()
        rows = []
        for number in range(1, count + 1):
            source = templates[number % len(templates)]
            row = {c: getattr(source, c) for c in columns}
            failed = number % 10 == 3  # the newest (shown in detail) is ready
            row.update(
                model_id=model.id,
                version=number,
                fingerprint=f"{number:064x}",
                created_at=utcnow(),
                status="failed" if failed else "ready",
                error="RuntimeError: injected training fault" if failed else None,
                metrics=None if failed else source.metrics,
                artifact_sha256=None if failed else source.artifact_sha256,
                worker_pid=None,
                note=f"bulk version {number}" if number % 50 == 0 else None,
            )
            rows.append(row)
        for start in range(0, len(rows), 1000):
            session.execute(insert(ModelVersion), rows[start : start + 1000])
        ids = dict(
            session.execute(
                ModelVersion.__table__.select()
                .with_only_columns(ModelVersion.version, ModelVersion.id)
                .where(ModelVersion.model_id == model.id)
            ).all()
        )
        session.execute(
            insert(Tag),
            [{"version_id": ids[v], "name": "baseline"} for v in range(7, count + 1, 97)],
        )
        for name, version in (("champion", count - 1), ("challenger", count - 2)):
            session.add(
                Alias(model_id=model.id, name=name, version_id=ids[version], updated_at=utcnow())
            )


# --- timing wrappers (Versions breakdown) ------------------------------------------------
@contextmanager
def wrapped(targets: dict[str, tuple[Any, str]]) -> Iterator[dict[str, list[float]]]:
    """Time every call of `owner.attr` (all threads) while inside the block."""
    spent: dict[str, list[float]] = {name: [] for name in targets}
    originals = []
    for name, (owner, attr) in targets.items():
        original = getattr(owner, attr)
        originals.append((owner, attr, original))

        def make(fn: Callable, bucket: list[float]) -> Callable:
            @functools.wraps(fn)
            def timed(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    bucket.append(time.perf_counter() - start)

            return timed

        setattr(owner, attr, make(original, spent[name]))
    try:
        yield spent
    finally:
        for owner, attr, original in originals:
            setattr(owner, attr, original)


# --- measurements ------------------------------------------------------------------------
def bench_compare(runs: int, versions: list[int]) -> dict[str, Any]:
    import streamlit as st

    from core import compare

    query = {"v": ",".join(map(str, versions))}
    timed_run(page("pages/3_Compare.py", **query))  # imports, registry open: untimed
    cold, warm, statistics_s = [], [], []
    for _ in range(runs):
        st.cache_data.clear()
        with wrapped({"compare": (compare, "compare")}) as spent:
            elapsed, at = timed_run(page("pages/3_Compare.py", **query))
        statistics_s.append(sum(spent["compare"]))
        if not any("McNemar p =" in m.value for m in at.markdown):
            raise RuntimeError("Compare did not show the paired statistics")
        # a confusion matrix per version, then rates, ROC, PR and calibration
        if len(at.get("vega_lite_chart")) != len(versions) + 4:
            raise RuntimeError("Compare did not draw every chart")
        cold.append(elapsed)
        warm.append(timed_run(page("pages/3_Compare.py", **query))[0])
    pairs = len(versions) - 1  # each against the baseline (one shared test set)
    return {"cold": cold, "warm": warm, "compare": statistics_s, "pairs": pairs}


def bench_versions(runs: int, count: int) -> dict[str, Any]:
    import streamlit

    from core import modelcard
    from core.registry import Registry

    timed_run(page("pages/2_Versions.py"))  # untimed warm-up
    times = []
    breakdown: dict[str, list[float]] = {}
    targets = {
        "registry.version_summaries (the table's rows)": (Registry, "version_summaries"),
        "registry.list_versions (full rows; no longer called)": (Registry, "list_versions"),
        "registry.get_by_id (the selected version)": (Registry, "get_by_id"),
        "registry.aliases_by_version": (Registry, "aliases_by_version"),
        "st.dataframe (table → Arrow → protobuf)": (streamlit, "dataframe"),
        f"st.selectbox ({count:,} options, labels)": (streamlit, "selectbox"),
        "model_card (only when the Actions tab is open)": (modelcard, "model_card"),
    }
    for _ in range(runs):
        with wrapped(targets) as spent:
            elapsed, at = timed_run(page("pages/2_Versions.py"))
        table_rows = len(at.dataframe[0].value)
        if table_rows != count:
            raise RuntimeError(f"Versions listed {table_rows} rows, expected {count}")
        times.append(elapsed)
        for name, values in spent.items():
            breakdown.setdefault(name, []).append(sum(values))
    # the two ways to read the listing, outside the page
    registry = Registry()
    reads: dict[str, list[float]] = {"list_versions": [], "version_summaries": []}
    for _ in range(runs):
        for name in reads:
            start = time.perf_counter()
            got = getattr(registry, name)("raop", include_archived=False)
            reads[name].append(time.perf_counter() - start)
            assert len(got) == count
    return {"times": times, "breakdown": breakdown, "reads": reads}


def bench_try(calls: int, version: int) -> dict[str, Any]:
    """Try a request with `version` as champion (the page's default version)."""
    import streamlit

    from core.predict import make_request, predict_proba
    from core.registry import Registry
    from ui.common import cached_model

    registry = Registry()
    registry.promote(version, "champion")
    row = registry.resolve("champion")
    at = checked(page("pages/4_Try_a_request.py").run())
    at.text_input[0].input(TITLE)
    at.text_area[0].input(TEXT)
    checked(at.button[0].click().run())  # loads and caches the model: untimed
    shown = at.metric[0].value
    page_runs, to_probability = [], []
    metric_at: list[float] = []
    original_metric = streamlit.metric

    def metric(*args: Any, **kwargs: Any) -> Any:
        try:
            return original_metric(*args, **kwargs)
        finally:
            metric_at.append(time.perf_counter())

    streamlit.metric = metric  # the page calls st.metric once, with the probability
    try:
        for i in range(calls):
            at.text_area[0].input(f"{TEXT} ({i})")
            at.button[0].click()
            metric_at.clear()
            start = time.perf_counter()
            elapsed, at = timed_run(at)
            if len(metric_at) != 1 or not at.metric[0].value.endswith("%"):
                raise RuntimeError("Try a request did not show one probability")
            page_runs.append(elapsed)
            to_probability.append(metric_at[0] - start)
    finally:
        streamlit.metric = original_metric

    cached_model(row)
    core_path = []
    for i in range(max(calls, 1000)):
        start = time.perf_counter()
        model = cached_model(row)
        now = time.time()
        record = make_request(
            TITLE,
            f"{TEXT} ({i})",
            unix_timestamp_of_request=now,
            unix_timestamp_of_request_utc=now,
        )
        predict_proba(model, [record])
        core_path.append(time.perf_counter() - start)
    return {
        "page": page_runs,
        "probability": to_probability,
        "core": core_path,
        "label": f"v{row.version} {row.recipe}",
        "example": shown,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_memory_browser(home: Path, expected_models: int) -> dict[str, Any]:
    """RSS of a `streamlit run` server after a browser predicted with every ready version."""
    from playwright.sync_api import sync_playwright

    from ui.server import running_dashboard

    idle = '[data-testid="stApp"][data-test-script-state="notRunning"]'
    with running_dashboard(home / "streamlit.log") as (url, process):
        idle_rss = proc_status_kib(process.pid, "VmRSS")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                tab = browser.new_page(viewport={"width": 1400, "height": 1000})
                tab.set_default_timeout(120_000)
                tab.goto(f"{url}/Try_a_request")
                tab.get_by_label("Request text", exact=True).wait_for()
                tab.locator(idle).wait_for()
                before = proc_status_kib(process.pid, "VmRSS")
                tab.get_by_label("Version", exact=True).click()
                tab.get_by_role("option", name="All ready versions", exact=True).click()
                tab.locator(idle).wait_for()
                tab.get_by_label("Title", exact=True).fill(TITLE)
                tab.get_by_label("Request text", exact=True).fill(TEXT)
                tab.get_by_role("button", name="Predict").click()
                tab.get_by_text("Words that pushed").wait_for()
                tab.locator(idle).wait_for()
                bars = tab.locator('[data-testid="stVegaLiteChart"]').first.text_content()
                if not bars or bars.count("%") < expected_models:
                    raise RuntimeError(f"expected {expected_models} probability bars: {bars!r}")
                time.sleep(1.0)
                after = proc_status_kib(process.pid, "VmRSS")
                peak = proc_status_kib(process.pid, "VmHWM")
            finally:
                browser.close()
    return {
        "method": "`streamlit run` server process (Chromium via Playwright)",
        "idle_kib": idle_rss,
        "before_kib": before,
        "after_kib": after,
        "peak_kib": peak,
    }


def bench_memory_apptest(expected_models: int) -> dict[str, Any]:
    """Fallback: this process's RSS after Try a request predicted with every version."""
    before = proc_status_kib("self", "VmRSS")
    at = checked(page("pages/4_Try_a_request.py").run())
    at.selectbox[0].select("All ready versions")
    checked(at.run())
    at.text_input[0].input(TITLE)
    at.text_area[0].input(TEXT)
    checked(at.button[0].click().run())
    if len(at.get("vega_lite_chart")) < 1:
        raise RuntimeError("no probability chart")
    return {
        "method": "this benchmark process (AppTest in-process; includes AppTest itself)",
        "idle_kib": None,
        "before_kib": before,
        "after_kib": proc_status_kib("self", "VmRSS"),
        "peak_kib": proc_status_kib("self", "VmHWM"),
        "models": expected_models,
    }


# Readiness is checked in the page on every animation frame (`wait_for_function(polling=
# "raf")`): Playwright's `locator.wait_for` polls at growing intervals (up to 0.5 s apart),
# which added up to half a second to a page that was already drawn.
READY_HELPERS = f"""
const idle = () => !!document.querySelector('{IDLE}');
const shown = (sel) => [...document.querySelectorAll(sel)].some(e => e.getClientRects().length);
const drawn = (n) => !!document.querySelectorAll(
  '[data-testid="stVegaLiteChart"]')[n]?.querySelector('svg, canvas');
const says = (text) => document.body.textContent.includes(text);
"""
TABLE_SHOWN = 'shown(".dvn-scroller") && says("Details for")'
READY_CHECKS = {  # page name prefix: its key elements, as a JavaScript expression
    "Home": 'says("ROC AUC by version") && drawn(0)',
    "Build": 'says("Start build")',
    "Versions,": TABLE_SHOWN + ' && shown("[data-testid=stMetricValue]") && drawn(1)',
    "Versions": TABLE_SHOWN,
    "Compare": 'drawn(7) && document.querySelectorAll("[data-testid=stTable]").length > 1',
    "Try": "shown(\"textarea[aria-label='Request text']\")",
    "blank": 'says("hello")',
}


def _wait_shown(tab: Any, check: str) -> None:
    """Wait, looking every animation frame, until the JavaScript `check` holds and the
    script has finished."""
    tab.wait_for_function(f"() => {{ {READY_HELPERS} return ({check}) && idle(); }}", polling="raf")


def _page_ready(tab: Any, name: str) -> None:
    """Wait until `name`'s key elements are shown and the script has finished."""
    _wait_shown(tab, next(c for prefix, c in READY_CHECKS.items() if name.startswith(prefix)))


def _open(tab: Any, url: str, name: str) -> float:
    start = time.perf_counter()
    tab.goto(url)
    _page_ready(tab, name)
    return time.perf_counter() - start


def _predict(tab: Any, text: str) -> float:
    """Type a request on Try a request and press Predict: seconds to the probability."""
    tab.get_by_label("Title", exact=True).fill(TITLE)
    tab.get_by_label("Request text", exact=True).fill(text)
    tab.locator(IDLE).wait_for()
    metric = tab.locator('[data-testid="stMetricValue"]')
    start = time.perf_counter()
    tab.get_by_role("button", name="Predict").click()
    _wait_shown(tab, "shown('[data-testid=stMetricValue]')")
    elapsed = time.perf_counter() - start
    if not metric.first.inner_text().strip().endswith("%"):
        raise RuntimeError("Try a request did not show a probability")
    return elapsed


BLANK_PAGE = "Blank Streamlit page (reference: a title and a line)"
BLANK_APP = """import streamlit as st

st.set_page_config(layout="wide")
st.title("Blank")
st.write("hello")
"""


@contextmanager
def blank_server(folder: Path) -> Iterator[str]:
    """`streamlit run` of a page with a title and one line: Streamlit's own floor."""
    import signal
    import subprocess

    from ui.server import _healthy, free_port

    script = folder / "blank_app.py"
    script.write_text(BLANK_APP)
    port = free_port()
    flags = ["--server.headless", "true", "--server.fileWatcherType", "none"]
    flags += ["--browser.gatherUsageStats", "false", "--server.port", str(port)]
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(script), *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not _healthy(url) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.3)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)


def bench_blank_page(browser: Any, folder: Path, runs: int) -> dict[str, Any]:
    """First and warm loads of the blank page, timed like the dashboard's pages."""
    with blank_server(folder) as url:
        tab = browser.new_page(viewport={"width": 1280, "height": 900})
        tab.set_default_timeout(120_000)
        try:
            times = []
            for _ in range(runs + 1):
                start = time.perf_counter()
                tab.goto(url)
                _page_ready(tab, "blank")
                times.append(time.perf_counter() - start)
        finally:
            tab.close()
    return {"first": times[0], "warm": times[1:]}


def bench_pages_browser(home: Path, runs: int) -> dict[str, dict[str, Any]]:
    """First render on a fresh server and warm reloads of each page, in Chromium."""
    from playwright.sync_api import sync_playwright

    from ui.server import running_dashboard

    results: dict[str, dict[str, Any]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for name, (path, _, _) in PAGE_TARGETS.items():
                log(f"browser: {name} ...")
                with running_dashboard(home / f"streamlit-{len(results)}.log") as (url, _):
                    tab = browser.new_page(viewport={"width": 1280, "height": 900})
                    tab.set_default_timeout(120_000)
                    try:
                        trying = name.startswith("Try")
                        first = _open(tab, url + path, name)
                        if trying:
                            first = _predict(tab, TEXT)
                        warm = []
                        for i in range(runs):
                            elapsed = _open(tab, url + path, name)
                            warm.append(_predict(tab, f"{TEXT} ({i})") if trying else elapsed)
                    finally:
                        tab.close()
                results[name] = {"first": first, "warm": warm}
            log("browser: a blank Streamlit page ...")
            results[BLANK_PAGE] = bench_blank_page(browser, home, runs)
        finally:
            browser.close()
    return results


def pages_report(info: dict[str, Any], results: dict[str, Any], args: argparse.Namespace) -> str:
    rows = []
    for name, (_, warm_target, first_target) in PAGE_TARGETS.items():
        got = results["pages"][name]
        warm = statistics.median(got["warm"])
        targets, verdicts = [], []
        if warm_target is not None:
            targets.append(f"warm ≤ {warm_target:g} s")
            verdicts.append(f"warm {verdict(warm <= warm_target)} ({warm / warm_target:.2f}×)")
        if first_target is not None:
            targets.append(f"first ≤ {first_target:g} s")
            ok = got["first"] <= first_target
            verdicts.append(f"first {verdict(ok)} ({got['first'] / first_target:.2f}×)")
        rows.append(
            [
                name,
                seconds(got["first"]),
                f"{seconds(warm)} ({seconds(min(got['warm']))}–{seconds(max(got['warm']))})",
                "; ".join(targets) or "–",
                "; ".join(verdicts),
            ]
        )
    if BLANK_PAGE in results["pages"]:
        got = results["pages"][BLANK_PAGE]
        warm = statistics.median(got["warm"])
        spread = f"{seconds(min(got['warm']))}–{seconds(max(got['warm']))}"
        rows.append([BLANK_PAGE, seconds(got["first"]), f"{seconds(warm)} ({spread})", "–", ""])
    out = [PAGES_SECTION, ""]
    out.append(
        f"Measured {info['date']} on {info['nproc']} CPUs ({info['cpu']}), Python "
        f"{info['python']}, Streamlit {info['streamlit']}, Chromium via Playwright at 1280 x "
        f"900 against `streamlit run app.py` on loopback. Data: `{results['data_name']}` "
        f"({results['data_rows']:,} requests), four local builds (nb-bow, tfidf-logreg, "
        f"tfidf-meta-logreg, nb-bow alpha 0.3). *first*: the page opened on a freshly started "
        f"server (`python -m ui.dashboard`, which imports the pages' modules before it answers; "
        f"nothing cached yet: registry, statistics, models, and a new browser context, so "
        f"Streamlit's JavaScript is fetched and compiled too); *warm*: the page reloaded on "
        f"that server, "
        f"median (min–max) of {args.runs}. Times run from navigation until the page's key "
        f"elements are shown and Streamlit is idle, checked in the page on every animation "
        f"frame; for Try a request from pressing Predict to the probability (first: the model "
        f"is loaded). Versions is timed as it opens (the table; a version's details once one "
        f"is chosen) and with one version's details in the address (its Overview tab: metrics, "
        f"confusion matrix and calibration chart drawn). {results['noise']}."
    )
    out.append("")
    out.append(table(["page", "first", "warm", "target", "verdict"], rows))
    out.append("")
    if results.get("noise_share", 0.0) > 0.1:
        out.append(
            "The machine was shared and busy during this run (other people's test runs): the "
            "targets are stated for a quiet 2-core machine, so a miss here is not conclusive."
        )
        out.append("")
    out.append(f"Reproduce: `.venv/bin/python bench/ui_bench.py --pages-only --runs {args.runs}`.")
    return "\n".join(out) + "\n"


# --- report ------------------------------------------------------------------------------
def report(info: dict[str, Any], results: dict[str, Any], args: argparse.Namespace) -> str:
    compare, versions, trying, memory = (
        results["compare"],
        results["versions"],
        results["try"],
        results["memory"],
    )
    compare_cold = statistics.median(compare["cold"])
    compare_warm = statistics.median(compare["warm"])
    versions_median = statistics.median(versions["times"])
    page_p50, page_p99 = quantile(trying["page"], 0.5), quantile(trying["page"], 0.99)
    prob_p50 = quantile(trying["probability"], 0.5)
    prob_p99 = quantile(trying["probability"], 0.99)
    core_p50, core_p99 = quantile(trying["core"], 0.5), quantile(trying["core"], 0.99)
    rss_mb = (memory["after_kib"] or 0) / 1024
    out = [SECTION, ""]
    out.append(
        f"Measured {info['date']} on {info['nproc']} CPUs ({info['cpu']}), "
        f"{info['memory_gib']:.1f} GiB RAM, Python {info['python']}, Streamlit "
        f"{info['streamlit']}. Data: `{results['data_name']}` ({results['data_rows']:,} "
        f"requests); server-side times are wall-clock `AppTest` script runs in one process "
        f"(no browser, no network); {results['noise']}."
    )
    out.append("")
    out.append(
        table(
            ["measurement", "result", "target", ""],
            [
                [
                    "Compare, 4 versions: render (median of "
                    f"{len(compare['cold'])}, cold: paired bootstrap recomputed)",
                    seconds(compare_cold),
                    f"≤ {COMPARE_TARGET_S} s",
                    verdict(compare_cold <= COMPARE_TARGET_S),
                ],
                [
                    "Compare, 4 versions: rerun with the statistics cached (median)",
                    seconds(compare_warm),
                    f"≤ {COMPARE_TARGET_S} s",
                    verdict(compare_warm <= COMPARE_TARGET_S),
                ],
                [
                    f"Versions, {args.versions:,} versions: render (median of "
                    f"{len(versions['times'])})",
                    seconds(versions_median),
                    f"≤ {VERSIONS_TARGET_S} s",
                    verdict(versions_median <= VERSIONS_TARGET_S),
                ],
                [
                    f"Try a request ({trying['label']}, model cached): submit → probability "
                    f"shown (rerun start → `st.metric` sent; p50 / p99 of "
                    f"{len(trying['probability'])})",
                    f"{ms(prob_p50)} / {ms(prob_p99)}",
                    f"p99 ≤ {TRY_P99_TARGET_MS:.0f} ms",
                    verdict(prob_p99 * 1000 <= TRY_P99_TARGET_MS),
                ],
                [
                    "Try a request: the whole rerun, incl. the word-contribution chart drawn "
                    "after the probability (p50 / p99)",
                    f"{ms(page_p50)} / {ms(page_p99)}",
                    "–",
                    "",
                ],
                [
                    "Try a request, core path: cached model + make_request + predict_proba "
                    f"(p50 / p99 of {len(trying['core'])})",
                    f"{ms(core_p50)} / {ms(core_p99)}",
                    f"p99 ≤ {TRY_P99_TARGET_MS:.0f} ms",
                    verdict(core_p99 * 1000 <= TRY_P99_TARGET_MS),
                ],
                [
                    "Dashboard memory, 4 models cached (RSS)",
                    f"{rss_mb:.0f} MB",
                    f"≤ {MEMORY_TARGET_MB:.0f} MB",
                    verdict(rss_mb <= MEMORY_TARGET_MB),
                ],
            ],
        )
    )
    out.append("")
    out.append(
        f"Compare, cold: `core.compare.compare` (metrics, provenance diff and the paired "
        f"bootstrap: {compare['pairs']} pairs x 2,000 resamples) takes "
        f"{seconds(statistics.median(compare['compare']))} of the "
        f"{seconds(compare_cold)}; the page caches it per selection (`st.cache_data`)."
    )
    out.append("")
    out.append(
        f"Versions breakdown (median per page run, {args.versions:,} versions; the rest is "
        "the page script itself: filtering, the DataFrame build, the other widgets):"
    )
    out.append("")
    rows = [
        [name, seconds(statistics.median(values))] for name, values in versions["breakdown"].items()
    ]
    out.append(table(["part", "time"], rows))
    out.append("")
    reads = versions["reads"]

    def both(values: list[float]) -> str:
        return f"{seconds(statistics.median(values))} (fastest {seconds(min(values))})"

    out.append(
        f"Reading the {args.versions:,}-version listing outside the page, median of "
        f"{len(reads['list_versions'])}: `list_versions` (full ORM rows, decoding every "
        f"version's params, metrics, provenance and reproduction JSON) "
        f"{both(reads['list_versions'])}; `version_summaries` (the table's columns only, "
        f"used by Versions and Home) {both(reads['version_summaries'])}."
    )
    out.append("")
    memory_bits = [f"method: {memory['method']}"]
    if memory.get("idle_kib"):
        memory_bits.append(f"server idle after start {memory['idle_kib'] / 1024:.0f} MB")
    if memory.get("before_kib"):
        memory_bits.append(f"before loading models {memory['before_kib'] / 1024:.0f} MB")
    memory_bits.append(f"after {rss_mb:.0f} MB (peak VmHWM {memory['peak_kib'] / 1024:.0f} MB)")
    out.append("Memory: " + "; ".join(memory_bits) + ".")
    out.append("")
    if results.get("noise_share", 0.0) > 0.25:
        out.append(
            "Other processes kept the machine busy during this run (see above): medians are "
            "robust to that, the p99 tail latencies are not (slow runs were spread over every "
            "step of the page, i.e. the script was waiting for a CPU)."
        )
        out.append("")
    out.append(
        f"Reproduce: `.venv/bin/python bench/ui_bench.py --runs {args.runs} --versions "
        f"{args.versions} --calls {args.calls}`"
        + (" --no-browser" if args.no_browser else "")
        + "."
    )
    return "\n".join(out) + "\n"


# --- under load --------------------------------------------------------------------------
def bench_load(home: Path, data: Path, clients: int, seconds: float, builds: int) -> dict:
    """Health latency idle and under load, then the upload flood, on one real server."""
    from bench import ui_load
    from ui.server import running_dashboard

    use_home(home)
    with running_dashboard(home / "server.log", timeout_s=180) as (url, process):
        log("idle baseline ...")
        idle = ui_load.measure(url, 0, min(seconds, 15))
        log(f"{clients} visitors + {builds} builds for {seconds:g} s ...")
        cpu_before = ui_load.process_tree_cpu_s(process.pid)
        with ui_load.running_builds(builds, str(data), seconds) as pids:
            loaded = ui_load.measure(url, clients, seconds)
        server_cpu = ui_load.process_tree_cpu_s(process.pid) - cpu_before
        log("upload flood ...")
        before, _ = ui_load.rss_mb(process.pid)
        statuses = ui_load.upload_flood(url, sessions=3, files=6, mb=40)
        after, peak = ui_load.rss_mb(process.pid)
    return {
        "idle": ui_load.summary(idle),
        "loaded": ui_load.summary(loaded),
        "page_median_s": statistics.median(loaded.page_s) if loaded.page_s else float("nan"),
        "server_cpu_s": server_cpu,
        "build_launches": len(pids),
        "uploads": {
            "accepted": sum(code == 204 for code, _ in statuses),
            "refused": sum(code == 413 for code, _ in statuses),
            "other": sorted({code for code, _ in statuses} - {204, 413}),
            "rss_before": before,
            "rss_after": after,
            "rss_peak": peak,
        },
    }


def load_report(info: dict[str, Any], r: dict[str, Any], args: argparse.Namespace) -> str:
    idle, loaded, up = r["idle"], r["loaded"], r["uploads"]
    rows = []
    for name, q in (
        ("idle", idle),
        (f"{args.load_clients} visitors + {args.load_builds} builds", loaded),
    ):
        rows.append(
            [name]
            + [seconds(q[k]) for k in ("p50", "p95", "p99", "max")]
            + [str(q["probes"]), str(q["failures"])]
        )
    rows.append(
        ["ratio loaded / idle"]
        + [
            f"{loaded[k] / idle[k]:.0f}x" if idle[k] else "n/a"
            for k in ("p50", "p95", "p99", "max")
        ]
        + ["", ""]
    )
    out = [
        LOAD_SECTION,
        "",
        f"{info['date']}, {info['cpu']}, {info['nproc']} CPUs, Python {info['python']}. "
        f"Builds: cross-validated tfidf-meta-logreg on `{args.data_name}` (local builder, "
        f"{r['build_launches']} launched in all). Other people's processes shared the machine "
        "(load average " + " ".join(f"{x:.1f}" for x in os.getloadavg()) + " at the end).",
        "",
        table(
            ["/_stcore/health", "p50", "p95", "p99", "max", "probes", "failed"],
            rows,
        ),
        "",
        f"Health p99 under load {seconds(loaded['p99'])} (target under "
        f"{HEALTH_P99_TARGET_S:g} s): {verdict(loaded['p99'] < HEALTH_P99_TARGET_S)}. The "
        f"visitors got {loaded['page_runs']} page runs ({loaded['page_errors']} errors, median "
        f"{seconds(r['page_median_s'])} from request to the end of the run); the server used "
        f"{r['server_cpu_s']:.1f} CPU-seconds in {args.load_seconds:g} s.",
        "",
        f"Upload flood (3 visitors, no sign-in, 6 × 40 MB each to `/_stcore/upload_file`): "
        f"{up['accepted']} accepted, {up['refused']} refused with 413"
        + (f", other statuses {up['other']}" if up["other"] else "")
        + f"; server RSS {up['rss_before']:.0f} MB before, {up['rss_after']:.0f} MB after, "
        f"peak {up['rss_peak']:.0f} MB (target under {UPLOAD_RSS_TARGET_MB:g} MB): "
        f"{verdict(up['rss_peak'] < UPLOAD_RSS_TARGET_MB)}.",
        "",
        f"Reproduce: `.venv/bin/python bench/ui_bench.py --load --load-clients {args.load_clients} "
        f"--load-seconds {args.load_seconds:g} --load-builds {args.load_builds}`.",
    ]
    return "\n".join(out) + "\n"


def main_load(args: argparse.Namespace) -> int:
    data = args.data or (DEFAULT_DATA if DEFAULT_DATA.is_file() else SAMPLE_DATA)
    args.data_name = data.name
    scratch = Path(tempfile.mkdtemp(prefix="altruism-ui-load-"))
    try:
        os.environ.pop("DASHBOARD_PASSWORD", None)
        results = bench_load(scratch, data, args.load_clients, args.load_seconds, args.load_builds)
        section = load_report(machine(), results, args)
        print(section)
        if not args.no_write:
            write_section(LOAD_SECTION, section, args.doc)
            log(f"wrote the section '{LOAD_SECTION}' of {args.doc}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


# --- main --------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, help=f"dataset (default {DEFAULT_DATA}, else data/sample.json)"
    )
    parser.add_argument("--runs", type=int, default=5, help="page renders per measurement")
    parser.add_argument("--versions", type=int, default=5000, help="versions for Versions")
    parser.add_argument("--calls", type=int, default=200, help="Try-a-request submits")
    parser.add_argument("--no-browser", action="store_true", help="memory via AppTest only")
    parser.add_argument("--no-write", action="store_true", help="do not touch docs/")
    parser.add_argument(
        "--pages-only", action="store_true", help="only the pages in a real browser"
    )
    parser.add_argument("--doc", type=Path, default=DOC, help=argparse.SUPPRESS)
    parser.add_argument("--load", action="store_true", help="only the under-load scenario")
    parser.add_argument("--load-clients", type=int, default=50, help="visitors on the pages")
    parser.add_argument("--load-seconds", type=float, default=60, help="length of the load")
    parser.add_argument("--load-builds", type=int, default=2, help="builds kept running")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.versions < 1 or args.calls < 2:
        parser.error("--runs ≥ 1, --versions ≥ 1 and --calls ≥ 2")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.load:
        return main_load(args)
    monitor = CpuMonitor()
    data = args.data or (DEFAULT_DATA if DEFAULT_DATA.is_file() else SAMPLE_DATA)
    scratch = Path(tempfile.mkdtemp(prefix="altruism-ui-bench-"))
    try:
        import logging

        logging.getLogger("streamlit").setLevel(logging.ERROR)
        use_home(scratch / "four")
        os.environ.pop("DASHBOARD_PASSWORD", None)
        from core.dataset import load_dataset

        rows = load_dataset(data).rows
        results: dict[str, Any] = {"data_name": data.name, "data_rows": rows}
        templates = build_versions(data)
        if args.pages_only:
            results["pages"] = bench_pages_browser(scratch / "four", args.runs)
            results["noise"] = monitor.report()
            results["noise_share"] = monitor.share
            section = pages_report(machine(), results, args)
            print(section)
            if not args.no_write:
                write_section(PAGES_SECTION, section, args.doc)
                log(f"wrote the section '{PAGES_SECTION}' of {args.doc}")
            return 0

        log("Compare with 4 versions ...")
        results["compare"] = bench_compare(args.runs, [t.version for t in templates])
        log("Try a request ...")
        slowest = next(t for t in templates if t.recipe == "tfidf-meta-logreg")
        results["try"] = bench_try(args.calls, slowest.version)

        ok, why = browser_status()
        if args.no_browser or not ok:
            if not args.no_browser:
                log(f"no browser ({why}); memory via AppTest in this process")
            results["memory"] = bench_memory_apptest(len(templates))
        else:
            log("memory: streamlit server + Chromium ...")
            results["memory"] = bench_memory_browser(scratch / "four", len(templates))
            results["pages"] = bench_pages_browser(scratch / "four", args.runs)

        log(f"Versions with {args.versions:,} versions ...")
        use_home(scratch / "many")
        bulk_registry(templates, args.versions)
        results["versions"] = bench_versions(args.runs, args.versions)

        info = machine()
        results["noise"] = monitor.report()
        results["noise_share"] = monitor.share
        section = report(info, results, args)
        print(section)
        if not args.no_write:
            write_section(SECTION, section, args.doc)
            log(f"wrote the section '{SECTION}' of {args.doc}")
        if "pages" in results:
            pages = pages_report(info, results, args)
            print(pages)
            if not args.no_write:
                write_section(PAGES_SECTION, pages, args.doc)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
