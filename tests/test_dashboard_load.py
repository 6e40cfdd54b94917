"""The dashboard server under load (issue 22 item 8), against real processes.

1. 50 visitors on the pages (websocket clients speaking the browser's protocol, going round
   Home, Build, Versions, Compare and Try a request) while 2 local builds run: the health
   endpoint answers in under 1 s at p99 (today's main: p99 9.1 s, max 14 s on this machine).
2. Three visitors who never signed in each PUT 40 MB files to the upload endpoint, six each:
   a session holds only its newest upload, the server refuses uploads beyond
   UPLOADS_TOTAL_MB with HTTP 413 and a sentence saying why, and its RSS peak stays under
   500 MB (today's main keeps all 18, 720 MB).
3. Builds the dashboard launches run at BUILD_NICE (10), below the server.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench import ui_load
from core import builds
from core.registry import Registry
from tests.helpers import wait_until
from ui.guards import upload_quota
from ui.server import running_dashboard

HEALTH_P99_S = 1.0
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
RSS_LIMIT_MB = 500.0


@pytest.fixture
def dashboard(lab: Path) -> Iterator[tuple[str, int]]:
    """`python -m ui.dashboard` (streamlit run app.py with its guards) on a free port."""
    with running_dashboard(lab / "streamlit.log", timeout_s=120) as (url, process):
        yield url, process.pid


def test_health_under_50_visitors_and_2_builds(dashboard: tuple[str, int], lab: Path) -> None:
    url, _ = dashboard
    idle = ui_load.measure(url, 0, 3)
    with ui_load.running_builds(2, str(lab / "data" / "sample.json"), 30) as pids:
        loaded = ui_load.measure(url, 50, 30)
    stats = ui_load.summary(loaded)
    print(f"idle {ui_load.summary(idle)}\nloaded {stats}\nbuild launchers {pids}")
    assert len(pids) >= 2, "the two builds were launched"
    assert stats["failures"] == 0, stats
    assert stats["page_runs"] >= 100, f"the visitors were served: {stats}"
    assert stats["p99"] < HEALTH_P99_S, stats


def test_uploads_capped_per_session_and_in_total(
    dashboard: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, pid = dashboard
    before, _ = ui_load.rss_mb(pid)
    statuses = ui_load.upload_flood(url, sessions=3, files=6, mb=40)
    rss, peak = ui_load.rss_mb(pid)
    print(f"server RSS {before:.0f} MB before, {rss:.0f} MB after, peak {peak:.0f} MB")
    codes = [code for code, _ in statuses]
    assert len(codes) == 18
    assert set(codes) == {204, 413}, codes
    refused = {body for code, body in statuses if code == 413}
    assert all("UPLOADS_TOTAL_MB" in body and "data folder" in body for body in refused)
    assert not any("Traceback" in body for _, body in statuses)
    assert peak < RSS_LIMIT_MB, f"peak RSS {peak:.0f} MB"


def test_upload_quota_keeps_the_newest_per_session_and_a_total() -> None:
    def rec(size: int) -> SimpleNamespace:
        return SimpleNamespace(data=b"x" * size)

    held = {"a": {"f1": rec(40), "f2": rec(10)}, "b": {"g1": rec(30)}}
    replaced, refused = upload_quota(held, "a", "f3", 60, limit=100)
    assert replaced == ["f1", "f2"] and refused is None  # a's 50 are replaced: 30 + 60
    replaced, refused = upload_quota(held, "c", "h1", 71, limit=100)
    assert refused and "UPLOADS_TOTAL_MB" in refused  # 80 held + 71 > 100
    assert upload_quota(held, "c", "h1", 20, limit=100) == ([], None)


def test_builds_the_dashboard_launches_run_below_the_server(registry: Registry) -> None:
    os.environ.pop("BUILD_NICE", None)
    request = builds.TrainRequest(recipe="nb-bow", backend="local", fault="sleep:20", force=True)
    row = builds.submit(request, registry).version
    pid = builds.launch(row.id, registry)
    try:

        def nice_of(p: int) -> int:
            return int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[16])

        wanted = max(10, nice_of(os.getpid()))
        wait_until(lambda: nice_of(pid) == wanted, "the launcher at nice 10", timeout_s=30)
    finally:
        registry.request_cancel(row.id)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and os.waitpid(pid, os.WNOHANG)[0] != pid:
            time.sleep(0.3)


@pytest.mark.browser
def test_a_refused_upload_says_why_in_the_page(
    lab: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Two visitors in Chromium; the first's upload fills UPLOADS_TOTAL_MB (1 MB here), the
    second's is refused and the uploader shows the reason, not a traceback."""
    from playwright.sync_api import sync_playwright

    from ui.server import CHROMIUM, CHROMIUM_ARGS

    monkeypatch.setenv("UPLOADS_TOTAL_MB", "1")
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    first.write_text('[{"x": "' + "a" * 900_000 + '"}]')
    second.write_text('[{"x": "' + "b" * 300_000 + '"}]')
    with (
        running_dashboard(lab / "streamlit.log", timeout_s=120) as (url, _),
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            pages = []
            for path in (first, second):
                page = browser.new_context().new_page()
                page.set_default_timeout(60_000)
                page.goto(f"{url}/Build")
                page.get_by_text("Upload a Kaggle-format file").click()
                page.locator(IDLE).wait_for()
                page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
                    str(path)
                )
                page.get_by_text(path.name).first.wait_for()
                pages.append(page)
            # the first upload is held (its page ran and refused it as a dataset) ...
            pages[0].get_by_text("first.json").first.wait_for()
            # ... so the second visitor's page says why before uploading, then the uploader
            # shows the refusal
            pages[1].get_by_text(re.compile(r"holds 1 MB of uploads.*UPLOADS_TOTAL_MB")).wait_for()
            pages[1].get_by_text(re.compile("status code 413")).first.wait_for()
            text = pages[1].locator('[data-testid="stMain"]').inner_text()
            print(text)
            assert "Traceback" not in text
            first_page = pages[0].locator('[data-testid="stMain"]').inner_text()
            assert "holds 1 MB" not in first_page  # its own upload is replaced, not counted
        finally:
            browser.close()
