"""Every dashboard page under Streamlit's AppTest: empty and populated registries, a failed
build, bad input (empty and over-long requests, invalid uploads, out-of-range parameters),
the Build form and the Home starter button, and HTML in user text shown as text.

Pages run in this process (`AppTest.from_file`), against the isolated REGISTRY_URL /
ARTIFACT_ROOT / LOG_ROOT / DATA_DIR of each test. Builds the pages launch run as detached
worker processes; the tests wait for them with `builds.wait_for`. Docker is switched off for
`auto` here so launched builds use the fast local builder (Docker builds have their own tests).
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import builds
from core.config import SAMPLE_DATA
from core.datafiles import save_upload
from core.errors import BadInput
from core.predict import load_model, make_request, predict_proba
from core.registry import Registry
from core.registry.versions import SUMMARY_METRICS
from core.schema import ACTIVE_STATUSES, FAILED, READY
from tests.helpers import use_lab

ROOT = Path(__file__).resolve().parent.parent
MARKDOWN_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|<>~$:&])")
HOME, BUILD, VERSIONS, COMPARE, TRY = (
    "app.py",
    "pages/1_Build.py",
    "pages/2_Versions.py",
    "pages/3_Compare.py",
    "pages/4_Try_a_request.py",
)
SCRIPT = "<script>alert(1)</script>"
TITLE = "Broke student in Ohio, payday Friday"
TEXT = "Lost my job last week and the fridge is empty. I will pay it forward, promise!"


# --- helpers -----------------------------------------------------------------------------
def page(path: str, **query: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / path), default_timeout=60)
    at.query_params.update(query)
    return at


def run(target) -> AppTest:
    """Run (or rerun) the page of an AppTest or a widget; no exception may reach the page."""
    at = target.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def shown(value: object) -> str:
    """Markdown source as a reader sees it: `ui.common.md` escapes user strings."""
    return MARKDOWN_ESCAPE.sub(r"\1", str(value))


def texts(elements) -> list[str]:
    return [shown(e.value) for e in elements]


def joined(elements) -> str:
    return "\n".join(shown(e.value) for e in elements)


def by_label(widgets, label: str):
    found = [w for w in widgets if w.label == label]
    assert found, f"no widget labelled {label!r} in {[w.label for w in widgets]}"
    return found[0]


def charts(at: AppTest) -> list[dict]:
    """The Vega-Lite specs of every Altair chart on the page."""
    return [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]


def chart_data(at: AppTest, marker: str) -> list[list[dict]]:
    """The rows of each chart whose spec mentions `marker` (Altair data travels as Arrow)."""
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

    return [
        convert_arrow_bytes_to_pandas_df(c.proto.datasets[0].data.data).to_dict("records")
        for c in at.get("vega_lite_chart")
        if marker in c.proto.spec
    ]


def chart_titles(at: AppTest) -> list[str]:
    titles = []
    for spec in charts(at):
        title = spec.get("title")
        titles.append(title.get("text") if isinstance(title, dict) else title)
    return titles


def percent(value: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)%", value)
    assert match, f"not a percentage: {value!r}"
    return float(match.group(1))


def no_unsafe_html(at: AppTest) -> None:
    """User text may be shown anywhere, but never in markdown that allows raw HTML."""
    for element in [*at.markdown, *at.caption]:
        if "<script" in element.value:
            assert not element.proto.allow_html, element.value
    assert not any("<script" in str(h.proto) for h in at.get("html"))


def upload_files(lab: Path) -> list[Path]:
    folder = lab / "data" / "uploads"
    return sorted(folder.iterdir()) if folder.exists() else []


def wait_all(registry: Registry, timeout_s: float = 240) -> list:
    rows = registry.list_versions()
    return [builds.wait_for(r.id, registry, timeout_s=timeout_s) for r in rows]


# --- fixtures ----------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def local_builder_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`auto` resolves to the local builder here, whatever engine the machine has."""
    from core.builders import select
    from ui.common import builder_status

    monkeypatch.setattr(
        select, "docker_available", lambda: (False, "Docker disabled for dashboard tests")
    )
    builder_status.clear()
    yield
    builder_status.clear()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry built once per module: v1 nb-bow and v2 tfidf-logreg on the same split,
    v3 nb-bow on another split (seed 7), v4 a failed build. Tests get a copy."""
    home = tmp_path_factory.mktemp("dashboard-template")
    with pytest.MonkeyPatch.context() as mp:
        use_lab(mp.setenv, home)
        mp.setenv("DATA_DIR", str(home / "data"))
        mp.setenv("ALTRUISM_ALLOW_FAULTS", "1")
        registry = Registry()
        for recipe, seed, fault in (
            ("nb-bow", 42, None),
            ("tfidf-logreg", 42, None),
            ("nb-bow", 7, None),
            ("nb-bow", 42, "raise"),
        ):
            request = builds.TrainRequest(
                recipe=recipe, seed=seed, backend="local", fault=fault, force=True
            )
            row, _ = builds.train(request, registry)
            assert row.status == (FAILED if fault else READY), row.error
        registry.engine.dispose()  # closes the WAL: registry.db alone is complete
    return home


@pytest.fixture
def populated(template: Path, lab: Path) -> Registry:
    """This test's own copy of the template registry and artifacts."""
    shutil.copy(template / "registry.db", lab / "registry.db")
    shutil.copytree(template / "artifacts", lab / "artifacts")
    registry = Registry()
    assert [r.status for r in registry.list_versions()] == [FAILED, READY, READY, READY]
    return registry


# --- empty registry ----------------------------------------------------------------------
def test_home_on_an_empty_registry_offers_the_starter_button(registry: Registry) -> None:
    at = run(page(HOME))
    assert any("The registry is empty" in v for v in texts(at.info))
    assert by_label(at.button, "Train starter recipes on the bundled sample")
    assert "Champion" in texts(at.subheader)
    assert not at.table  # no latest builds yet


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (VERSIONS, "No versions yet"),
        (COMPARE, "Comparing needs at least two ready versions"),
        (TRY, "No ready versions yet"),
    ],
)
def test_pages_on_an_empty_registry_say_so(registry: Registry, path: str, message: str) -> None:
    at = run(page(path))
    assert any(message in v for v in texts(at.info)), texts(at.info)
    assert not at.dataframe


def test_build_on_an_empty_registry_shows_the_form_and_no_builds(registry: Registry) -> None:
    at = run(page(BUILD))
    assert "No builds running. Start one with the form." in texts(at.caption)
    assert by_label(at.button, "Start build")
    assert not at.error


# --- populated registry ------------------------------------------------------------------
def test_home_shows_the_champion_metrics_after_promote(populated: Registry) -> None:
    at = run(page(HOME))
    assert any("No version holds the **champion** alias" in v for v in texts(at.markdown))
    populated.promote(2, "champion")
    at = run(page(HOME))
    m = populated.resolve("champion").metrics
    metrics = {x.label: x.value for x in at.metric}
    assert metrics["ROC AUC"] == f"{m['roc_auc']:.3f}"
    assert metrics["False positive rate"] == f"{m['fpr']:.3f}"
    assert metrics["False negative rate"] == f"{m['fnr']:.3f}"
    assert metrics["F1"] == f"{m['f1']:.3f}"
    assert metrics["Ready"] == "3" and metrics["Failed"] == "1"
    assert any("v2 · tfidf-logreg (champion)" in v for v in texts(at.markdown))
    latest = at.table[0].value
    assert latest["version"].tolist() == [4, 3, 2, 1]
    assert "injected training fault" in latest["error"].iloc[0]
    assert "ROC AUC by version" in texts(at.subheader)
    assert not any("registry is empty" in v for v in texts(at.info))


def test_home_shows_a_queued_build_readably(populated: Registry) -> None:
    """Issue 23 item 7: a build not finished yet has its whole status and "—", never "None",
    in an HTML table (cells wrap, nothing is cut off with "…")."""
    populated.promote(2, "champion")
    queued = builds.submit(
        builds.TrainRequest(recipe="tfidf-meta-logreg", backend="local"), populated
    )
    at = run(page(HOME))
    latest = at.table[0].value
    first = latest.iloc[0]
    assert first["version"] == queued.version.version and first["status"].startswith("queued"), (
        first
    )
    assert first["ROC AUC"] == "—"
    assert "None" not in latest.astype(str).to_numpy().ravel().tolist()
    assert latest["ROC AUC"].iloc[1:].str.fullmatch(r"\d\.\d{4}|—").all()
    metrics = {x.label: x.value for x in at.metric}
    assert "None" not in metrics.values()
    assert metrics["Building"] == "1"


def test_versions_table_lists_every_version(populated: Registry) -> None:
    at = run(page(VERSIONS))
    table = at.dataframe[0].value
    assert table["version"].tolist() == [4, 3, 2, 1]
    assert table["status"].tolist() == ["failed", "ready", "ready", "ready"]
    assert table["recipe"].tolist() == ["nb-bow", "nb-bow", "tfidf-logreg", "nb-bow"]
    assert any(
        t.startswith("4 of 4 versions. Click a column header to sort.") for t in texts(at.caption)
    )
    # filter by status
    by_label(at.multiselect, "Status").select("failed")
    run(at)
    assert at.dataframe[0].value["version"].tolist() == [4]


def test_versions_page_promote_records_the_login_name_in_history(
    populated: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASHBOARD_PASSWORD", "pw")
    at = page(VERSIONS, v="2", tab="Actions")
    at.session_state["authenticated"] = True
    at.session_state["login_name"] = "Ann Lee"
    run(at)
    by_label(at.text_input, "Alias").input("champion")
    next(b for b in at.button if b.label == "Promote to alias").click()
    run(at)
    (span,) = populated.alias_history("champion")
    assert (span["version"], span["set_by"]) == (2, "Ann Lee")
    history = next(d.value for d in at.dataframe if "set by" in d.value.columns)
    assert history["set by"].tolist() == ["Ann Lee (promote)"]
    assert history["version"].tolist() == [2]


def test_compare_two_versions_on_the_same_split(populated: Registry) -> None:
    at = run(page(COMPARE, v="1,2"))
    assert by_label(at.multiselect, "Versions (2 to 4; the first is the baseline)").value == [1, 2]
    assert not at.warning
    stats = [v for v in texts(at.markdown) if "McNemar p =" in v]
    assert len(stats) == 1, stats
    assert re.match(r"(v2 is better than v1|v1 is better than v2|No clear difference)", stats[0])
    assert any("paired bootstrap" in c for c in texts(at.caption))
    assert any(
        c.startswith("Evaluated on: v1 by held-out 20% split, 80 requests")
        for c in texts(at.caption)
    )
    titles = chart_titles(at)
    # confusion matrices, titled with the dataset
    assert "v1 · nb-bow · synthetic sample" in titles
    assert "v2 · tfidf-logreg · synthetic sample" in titles
    assert "ROC curve" in titles and "Precision-recall curve" in titles
    assert "Calibration" in titles
    # two heatmaps, the FPR/FNR bars, two curve overlays, the reliability diagram
    assert len(charts(at)) == 6
    (calibration,) = chart_data(at, '"share that got a pizza"')
    assert {row["version"] for row in calibration} == {"v1", "v2"}
    assert all(0 <= row["predicted"] <= 1 and 0 <= row["observed"] <= 1 for row in calibration)
    metrics, provenance = (d.value for d in at.table)
    assert {"metric", "v1", "v2", "Δ v2"} <= set(metrics.columns)
    assert "ROC AUC" in metrics["metric"].tolist()
    assert "what it means" in metrics.columns
    assert {"field", "differs", "v1", "v2"} <= set(provenance.columns)
    assert set(provenance["differs"]) == {"≠"}  # only what differs, by default
    run(at.toggle(key="provenance-all").set_value(True))
    everything = at.table[1].value
    assert "code_fingerprint" in everything["field"].tolist()
    assert len(everything) > len(provenance)
    recipe_row = provenance[provenance["field"] == "recipe"].iloc[0]
    assert recipe_row["differs"] == "≠" and recipe_row["v2"] == "tfidf-logreg"


def test_compare_versions_on_different_splits_is_flagged(populated: Registry) -> None:
    at = run(page(COMPARE, v="1,3"))
    warnings = texts(at.warning)
    assert any(w.startswith("Not comparable: v1 and v3: different test sets") for w in warnings)
    assert not any("McNemar p =" in v for v in texts(at.markdown))
    assert len(warnings) == 1 and "v1 and v3" in warnings[0]
    assert len(charts(at)) == 6  # matrices and curves are still shown, just not paired


def test_try_a_request_returns_a_probability(populated: Registry, store) -> None:
    at = run(page(TRY))
    by_label(at.text_input, "Title").input(TITLE)
    by_label(at.text_area, "Request text").input(TEXT)
    run(by_label(at.button, "Predict").click())
    assert len(at.metric) == 1
    metric = at.metric[0]
    assert "v3 · nb-bow" in shown(metric.label)  # no champion: the newest ready version
    probability = percent(metric.value)
    assert 0.0 <= probability <= 100.0
    # the same core path without the page, to within the page's rounding (0.1 %)
    row = populated.resolve(3)
    expected = predict_proba(load_model(row, store), [make_request(TITLE, TEXT)])[0]
    assert abs(probability - 100 * expected) <= 0.051
    assert any("Words that pushed" in v for v in texts(at.markdown))

    # all ready versions: one bar per ready version, no single metric
    by_label(at.selectbox, "Version").select("All ready versions")
    run(by_label(at.button, "Predict").click())
    assert not at.metric
    (data,) = chart_data(at, "predicted probability of getting a pizza")
    assert len(data) == 3 and all(0.0 <= d["probability"] <= 1.0 for d in data)


def test_try_a_request_uses_the_champion_by_default(populated: Registry) -> None:
    populated.promote(1, "champion")
    at = run(page(TRY))
    assert by_label(at.selectbox, "Version").value == 1
    by_label(at.text_area, "Request text").input(TEXT)
    run(by_label(at.button, "Predict").click())
    assert "v1 · nb-bow (champion)" in shown(at.metric[0].label)


def test_try_explains_the_whole_score_and_flags_out_of_range_inputs(
    populated: Registry,
) -> None:
    request = builds.TrainRequest(recipe="tfidf-meta-logreg", backend="local", force=True)
    row, _ = builds.train(request, populated)
    assert row.status == READY, row.error
    at = run(page(TRY))
    by_label(at.selectbox, "Version").select(row.version)
    by_label(at.text_input, "Title").input(TITLE)
    by_label(at.text_area, "Request text").input(TEXT)
    by_label(at.number_input, "Account age (days)").set_value(1_000_000.0)
    by_label(at.number_input, "Posts").set_value(4)
    run(by_label(at.button, "Predict").click())
    shown_percent = percent(at.metric[0].value)
    warnings = texts(at.warning)
    assert any(
        "requester_account_age_in_days_at_request = 1e+06 is outside what it was trained on" in w
        for w in warnings
    ), warnings
    captions = texts(at.caption)
    (summary,) = [c for c in captions if c.startswith("Base ")]
    found = re.search(
        r"Base ([+-][\d.]+) \+ contributions ([+-][\d.]+) = log-odds ([+-][\d.]+)", summary
    )
    base, moved, log_odds = (float(x) for x in found.groups())
    assert base + moved == pytest.approx(log_odds, abs=0.002)
    assert 100 / (1 + math.exp(-log_odds)) == pytest.approx(shown_percent, abs=0.06)
    (unknown,) = [c for c in captions if c.startswith("Unknown fields:")]
    assert "comments" in unknown and "averaged over the requesters in the training data" in unknown
    assert "account age" not in unknown.lower() and ", posts," not in unknown  # both given
    assert not any("Defaults used" in c or "_at_request" in c for c in captions)
    _words_add_up_to_their_group(at, summary)


def _words_add_up_to_their_group(at: AppTest, summary: str) -> None:
    """The word chart's bars plus "all other words" make the words group's bar."""
    (groups,) = chart_data(at, 'contribution to log-odds"')[:1]
    words_group = next(g["weight"] for g in groups if g["word"] == "words (title and text)")
    (words,) = [d for d in chart_data(at, "words shown") if d]
    assert words[-1]["word"] == "all other words"
    assert sum(w["weight"] for w in words) == pytest.approx(words_group, abs=1e-9)
    title = next(t for t in chart_titles(at) if t and "words shown" in t)
    assert re.match(rf"{len(words) - 1} of \d+ words shown", title), title
    assert "Base " in summary


def test_try_explains_a_narrative_vote_champion_with_blank_fields_unknown(
    populated: Registry, store
) -> None:
    request = builds.TrainRequest(recipe="narrative-vote", backend="local", force=True)
    row, _ = builds.train(request, populated)
    assert row.status == READY, row.error
    populated.promote(row.version, "champion")
    at = run(page(TRY))
    assert by_label(at.selectbox, "Version").value == row.version
    by_label(at.text_input, "Title").input(TITLE)
    by_label(at.text_area, "Request text").input(TEXT)
    run(by_label(at.button, "Predict").click())
    shown_percent = percent(at.metric[0].value)
    decision = [m for m in texts(at.markdown) if m.startswith("would get a pizza: ")]
    threshold = row.metrics["threshold"]
    assert decision and f"at v{row.version}'s threshold {threshold:.2f}" in decision[0]
    assert "(policy f1)" in decision[0]
    answer = "yes" if shown_percent / 100 >= threshold else "no"
    assert decision[0].startswith(f"would get a pizza: {answer}")
    captions = texts(at.caption)
    (summary,) = [c for c in captions if c.startswith("Base ")]
    assert "Method: shap permutation explainer" in summary
    assert "Unknown, contributing 0: account age, " in summary
    log_odds = float(re.search(r"= log-odds ([+-][\d.]+)", summary).group(1))
    assert 100 / (1 + math.exp(-log_odds)) == pytest.approx(shown_percent, abs=0.06)
    groups = chart_data(at, "contribution to log-odds")[0]
    assert {"narrative: money", "text length", "words (title and text)"} <= {
        g["word"] for g in groups
    }
    assert "Account age (days)" not in {g["word"] for g in groups}  # unknown: not a bar
    _words_add_up_to_their_group(at, summary)

    # all ready versions: every version is explained, the champion first
    by_label(at.selectbox, "Version").select("All ready versions")
    run(by_label(at.button, "Predict").click())
    summaries = [c for c in texts(at.caption) if c.startswith("Base ")]
    assert len(summaries) == 4, summaries
    headings = [m for m in texts(at.markdown) if m.startswith("**What moved the score of")]
    assert f"v{row.version} · narrative-vote (champion)" in headings[0]


def test_compare_defaults_to_a_comparable_pair_and_says_when_v_is_invalid(
    populated: Registry,
) -> None:
    # newest two (v3, v2) have different test sets; v2 and v1 share one
    at = run(page(COMPARE))
    picker = by_label(at.multiselect, "Versions (2 to 4; the first is the baseline)")
    assert picker.value == [2, 1]
    assert not at.warning
    at = run(page(COMPARE, v="²,9999"))
    assert by_label(at.multiselect, "Versions (2 to 4; the first is the baseline)").value == [2, 1]
    assert any("does not name two ready versions" in w for w in texts(at.warning))


def test_home_separates_datasets_and_points_to_the_real_data(
    populated: Registry, lab: Path
) -> None:
    at = run(page(HOME))
    assert any("Get the real Random Acts of Pizza data" in e.label for e in at.expander)
    populated.promote(1, "champion")
    at = run(page(HOME))
    assert any("bundled synthetic sample" in w for w in texts(at.warning))
    # a version on another dataset: the chart shows one dataset at a time
    other = lab / "data" / "other.json"
    other.parent.mkdir(parents=True, exist_ok=True)
    other.write_text(json.dumps(json.loads(SAMPLE_DATA.read_text())[:300]))
    request = builds.TrainRequest(recipe="nb-bow", backend="local", data_path=other, force=True)
    row, _ = builds.train(request, populated)
    assert row.status == READY, row.error
    at = run(page(HOME))
    assert not any(e.label.startswith("Get the real") for e in at.expander)
    picker = by_label(at.selectbox, "Dataset")
    assert len(picker.options) == 2
    (history,) = chart_data(at, '"evaluated by"')
    assert {p["data"] for p in history} == {"synthetic sample"}  # the champion's dataset
    run(picker.select_index(1))
    (history,) = chart_data(at, '"evaluated by"')
    assert [p["version"] for p in history] == [row.version]
    (spec,) = [c for c in charts(at) if '"evaluated by"' in json.dumps(c)]
    # the axis starts at the first version shown, with room for its point
    assert spec["encoding"]["x"]["scale"]["domain"] == [row.version - 0.5, row.version + 0.5]
    assert history[0]["data"].startswith("other.json (")
    frame = at.table[0].value
    assert "dataset" in frame.columns and "synthetic sample" in frame["dataset"].tolist()


# --- a failed build ----------------------------------------------------------------------
def test_a_failed_build_shows_its_error_on_versions(populated: Registry) -> None:
    at = run(page(VERSIONS, v="4"))
    assert by_label(at.selectbox, "Details for").value == 4
    assert any("injected training fault" in e for e in texts(at.error)), texts(at.error)
    assert any("status **failed**" in c for c in texts(at.caption))
    at = run(page(VERSIONS, v="4", tab="Actions"))  # the tabs compute only when opened
    promote = by_label(at.button, "Promote to alias")
    assert promote.disabled
    assert not at.get("download_button")  # a failed build has nothing to download


def test_a_failed_build_shows_its_error_on_build(populated: Registry) -> None:
    failed = populated.resolve(4)
    at = page(BUILD)
    at.session_state["my_builds"] = [failed.id]  # a build this session started
    run(at)
    statuses = {shown(s.label).split(" · ")[0]: s for s in at.get("status")}
    assert shown(statuses["v4"].label).startswith("v4 · nb-bow · local · failed")
    assert statuses["v4"].state == "error"
    assert any("injected training fault" in e for e in texts(at.error))


# --- bad input ---------------------------------------------------------------------------
def test_an_empty_request_asks_for_text(populated: Registry) -> None:
    at = run(page(TRY))
    run(by_label(at.button, "Predict").click())
    assert texts(at.warning) == ["type a request title or some text to score"]
    assert not at.metric and not at.error


def test_the_request_boxes_hold_at_most_the_limits(populated: Registry) -> None:
    """The boxes stop at the limits (the browser enforces max_chars); past them, the core
    refuses with a clear message rather than scoring a cut request."""
    from core.dataset import MAX_TEXT_CHARS, MAX_TITLE_CHARS

    at = run(page(TRY))
    assert by_label(at.text_input, "Title").proto.max_chars == MAX_TITLE_CHARS
    assert by_label(at.text_area, "Request text").proto.max_chars == MAX_TEXT_CHARS
    assert any(f"texts up to {MAX_TEXT_CHARS:,} characters" in c for c in texts(at.caption))
    with pytest.raises(BadInput, match=r"too long.*40,000"):
        make_request("fine title", "pizza " * 6_667)


def _upload(lab: Path, name: str, content: bytes) -> AppTest:
    at = run(page(BUILD))
    at.radio(key="source").set_value("Upload a Kaggle-format file")
    run(at)
    at.file_uploader[0].set_value((name, content, "application/json"))
    return run(at)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("broken.json", b"{this is not json", "broken.json: not valid JSON"),
        ("dict.json", b'{"a": 1}', "dict.json: expected a JSON list of request objects"),
        ("wrong.json", json.dumps([{"hello": "world"}]).encode(), "record 0: field"),
        ("empty.json", b"[]", "dataset is empty"),
    ],
)
def test_an_invalid_upload_is_refused_and_nothing_is_stored(
    lab: Path, registry: Registry, name: str, content: bytes, message: str
) -> None:
    at = _upload(lab, name, content)
    errors = texts(at.error)
    assert len(errors) == 1 and message in errors[0], errors
    assert ".incoming-" not in errors[0]  # the user's file name, not the temporary one
    assert not at.success
    assert upload_files(lab) == []
    # the form refuses to start without a valid dataset
    run(by_label(at.button, "Start build").click())
    assert "Choose a dataset first." in texts(at.error)
    assert registry.list_versions() == []


def test_an_upload_of_another_type_is_refused_before_it_is_stored(lab: Path) -> None:
    """The uploader only accepts .json/.jsonl/.zip (Streamlit itself rejects other types,
    in the browser and on the server), and `save_upload` refuses them again."""
    at = run(page(BUILD))
    at.radio(key="source").set_value("Upload a Kaggle-format file")
    run(at)
    assert at.file_uploader[0].allowed_type == [".json", ".jsonl", ".zip"]
    with pytest.raises(BadInput, match=r"must be .json, .jsonl or .zip"):
        save_upload("data.csv", b"a,b\n1,2\n")
    assert upload_files(lab) == []


def test_an_oversize_upload_is_refused(
    lab: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UPLOAD_LIMIT_MB", "0.01")
    content = SAMPLE_DATA.read_bytes()
    assert len(content) > 0.01 * 1024 * 1024
    at = _upload(lab, "sample.json", content)
    errors = texts(at.error)
    assert len(errors) == 1 and "the limit is 0.01 MB" in errors[0], errors
    assert upload_files(lab) == []


def test_a_valid_upload_is_stored_and_offered(lab: Path, registry: Registry) -> None:
    at = _upload(lab, "my data.json", SAMPLE_DATA.read_bytes())
    assert not at.error
    assert any(s.startswith("Valid: 400 requests") for s in texts(at.success))
    stored = upload_files(lab)
    assert len(stored) == 1 and stored[0].name.startswith("my_data-")


def test_out_of_range_numbers_never_reach_a_build(lab: Path, registry: Registry) -> None:
    """The widgets are bounded by each parameter's declared range; Streamlit resets a value
    outside it to the default, so the form cannot submit it. The same request through the
    path the form calls (`builds.submit`) is refused with a message naming the parameter."""
    at = run(page(BUILD))
    alpha = at.number_input(key="param-nb-bow-alpha")
    assert (alpha.min, alpha.max) == (0.001, 100.0)
    alpha.set_value(0.0)
    run(at)
    assert at.number_input(key="param-nb-bow-alpha").value == 1.0
    with pytest.raises(BadInput, match=r"parameter 'alpha': 0(\.0)? is outside the valid range"):
        builds.submit(
            builds.TrainRequest(recipe="nb-bow", params={"alpha": 0}, backend="local"), registry
        )
    assert registry.list_versions() == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("Memory (Docker)", "lots", "memory must look like 512m or 2g"),
        ("Memory (Docker)", "²g", "memory must look like 512m or 2g"),
        ("Memory (Docker)", "1k", "memory must be between 64m and 1024g"),
        ("Memory (Docker)", "99999999999999999999999g", "memory must look like 512m or 2g"),
    ],
)
def test_a_bad_parameter_in_the_form_is_refused(
    lab: Path, registry: Registry, field: str, value: str, message: str
) -> None:
    at = run(page(BUILD))
    at.selectbox(key="recipe").select("tfidf-meta-logreg")
    run(at)
    by_label(at.text_input, field).input(value)
    by_label(at.selectbox, "Builder").select("local")
    run(by_label(at.button, "Start build").click())
    errors = texts(at.error)
    assert len(errors) == 1 and message in errors[0], errors
    assert registry.list_versions() == []


def test_meta_fields_are_picked_from_a_list(lab: Path, registry: Registry) -> None:
    at = run(page(BUILD))
    at.selectbox(key="recipe").select("tfidf-meta-logreg")
    run(at)
    fields = at.multiselect(key="param-tfidf-meta-logreg-meta_fields")
    assert "requester_user_flair" not in fields.options  # leaky fields are not offered
    fields.set_value([])
    by_label(at.selectbox, "Builder").select("local")
    run(by_label(at.button, "Start build").click())
    errors = texts(at.error)
    assert len(errors) == 1 and "name at least one request-time field" in errors[0], errors
    assert registry.list_versions() == []
    chosen = ["requester_account_age_in_days_at_request", "requester_number_of_posts_at_request"]
    at.multiselect(key="param-tfidf-meta-logreg-meta_fields").set_value(chosen)
    run(by_label(at.button, "Start build").click())
    (row,) = registry.list_versions()
    assert row.params["meta_fields"] == ",".join(chosen)
    assert builds.wait_for(row.id, registry, timeout_s=240).status == READY


def test_the_form_launches_a_cross_validated_build(lab: Path, registry: Registry) -> None:
    at = run(page(BUILD))
    assert not [n for n in at.number_input if n.label == "Folds"]  # split by default
    at.radio(key="evaluation").set_value("Cross-validation")
    run(at)
    assert not [n for n in at.number_input if n.label == "Test fraction"]
    by_label(at.number_input, "Folds").set_value(3)
    by_label(at.number_input, "Repeats").set_value(2)
    by_label(at.selectbox, "Builder").select("local")
    run(by_label(at.button, "Start build").click())
    (row,) = registry.list_versions()
    assert row.provenance["request"]["cv"] == {"folds": 3, "repeats": 2}
    done = builds.wait_for(row.id, registry, timeout_s=240)
    assert done.status == READY, done.error
    assert done.metrics["evaluation"]["kind"] == "cv"
    assert len(registry.details(done.id).test_ids) == done.metrics["n"]


# --- builds from the dashboard -----------------------------------------------------------
@pytest.mark.parametrize("force", [False, True], ids=["reuse", "retrain-if-identical"])
def test_three_quick_clicks_start_one_build(
    lab: Path, registry: Registry, force: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Start build clicked three times before the first build ends: one version, followed.
    (The launch is held back until the clicks are done, so "before it ends" is certain.)"""
    launched: list[int] = []
    real_launch = builds.launch
    monkeypatch.setattr(builds, "launch", lambda version_id, reg: launched.append(version_id))
    at = run(page(BUILD))
    by_label(at.selectbox, "Builder").select("local")
    if force:
        by_label(at.checkbox, "Retrain if identical").check()
    for _ in range(3):
        run(by_label(at.button, "Start build").click())
    (row,) = registry.list_versions()
    assert any("already building" in info for info in texts(at.info)), texts(at.info)
    assert st_builds(at) == [row.id, row.id, row.id]
    assert launched == [row.id]
    real_launch(row.id, registry)
    assert builds.wait_for(row.id, registry, timeout_s=240).status == READY
    assert len(registry.list_versions()) == 1


def st_builds(at: AppTest) -> list[int]:
    return list(at.session_state["my_builds"]) if "my_builds" in at.session_state else []


def test_the_build_form_launches_exactly_one_build(lab: Path, registry: Registry) -> None:
    at = run(page(BUILD))
    assert at.selectbox(key="recipe").value == "nb-bow"
    by_label(at.selectbox, "Builder").select("local")
    run(by_label(at.button, "Start build").click())
    assert not at.error
    rows = registry.list_versions()
    assert len(rows) == 1
    assert rows[0].status in ACTIVE_STATUSES and rows[0].builder == "local"
    assert rows[0].worker_pid  # launched in a worker process
    assert texts(at.toast) == ["Build v1 started (local)"]
    done = builds.wait_for(rows[0].id, registry, timeout_s=240)
    assert done.status == READY, done.error
    assert [r.id for r in registry.list_versions()] == [rows[0].id]
    # the build panel shows it complete with its AUC and a link to it, also after a reload
    for shown_page in (run(at), run(page(BUILD))):
        (status,) = shown_page.get("status")
        assert shown(status.label).startswith("v1 · nb-bow · local · ready · ROC AUC ")
        assert status.state == "complete"
        links = [m.value for m in shown_page.markdown if "on Versions" in m.value]
        assert links == ["[Open v1 on Versions](./Versions?v=1)"]


def test_the_starter_button_starts_three_builds(lab: Path, registry: Registry) -> None:
    at = run(page(HOME))
    run(by_label(at.button, "Train starter recipes on the bundled sample").click())
    rows = registry.list_versions()
    assert sorted(r.recipe for r in rows) == sorted(builds.STARTER_RECIPES)
    assert {r.builder for r in rows} == {"local"}
    # the page reran: the starter button is gone and the new builds are listed
    assert not [b for b in at.button if b.label.startswith("Train starter")]
    assert at.table[0].value["version"].tolist() == [3, 2, 1]
    finished = wait_all(registry)
    assert [r.status for r in finished] == [READY, READY, READY], [r.error for r in finished]


def test_version_summaries_match_the_full_rows(populated: Registry) -> None:
    """The lean listing Versions and Home read has the same values as the full rows."""
    populated.add_tag(populated.resolve(2).id, "baseline")
    populated.set_note(populated.resolve(3).id, "other split")
    populated.set_archived(populated.resolve(1).id)
    full = populated.list_versions()
    summaries = populated.version_summaries()
    assert [s.id for s in summaries] == [r.id for r in full]
    for summary, row in zip(summaries, full, strict=True):
        for name in ("version", "status", "archived", "recipe", "builder", "note"):
            assert getattr(summary, name) == getattr(row, name), name
        # the summary carries the shown metrics, read out of the JSON by the database
        expected = {k: v for k, v in (row.metrics or {}).items() if k in SUMMARY_METRICS}
        assert summary.metrics == (expected or None)
        assert row.status != READY or {"roc_auc", "f1", "fpr", "fnr"} <= set(summary.metrics)
        assert summary.data_sha256 == row.data_sha256 and summary.error == row.error
        assert summary.tags == [t.name for t in row.tags]
    visible = populated.version_summaries(include_archived=False)
    assert [s.version for s in visible] == [4, 3, 2]
    assert populated.version_summaries("no-such-model") == []


def test_versions_shows_the_reliability_diagram_and_brier(populated: Registry) -> None:
    from core.evaluate import calibration_points

    at = run(page(VERSIONS, v="2"))
    assert "Calibration" in chart_titles(at)
    (points,) = chart_data(at, '"share that got a pizza"')
    row = populated.resolve(2)
    details = populated.details(row.id)
    expected = calibration_points(details.test_labels, details.test_probabilities)
    assert [(p["predicted"], p["observed"]) for p in points] == [
        (e["predicted"], e["observed"]) for e in expected
    ]
    assert len(expected) >= 2
    brier = f"Brier score {row.metrics['brier']:.3f}"
    assert any(c.startswith(brier) for c in texts(at.caption)), texts(at.caption)


def test_refit_on_all_data_from_versions(populated: Registry) -> None:
    at = run(page(VERSIONS, v="2", tab="Actions"))
    run(by_label(at.button, "Refit on all data").click())
    (said,) = texts(at.success)
    assert said.startswith("v5, the refit of v2, is building"), said
    row = builds.wait_for(populated.resolve(5).id, populated, timeout_s=240)
    assert row.status == READY, row.error
    at = run(page(VERSIONS, v="5", tab="Actions"))
    (info,) = [i for i in texts(at.info) if i.startswith("Refitted on all")]
    assert "Refitted on all 400 requests" in info and "are v2's" in info
    assert not [b for b in at.button if b.label == "Refit on all data"]  # no refit of a refit
    at = run(page(COMPARE, v="2,5"))
    assert any("v5 is v2 refitted on all of its data" in i for i in texts(at.info))
    assert any("Not comparable: v2 and v5" in w for w in texts(at.warning))


# --- user text is shown as text ----------------------------------------------------------
def test_html_in_notes_is_shown_as_text(populated: Registry) -> None:
    populated.set_note(populated.resolve(2).id, f"careful {SCRIPT}")
    at = run(page(VERSIONS, v="2", tab="Actions"))
    assert f"Note: careful {SCRIPT}" in texts(at.text)
    no_unsafe_html(at)
    # the note also comes back verbatim in the note editor
    assert by_label(at.text_area, "Note").value == f"careful {SCRIPT}"


def test_html_as_a_tag_is_refused_and_shown_as_text(populated: Registry) -> None:
    at = run(page(VERSIONS, v="2", tab="Actions"))
    by_label(at.text_input, "Tag").input(SCRIPT)
    run(by_label(at.button, "Add tag").click())
    errors = texts(at.error)
    assert len(errors) == 1 and "must be 1-100 characters" in errors[0], errors
    assert populated.resolve(2).tags == []
    no_unsafe_html(at)
    # a plain tag is added and shown as text
    by_label(at.text_input, "Tag").input("baseline")
    run(by_label(at.button, "Add tag").click())
    assert [t.name for t in populated.resolve(2).tags] == ["baseline"]
    assert "Tags: baseline" in texts(at.text)


def test_html_in_a_note_saved_through_the_form_stays_text(populated: Registry) -> None:
    at = run(page(VERSIONS, v="1", tab="Actions"))
    by_label(at.text_area, "Note").input(SCRIPT)
    run(by_label(at.button, "Save note").click())
    assert populated.resolve(1).note == SCRIPT
    assert f"Note: {SCRIPT}" in texts(at.text)
    no_unsafe_html(at)
    assert joined(at.markdown).count("<script") == 0


def clone_versions(registry: Registry, first: int, last: int) -> None:
    """Copies of version 1 numbered first..last, inserted with one statement."""
    import sqlalchemy as sa

    with registry.engine.begin() as conn:
        columns = [
            c["name"]
            for c in sa.inspect(conn).get_columns("model_versions")
            if c["name"] not in ("id", "version")
        ]
        listed = ", ".join(columns)
        conn.execute(
            sa.text(
                "WITH RECURSIVE n(k) AS (SELECT :first UNION ALL SELECT k + 1 FROM n"
                f" WHERE k < :last) INSERT INTO model_versions (version, {listed})"
                f" SELECT k, {listed} FROM n, model_versions WHERE model_versions.version = 1"
            ),
            {"first": first, "last": last},
        )


def test_versions_offers_the_newest_500_for_details_and_any_by_address(
    populated: Registry,
) -> None:
    clone_versions(populated, 5, 800)
    at = run(page(VERSIONS))
    choices = by_label(at.selectbox, "Details for").options
    assert len(choices) == 500 and choices[0].startswith("v800")
    assert "newest 500 of the 800 versions" in joined(at.caption)
    at = run(page(VERSIONS, v="3"))  # an old version, named in the address
    details = by_label(at.selectbox, "Details for")
    assert len(details.options) == 501 and details.value == 3
