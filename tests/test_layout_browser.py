"""Nothing on the five pages is cut off at 1280 px (issue 23 item 7), in a real browser.

Four local builds of different recipes on the real RAOP data (one module-scoped fixture and
one `streamlit run` server shared by the tests), Chromium at 1280 x 900. On every page each
visible button, table cell, metric label and value, label, heading and text element must show
all of its content: `scrollWidth <= clientWidth + 1` (no ellipsis, no clipped text, no inner
horizontal scroll), and no element may reach past the viewport's right edge. Tables drawn on
a canvas (st.dataframe) must show every row and column without an inner scroll. Vega charts
draw their labels as SVG/canvas text: the probability bars' labels are read from the SVG and
must carry no "…".
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.common import environment
from tests.conftest import SHARED_DATA
from ui.server import CHROMIUM, CHROMIUM_ARGS, running_dashboard

pytestmark = [pytest.mark.browser, pytest.mark.shared_data]

WIDTH = 1280
SWEEP = "sweep-0123abcd"
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
BUILDS = (  # four recipes on one split of the real data: Compare has paired statistics
    ("nb-bow", {}),
    ("tfidf-logreg", {}),
    ("tfidf-meta-logreg", {}),
    ("narrative-vote", {}),
)

# Every visible element that shows text a user must be able to read in full.
OVERFLOW_JS = """
() => {
  const selectors = [
    'button', 'th', 'td', 'label', 'h1', 'h2', 'h3', 'summary',
    '[data-testid="stMetricLabel"]', '[data-testid="stMetricValue"]',
    '[data-testid="stMarkdownContainer"] p', '[data-testid="stMarkdownContainer"] li',
    '[data-testid="stCaptionContainer"]', '[data-testid="stText"]',
    '[data-testid="stCode"] pre', '[data-testid="stCode"] code',
    '[data-testid="stExpander"] summary span', '[data-testid="stTab"]',
    '[data-baseweb="select"] [title]', '[data-baseweb="tag"] span',
    '[data-testid="stWidgetLabel"] p', '[data-testid="stAlertContentInfo"] p',
  ];
  const main = document.querySelector('[data-testid="stMain"]');
  const right = window.innerWidth;
  const seen = new Set();
  const bad = [];
  for (const el of main.querySelectorAll(selectors.join(','))) {
    if (seen.has(el) || el.closest('canvas')) continue;
    seen.add(el);
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0 || !el.checkVisibility()) continue;
    const text = (el.innerText || '').trim().replace(/\\s+/g, ' ').slice(0, 80);
    const what = el.tagName.toLowerCase() + (el.dataset.testid ? `[${el.dataset.testid}]` : '');
    if (el.scrollWidth > el.clientWidth + 1) {
      bad.push(`${what} "${text}" scrollWidth ${el.scrollWidth} > clientWidth ${el.clientWidth}`);
    } else if (box.right > right + 1) {
      bad.push(`${what} "${text}" ends at x=${Math.round(box.right)} > viewport ${right}`);
    }
  }
  for (const grid of main.querySelectorAll('[data-testid="stDataFrame"]')) {
    if (!grid.checkVisibility()) continue;
    const scroller = grid.querySelector('.dvn-scroller');
    if (!scroller) continue;
    if (scroller.scrollWidth > scroller.clientWidth + 1)
      bad.push(`dataframe scrolls horizontally: ${scroller.scrollWidth} > ${scroller.clientWidth}`);
    if (scroller.scrollHeight > scroller.clientHeight + 1)
      bad.push(`dataframe hides rows: ${scroller.scrollHeight} > ${scroller.clientHeight}`);
  }
  if (main.scrollWidth > main.clientWidth + 1)
    bad.push(`the page scrolls horizontally: ${main.scrollWidth} > ${main.clientWidth}`);
  return bad;
}
"""


@pytest.fixture(scope="module")
def real_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A registry with four real-data builds; its settings set for the module's tests."""
    if not SHARED_DATA.is_file():
        pytest.skip(f"shared RAOP data not found at {SHARED_DATA}")
    home = tmp_path_factory.mktemp("layout")
    (home / "data").mkdir()
    values = {
        "REGISTRY_URL": f"sqlite:///{home / 'registry.db'}",
        "ARTIFACT_ROOT": str(home / "artifacts"),
        "LOG_ROOT": str(home / "logs"),
        "DATA_DIR": str(home / "data"),
    }
    with environment(values):
        os.environ.pop("DASHBOARD_PASSWORD", None)
        from core import builds
        from core.registry import Registry

        registry = Registry()
        for recipe, params in BUILDS:
            row, _ = builds.train(
                builds.TrainRequest(
                    recipe=recipe, params=params, data_path=SHARED_DATA, backend="local"
                ),
                registry,
            )
            assert row.status == "ready", row.error
        registry.promote(4, "champion")
        registry.promote(2, "challenger")
        registry.add_tag(1, "baseline-from-the-first-week")
        for version_id in (1, 3):  # a sweep: Compare offers its best against the champion
            registry.add_tag(version_id, SWEEP)
        yield home


@pytest.fixture(scope="module")
def layout_server(real_lab: Path) -> Iterator[str]:
    values = {
        "REGISTRY_URL": f"sqlite:///{real_lab / 'registry.db'}",
        "ARTIFACT_ROOT": str(real_lab / "artifacts"),
        "LOG_ROOT": str(real_lab / "logs"),
        "DATA_DIR": str(real_lab / "data"),
    }
    with environment(values), running_dashboard(real_lab / "streamlit.log") as (url, _):
        yield url


@pytest.fixture(scope="module")
def narrow_page(layout_server: str) -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": 900})
            page.set_default_timeout(90_000)
            yield page
        finally:
            browser.close()


def visit(page, url: str, ready_text: str) -> None:
    page.goto(url)
    page.wait_for_load_state("networkidle")
    page.get_by_text(ready_text).first.wait_for()
    page.locator(IDLE).wait_for()
    page.wait_for_timeout(500)  # grids and charts size themselves after the script ends


def overflowing(page) -> list[str]:
    return page.evaluate(OVERFLOW_JS)


def test_home_versions_and_build_fit_1280(layout_server: str, narrow_page) -> None:
    page = narrow_page
    problems = {}
    visit(page, layout_server, "Latest builds")
    page.get_by_text("ROC AUC by version").wait_for()
    problems["Home"] = overflowing(page)
    visit(page, f"{layout_server}/Versions?v=1", "Details for")
    page.locator('[data-testid="stDataFrame"] .dvn-scroller').first.wait_for()
    problems["Versions"] = overflowing(page)
    # a tab computes its content when opened (a rerun): wait for what it shows
    opened = {
        "Provenance": '[data-testid="stJson"]',
        "Log": '[data-testid="stCode"]',
        "Actions": '[data-testid="stDownloadButton"]',
    }
    for tab, shown in opened.items():
        page.get_by_role("tab", name=tab).click()
        page.locator(shown).first.wait_for()
        page.locator(IDLE).wait_for()
        page.wait_for_timeout(300)
        problems[f"Versions/{tab}"] = overflowing(page)
    visit(page, f"{layout_server}/Build", "Start build")
    problems["Build"] = overflowing(page)
    problems = {k: v for k, v in problems.items() if v}
    assert not problems, problems


def test_compare_of_four_fits_1280(layout_server: str, narrow_page) -> None:
    page = narrow_page
    visit(page, f"{layout_server}/Compare?v=1,2,3,4", "Who won")
    page.get_by_role("button", name="Compare best of sweep vs champion").wait_for()
    charts = page.locator('[data-testid="stVegaLiteChart"]')
    charts.nth(7).locator("svg, canvas").first.wait_for()
    problems = overflowing(page)
    page.get_by_text("Show the fields that are the same too").click()
    page.locator(IDLE).wait_for()
    page.wait_for_timeout(500)
    problems += overflowing(page)
    assert not problems, problems


def test_try_all_versions_fits_1280(layout_server: str, narrow_page) -> None:
    page = narrow_page
    visit(page, f"{layout_server}/Try_a_request", "Request text")
    box = page.get_by_label("Version", exact=True)
    box.click()
    page.get_by_role("option", name="All ready versions", exact=True).click()
    page.locator(IDLE).wait_for()
    page.get_by_label("Title", exact=True).fill("Broke student in Ohio, payday is Friday")
    page.get_by_label("Request text", exact=True).fill(
        "Lost my job last week and the fridge is empty. I will pay it forward. Thank you!"
    )
    page.get_by_role("button", name="Predict").click()
    page.get_by_text("Words that pushed").first.wait_for()
    page.locator(IDLE).wait_for()
    page.wait_for_timeout(500)
    problems = overflowing(page)
    bars = page.locator('[data-testid="stVegaLiteChart"]').first
    drawn = bars.text_content() or ""
    for version in range(1, 5):
        assert f"v{version} · " in drawn, drawn
    assert "…" not in drawn, drawn  # no axis label cut short
    assert "train.json.zip" in drawn, drawn
    assert not problems, problems
