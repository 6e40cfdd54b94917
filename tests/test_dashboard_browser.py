"""The dashboard in a real browser: `streamlit run app.py` + Playwright driving Chromium.

1. Two builds are launched from the Build form (local and Docker) and waited for, the first
   is promoted on Versions, Compare is opened with `?v=1,2`, and a typed request on Try a
   request must show the probability `python -m core predict` gives for the same text.
2. A new user's walk: the starter builds on the bundled sample, two builds on the real RAOP
   data from the data folder, Compare of the two real-data versions with its plain-words
   verdict, and Try explaining the narrative-vote champion (blank requester fields marked
   unknown) with the explanation adding up to the shown score. With
   ALTRUISM_SCREENSHOTS=1 its screenshots replace docs/screenshots/ (never otherwise: a test
   run leaves the checkout as it was).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import builds
from core.registry import Registry
from core.schema import READY
from tests.helpers import run_cli
from ui.server import CHROMIUM, CHROMIUM_ARGS, running_dashboard

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "docs" / "screenshots"
TITLE = "Broke student in Ohio, payday is Friday"
TEXT = (
    "Lost my job last week and the fridge is empty. My kids would love a pizza tonight; "
    "I will pay it forward when I am back on my feet. Thank you!"
)
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'


@pytest.fixture
def server(lab: Path) -> Iterator[str]:
    """`streamlit run app.py` on a free port with this test's isolated settings."""
    with running_dashboard(lab / "streamlit.log") as (url, _):  # fails setup if it won't start
        yield url


@pytest.fixture
def browser_page() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def open_page(page, url: str, ready_text: str) -> None:
    page.goto(url)
    page.wait_for_load_state("networkidle")
    page.get_by_text(ready_text).first.wait_for()
    page.locator(IDLE).wait_for()


def choose(page, label: str, option: str) -> None:
    """Pick `option` in the Streamlit selectbox labelled `label`."""
    page.locator(IDLE).wait_for()
    box = page.get_by_label(label, exact=True)
    box.evaluate("e => e.scrollIntoView({block: 'center'})")  # room for the option list
    box.click()
    page.get_by_role("option", name=option, exact=True).click()
    page.locator(IDLE).wait_for()


def screenshot(page, path: Path) -> None:
    """The whole app (Streamlit scrolls inside its main block, not the document)."""
    page.locator(IDLE).wait_for()
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": 1400, "height": max(800, min(int(height) + 40, 6000))})
    time.sleep(0.8)  # charts re-lay out at the new size
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": 1400, "height": 1000})


def predict_on_try(page, base: str):
    """Type TITLE and TEXT on Try a request, press Predict; the probability's locator."""
    open_page(page, f"{base}/Try_a_request", "Request text")
    page.get_by_label("Title", exact=True).fill(TITLE)
    page.get_by_label("Request text", exact=True).fill(TEXT)
    page.get_by_role("button", name="Predict").click()
    value = page.locator('[data-testid="stMetricValue"]')
    value.wait_for()
    return value


def build_from_form(
    page, base: str, registry: Registry, recipe: str, builder: str, timeout_s: float
):
    """Fill the Build form, start the build, wait until it is ready (polling the registry)."""
    before = {r.id for r in registry.list_versions()}
    open_page(page, f"{base}/Build", "Start build")
    choose(page, "Recipe", f"{recipe} (built-in)")
    choose(page, "Builder", builder)
    page.get_by_role("button", name="Start build").click()
    deadline = time.monotonic() + 30
    while not (new := [r for r in registry.list_versions() if r.id not in before]):
        assert time.monotonic() < deadline, "the form did not queue a build"
        time.sleep(0.2)
    assert len(new) == 1
    row = new[0]
    assert (row.recipe, row.builder) == (recipe, builder)
    done = builds.wait_for(row.id, registry, timeout_s=timeout_s)
    assert done.status == READY, done.error
    # the build panel (a fragment refreshing every 2 s) shows it finished
    page.get_by_text(re.compile(rf"v{row.version} · {recipe} · {builder} · ready")).wait_for()
    return done


@pytest.mark.parametrize(
    "builder",
    [pytest.param("local", id="local"), pytest.param("docker", marks=pytest.mark.docker)],
)
def test_build_compare_and_try_in_a_browser(
    server: str, browser_page, registry: Registry, lab: Path, builder: str
) -> None:
    page = browser_page
    shots = lab / "screenshots"
    shots.mkdir()
    timeout_s = 600 if builder == "docker" else 180

    open_page(page, server, "Train starter recipes on the bundled sample")
    v1 = build_from_form(page, server, registry, "nb-bow", builder, timeout_s)
    screenshot(page, shots / "build.png")
    v2 = build_from_form(page, server, registry, "tfidf-logreg", builder, timeout_s)
    assert (v1.version, v2.version) == (1, 2)
    assert v1.split_hash == v2.split_hash

    # Versions: no details until a version is chosen; a click on v1's row opens them
    open_page(page, f"{server}/Versions", "2 of 2 versions")
    assert page.get_by_role("tab", name="Actions").count() == 0
    grid = page.locator('[data-testid="stDataFrame"] canvas').first.bounding_box()
    assert grid is not None
    row_px = 35  # Streamlit's data grid: a 35 px header, then 35 px rows (newest first)
    page.mouse.click(grid["x"] + 14, grid["y"] + row_px + row_px * 1 + row_px / 2)
    page.get_by_role("tab", name="Actions").wait_for()
    page.locator(IDLE).wait_for()
    assert page.url.endswith("v=1"), page.url
    page.get_by_role("tab", name="Actions").click()
    page.get_by_role("button", name="Promote to alias").click()
    page.get_by_text("v1 · nb-bow (champion)").first.wait_for()
    assert registry.resolve("champion").version == 1
    page.get_by_role("tab", name="Overview").click()
    screenshot(page, shots / "versions.png")

    # Home: the champion's metrics and the latest builds
    open_page(page, server, "Latest builds")
    page.get_by_text("v1 · nb-bow (champion)").first.wait_for()
    metrics = page.locator('[data-testid="stMetricValue"]')
    metrics.first.wait_for()  # the champion's metrics render after the line naming it
    values = metrics.all_inner_texts()
    assert f"{v1.metrics['roc_auc']:.3f}" in values
    screenshot(page, shots / "home.png")

    # Compare v1 and v2 from the URL
    open_page(page, f"{server}/Compare?v=1,2", "Who won")
    verdict = page.get_by_text(re.compile(r"is better than|No clear difference")).first
    verdict.wait_for()
    stats = verdict.inner_text()
    assert "v1" in stats and "v2" in stats and "McNemar p =" in stats, stats
    page.get_by_text("paired bootstrap").first.wait_for()
    charts = page.locator('[data-testid="stVegaLiteChart"]')
    charts.nth(5).locator("svg, canvas").first.wait_for()
    assert charts.count() == 6
    drawn = " ".join(charts.nth(i).text_content() or "" for i in range(6))
    for text in ("v1 · nb-bow", "v2 · tfidf-logreg", "predicted: pizza", "actual: no pizza"):
        assert text in drawn, text  # both confusion matrices
    assert "FPR" in drawn and "FNR" in drawn  # the rate bars
    assert "ROC curve" in drawn and "Precision-recall curve" in drawn
    assert "Calibration" in drawn
    page.get_by_text("False positive and false negative rates").wait_for()
    page.get_by_role("heading", name="Provenance").wait_for()
    tables = page.locator('[data-testid="stTable"]')
    assert tables.count() == 2  # metrics and provenance
    tables.nth(1).get_by_text("recipe").wait_for(state="attached")  # differs: shown
    page.get_by_text("Show the fields that are the same too").click()
    page.locator(IDLE).wait_for()
    tables.nth(1).get_by_text("code_fingerprint").wait_for(state="attached")
    assert "Not comparable" not in page.locator('[data-testid="stMain"]').inner_text()
    screenshot(page, shots / "compare.png")

    # Try a request: the champion's probability equals the CLI's for the same text
    value = predict_on_try(page, server)
    assert "v1 · nb-bow (champion)" in page.locator('[data-testid="stMetricLabel"]').inner_text()
    shown = value.inner_text().strip()
    assert re.fullmatch(r"\d{1,3}\.\d%", shown), shown
    cli = run_cli("predict", "champion", "--title", TITLE, "--text", TEXT, "--json")
    assert cli.returncode == 0, cli.stderr
    expected = json.loads(cli.stdout)["predictions"][0]["probability"]
    assert abs(float(shown[:-1]) - 100 * expected) <= 0.05 + 1e-9, (shown, expected)
    page.get_by_text("Words that pushed").wait_for()
    screenshot(page, shots / "try_a_request.png")


def test_a_first_visit_to_a_page_gets_the_apps_navigation(server: str, browser_page) -> None:
    """The first visitor of a fresh server opens Versions directly (a bookmark, a link): the
    page runs under app.py's navigation, not Streamlit's folder-based one for pages/, whose
    sidebar called Home "app" (ui.guards._navigation_only)."""
    page = browser_page
    open_page(page, f"{server}/Versions", "No versions yet")
    links = page.locator('[data-testid="stSidebarNav"] a')
    links.first.wait_for()
    names = [links.nth(i).get_attribute("href").rsplit("/", 1)[-1] for i in range(links.count())]
    assert names == ["", "Build", "Versions", "Compare", "Try_a_request"], names
    shown = page.locator('[data-testid="stSidebarNav"] a p').all_inner_texts()
    assert shown == [
        "Home",
        "Build",
        "Versions",
        "Compare",
        "Try a request",
    ], shown


def publish(shots: Path) -> None:
    """Replace docs/screenshots/ with these, when asked (ALTRUISM_SCREENSHOTS=1)."""
    if os.environ.get("ALTRUISM_SCREENSHOTS") != "1":
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for png in sorted(shots.glob("*.png")):
        shutil.copy(png, SCREENSHOTS / png.name)


def wait_ready(registry: Registry, count: int, timeout_s: float) -> list:
    deadline = time.monotonic() + timeout_s
    while True:
        rows = registry.list_versions()
        if len(rows) >= count and all(r.status not in ("queued", "running") for r in rows):
            return rows
        assert time.monotonic() < deadline, [(r.version, r.status) for r in rows]
        time.sleep(0.5)


def test_a_new_user_goes_from_the_sample_to_real_data(
    server: str, browser_page, registry: Registry, lab: Path, shared_data: Path
) -> None:
    page = browser_page
    shots = lab / "screenshots"
    shots.mkdir()
    shutil.copy(shared_data, lab / "data" / "train.json.zip")

    # the starter builds on the bundled sample
    open_page(page, server, "Train starter recipes on the bundled sample")
    page.get_by_text("Get the real Random Acts of Pizza data").first.wait_for()
    page.get_by_role("button", name="Train starter recipes on the bundled sample").click()
    starters = wait_ready(registry, 3, 300)
    assert [r.status for r in starters] == [READY] * 3
    assert {r.data_kind for r in starters} == {"sample"}

    # two builds on the real data, from the data folder
    real = []
    for recipe in ("narrative-vote", "tfidf-logreg"):
        open_page(page, f"{server}/Build", "Start build")
        page.get_by_text("File in the data folder").click()
        page.locator(IDLE).wait_for()
        choose(page, "Dataset file", "train.json.zip")
        choose(page, "Recipe", f"{recipe} (built-in)")
        choose(page, "Builder", "local")
        page.get_by_role("button", name="Start build").click()
        rows = wait_ready(registry, 4 + len(real), 300)
        row = rows[0]  # newest first
        assert (row.recipe, row.status, row.data_kind) == (recipe, READY, "folder"), row.error
        real.append(row)
    page.get_by_text(re.compile(rf"v{real[-1].version} · tfidf-logreg · local · ready")).wait_for()
    page.get_by_text(f"Open v{real[-1].version} on Versions").first.wait_for()
    screenshot(page, shots / "build.png")
    first, second = real
    assert first.split_hash == second.split_hash and first.metrics["n"] > 600

    # promote the real-data narrative-vote version; Home shows it and its dataset's chart
    open_page(page, f"{server}/Versions?v={first.version}", "Details for")
    page.get_by_role("tab", name="Actions").click()
    page.get_by_role("button", name="Promote to alias").click()
    page.get_by_text(f"v{first.version} · narrative-vote (champion)").first.wait_for()
    page.get_by_role("tab", name="Overview").click()
    page.get_by_text("Brier score").first.wait_for()
    screenshot(page, shots / "versions.png")
    open_page(page, server, "Latest builds")
    page.get_by_text("ROC AUC by version").wait_for()
    main = page.locator('[data-testid="stMain"]').inner_text()
    assert "Get the real Random Acts of Pizza data" not in main
    assert "train.json.zip (data folder)" in main
    screenshot(page, shots / "home.png")

    # Compare the two real-data versions at equal false positive rate (from the address):
    # a verdict in plain words that names the point, both matrices taken there
    pair = f"v={first.version},{second.version}"
    open_page(page, f"{server}/Compare?{pair}&at=fpr%3D0.2", "Who won")
    verdict = page.get_by_text(re.compile(r"is better than|No clear difference")).first
    verdict.wait_for()
    said = verdict.inner_text()
    assert f"v{first.version}" in said and f"v{second.version}" in said, said
    assert f"of {first.metrics['n']} requests, McNemar p =" in said, said
    assert "at equal false positive rate 0.2 (thresholds " in said, said
    page.get_by_text("Equal false positive rate").first.wait_for()
    shown = f"v{first.version} by held-out 20% split, {first.metrics['n']:,} requests"
    page.get_by_text(shown).first.wait_for()
    charts = page.locator('[data-testid="stVegaLiteChart"]')
    charts.nth(5).locator("svg, canvas").first.wait_for()
    matrices = " ".join(charts.nth(i).text_content() or "" for i in range(2))
    assert matrices.count("(not its own") == 2, matrices  # each matrix names its threshold
    screenshot(page, shots / "compare.png")

    # Try: the narrative-vote champion explained, blank fields unknown, adding up to the score
    value = predict_on_try(page, server)
    label = page.locator('[data-testid="stMetricLabel"]').inner_text()
    assert f"v{first.version} · narrative-vote (champion)" in label, label
    shown = float(value.inner_text().strip().rstrip("%"))
    assert 5.0 < shown < 95.0, shown  # an ordinary request typed today
    summary = page.get_by_text(re.compile(r"^Base [+-]")).first
    summary.wait_for()
    found = re.search(
        r"Base ([+-][\d.]+) \+ contributions ([+-][\d.]+) = log-odds ([+-][\d.]+), i\.e\. "
        r"a probability of ([\d.]+)%",
        summary.inner_text(),
    )
    assert found, summary.inner_text()
    base, moved, log_odds, probability = (float(x) for x in found.groups())
    assert base + moved == pytest.approx(log_odds, abs=0.002)
    assert probability == pytest.approx(shown, abs=0.051)
    assert 100 / (1 + math.exp(-log_odds)) == pytest.approx(shown, abs=0.06)
    assert "Method: shap permutation explainer" in summary.inner_text()
    assert "Unknown, contributing 0: account age," in summary.inner_text()
    page.get_by_text(re.compile(r"^Unknown fields: Account age, .* averaged over the")).wait_for()
    page.get_by_text(re.compile(rf"^would get a pizza: (yes|no), at v{first.version}'s")).wait_for()
    page.get_by_text("What moved the score").wait_for()
    page.get_by_text("Words that pushed").wait_for()
    screenshot(page, shots / "try_a_request.png")
    publish(shots)
