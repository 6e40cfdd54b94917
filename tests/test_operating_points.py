"""Operating points: thresholds chosen on training data by a declared policy, every
threshold-dependent figure taken there, undefined rates left undefined, single-class versions
flagged, Compare at a common point, and the migration that labels older versions.

Unit tests check the policies against scikit-learn's own metrics; the CLI tests run real
builds against a real SQLite registry; the page tests run the pages under AppTest.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sklearn import metrics as skm

from core import builds, train
from core.dataset import load_dataset
from core.errors import BadInput
from core.evaluate import classification_metrics, make_split
from core.operating_point import (
    CommonPoint,
    flags_of,
    parse_at,
    parse_policy,
    policy_label,
    threshold_for,
    tune_threshold,
)
from core.registry import Registry
from core.schema import READY
from tests.helpers import run_cli
from tests.test_dashboard_apptest import (
    BUILD,
    COMPARE,
    HOME,
    VERSIONS,
    by_label,
    charts,
    page,
    run,
    texts,
)


def _scores(n: int = 600, seed: int = 0, base: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Labels at a 25% base rate and calibrated-looking probabilities with some signal."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < base).astype(int)
    p = np.clip(base + 0.18 * (y - base) + rng.normal(0, 0.12, n), 0.001, 0.999)
    return y, p


def _grid(p: np.ndarray) -> np.ndarray:
    return np.linspace(p.min(), p.max(), 100)  # TunedThresholdClassifierCV's candidates


# --- policies ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("f1", "f1"),
        ("F1", "f1"),
        ("balanced-accuracy", "balanced-accuracy"),
        ("balanced_accuracy", "balanced-accuracy"),
        ("cost:FN=3,FP=1", "cost:FN=3,FP=1"),
        ("cost: fn = 5 , fp = 0.5", "cost:FN=5,FP=0.5"),
        ("recall>=0.6", "recall>=0.6"),
        ("precision >= .5", "precision>=0.5"),
        ("fixed:0.5", "fixed:0.5"),
    ],
)
def test_policies_parse_to_one_spelling(text: str, label: str) -> None:
    assert parse_policy(text).label == label


@pytest.mark.parametrize(
    "text",
    [
        "",
        "best",
        "fixed:1.5",
        "fixed:0",
        "recall>=2",
        "cost:FN=0,FP=0",
        "cost:FN=-1,FP=1",
        None,
        "fixed:0.5 (before operating points)",
        "x" * 200,
    ],
)
def test_unknown_or_out_of_range_policies_are_refused(text) -> None:
    with pytest.raises(BadInput, match="threshold policy"):
        parse_policy(text)


def test_the_f1_policy_finds_the_best_f1_threshold() -> None:
    y, p = _scores()
    chosen = tune_threshold(y, p, parse_policy("f1"))
    best = max(skm.f1_score(y, p >= t) for t in _grid(p))
    assert skm.f1_score(y, p >= chosen) == pytest.approx(best, abs=1e-9)
    assert chosen < 0.5 and skm.f1_score(y, p >= chosen) > skm.f1_score(y, p >= 0.5)


def test_the_cost_policy_minimises_the_cost() -> None:
    y, p = _scores(seed=1)

    def cost(t: float) -> float:
        _, fp, fn, _ = skm.confusion_matrix(y, p >= t, labels=[0, 1]).ravel()
        return 3 * fn + fp

    chosen = tune_threshold(y, p, parse_policy("cost:FN=3,FP=1"))
    assert cost(chosen) == pytest.approx(min(cost(t) for t in _grid(p)))
    cheap_misses = tune_threshold(y, p, parse_policy("cost:FN=1,FP=3"))
    assert cheap_misses > chosen  # false promises dearer: flag fewer


@pytest.mark.parametrize(("kind", "floor"), [("recall", 0.6), ("precision", 0.5)])
def test_floor_policies_hold_their_floor_and_optimise_the_other(kind: str, floor: float) -> None:
    y, p = _scores(seed=2)
    chosen = tune_threshold(y, p, parse_policy(f"{kind}>={floor}"))
    held = skm.recall_score if kind == "recall" else skm.precision_score
    other = skm.precision_score if kind == "recall" else skm.recall_score
    assert held(y, p >= chosen) >= floor
    feasible = [t for t in _grid(p) if held(y, p >= t, zero_division=0) >= floor]
    assert other(y, p >= chosen) == pytest.approx(max(other(y, p >= t) for t in feasible))


def test_a_fixed_policy_is_not_tuned() -> None:
    y, p = _scores()
    assert tune_threshold(y, p, parse_policy("fixed:0.37")) == 0.37


def test_undefined_rates_are_none_and_a_one_class_decision_is_flagged() -> None:
    y, p = _scores()
    nobody = classification_metrics(y, p, 0.9999)
    assert nobody["confusion_matrix"]["tp"] + nobody["confusion_matrix"]["fp"] == 0
    assert nobody["precision"] is None  # 0/0: never a made-up 0
    assert nobody["recall"] == 0.0 and nobody["f1"] == 0.0 and nobody["fnr"] == 1.0
    assert flags_of(nobody) == ["single-class"]
    everybody = classification_metrics(y, p, 0.0)
    assert everybody["fpr"] == 1.0 and flags_of(everybody) == ["single-class"]
    assert flags_of(classification_metrics(y, p, 0.3)) == []
    assert policy_label(None) == "fixed:0.5 (before operating points)"
    assert policy_label({"threshold_policy": "f1"}, 0.27) == "f1"


def test_common_points_put_versions_where_asked() -> None:
    y, p = _scores(seed=3)
    t = threshold_for(parse_at("fpr=0.2"), y, p)
    fpr = np.mean(p[y == 0] >= t)
    assert fpr <= 0.2 and fpr > 0.17  # the lowest threshold within the target
    t = threshold_for(parse_at("flagged=0.3"), y, p)
    assert np.mean(p >= t) == pytest.approx(0.3, abs=0.01)
    assert threshold_for(CommonPoint("threshold", 0.4), y, p) == 0.4
    for bad in ("fpr", "fpr=2", "flagged=x", "median=0.5"):
        with pytest.raises(BadInput, match="--at"):
            parse_at(bad)


# --- training: the threshold never sees the scored requests -------------------------------
@pytest.fixture
def sample():
    from core.config import SAMPLE_DATA

    return load_dataset(SAMPLE_DATA)


def test_a_split_build_tunes_on_its_training_part_only(sample, monkeypatch) -> None:
    seen: list[set] = []
    real = train.inner_folds
    monkeypatch.setattr(
        train,
        "inner_folds",
        lambda ids, labels, rows, seed: seen.append(set(rows)) or real(ids, labels, rows, seed),
    )
    result = train.fit_and_evaluate(sample, "tfidf-logreg", {}, 42, 0.2, "f1", log=lambda _: None)
    ids = [r["request_id"] for r in sample.records]
    split = make_split(ids, [r["requester_received_pizza"] for r in sample.records], 42, 0.2)
    assert seen == [set(split.train_index.tolist())]
    assert not seen[0] & set(split.test_index.tolist())
    m = result.metrics
    assert m["threshold_policy"] == "f1" and m["threshold"] != 0.5
    again = classification_metrics(result.test_labels, result.test_probabilities, m["threshold"])
    assert again["confusion_matrix"] == m["confusion_matrix"]


def test_each_cv_fold_tunes_inside_its_training_part(sample, monkeypatch) -> None:
    seen: list[int] = []
    real = train.tune_threshold
    monkeypatch.setattr(
        train, "tune_threshold", lambda y, p, policy: seen.append(len(y)) or real(y, p, policy)
    )
    result = train.cross_validate(sample, "nb-bow", {}, 0, 4, 1, "f1", log=lambda _: None)
    assert len(result.metrics["evaluation"]["fold_thresholds"][0]) == 4
    assert len(seen) == 5  # four folds and the final model
    assert seen[:4] == [sample.rows - len(test) for test in _fold_tests(sample, 4)]
    assert seen[4] == sample.rows  # the final model: out-of-fold probabilities of all rows


def _fold_tests(sample, folds: int) -> list:
    from core.evaluate import make_folds

    ids = [r["request_id"] for r in sample.records]
    labels = [r["requester_received_pizza"] for r in sample.records]
    return make_folds(ids, labels, 0, folds, 1, sample.sha256).test_indices[0]


# --- CLI, real registry ------------------------------------------------------------------
def _train(*args: str) -> dict:
    done = run_cli("train", "--backend", "local", "--json", "--quiet", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def three(lab: Path) -> list[dict]:
    """v1 nb-bow and v2 tfidf-logreg (policy f1), v3 tfidf-logreg at fixed:0.99."""
    return [
        _train("--recipe", "nb-bow"),
        _train("--recipe", "tfidf-logreg"),
        _train("--recipe", "tfidf-logreg", "--threshold-policy", "fixed:0.99"),
    ]


def test_policies_are_recorded_flagged_and_fingerprinted(three: list[dict], lab: Path) -> None:
    tuned, _, stuck = three
    assert tuned["metrics"]["threshold_policy"] == tuned["threshold_policy"] == "f1"
    assert tuned["threshold"] == tuned["metrics"]["threshold"] != 0.5
    assert tuned["provenance"]["threshold"] == tuned["threshold"]
    assert tuned["provenance"]["threshold_policy"] == "f1"
    assert stuck["flags"] == ["single-class"] and stuck["metrics"]["precision"] is None
    assert stuck["metrics"]["threshold"] == 0.99
    listing = run_cli("list")
    assert "single-class" in listing.stdout and "0.99 (fixed:0.99)" in listing.stdout
    assert "flag single-class" in run_cli("show", "3").stdout
    # the policy is part of the fingerprint: another policy trains again, the same reuses
    other = _train("--recipe", "nb-bow", "--threshold-policy", "balanced-accuracy")
    assert other["version"] == 4 and other["fingerprint"] != tuned["fingerprint"]
    assert _train("--recipe", "nb-bow")["version"] == 1


def test_a_bad_policy_exits_2_and_queues_nothing(lab: Path) -> None:
    for args in (
        ["--threshold-policy", "best"],
        ["--threshold", "0.3", "--threshold-policy", "f1"],
    ):
        done = run_cli("train", "--recipe", "nb-bow", "--backend", "local", *args)
        assert done.returncode == 2 and "threshold" in done.stderr
    assert Registry().list_versions() == []


def test_compare_at_equal_fpr_json(three: list[dict]) -> None:
    done = run_cli("compare", "1", "2", "--at", "fpr=0.2", "--resamples", "200", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["operating_point"]["mode"] == "fpr"
    fprs = next(m["values"] for m in out["metrics"] if m["metric"] == "fpr")
    assert all(0.15 < f <= 0.2 for f in fprs), fprs
    assert "equal false positive rate 0.2" in out["paired"][0]["verdict"]
    own = json.loads(run_cli("compare", "1", "2", "--resamples", "200", "--json").stdout)
    assert own["operating_point"]["mode"] == "own"
    assert [p["threshold"] for p in own["operating_point"]["versions"]] == [
        three[0]["threshold"],
        three[1]["threshold"],
    ]
    # a single-class version: its undefined precision has no delta, and Compare warns
    stuck = json.loads(run_cli("compare", "2", "3", "--resamples", "200", "--json").stdout)
    precision = next(m for m in stuck["metrics"] if m["metric"] == "precision")
    assert precision["values"][1] is None and precision["deltas"][1] is None
    assert any("single-class" in w for w in stuck["warnings"])
    bad = run_cli("compare", "1", "2", "--at", "fpr=7")
    assert bad.returncode == 2 and "--at" in bad.stderr


def test_the_real_data_gets_a_tuned_threshold_that_holds_on_unseen_requests(
    shared_data: Path, lab: Path, tmp_path: Path
) -> None:
    """Done-when of the issue: a default narrative-vote build on the real data records a
    tuned threshold with FNR at most 0.6; evaluate on requests it never saw uses it."""
    with zipfile.ZipFile(shared_data) as archive:
        records = json.loads(archive.read(archive.namelist()[0]))
    rng = np.random.default_rng(0)
    unseen = set(rng.choice(len(records), size=len(records) // 5, replace=False).tolist())
    train_file, unseen_file = tmp_path / "train.json", tmp_path / "unseen.json"
    train_file.write_text(json.dumps([r for i, r in enumerate(records) if i not in unseen]))
    unseen_file.write_text(json.dumps([r for i, r in enumerate(records) if i in unseen]))
    v = _train("--recipe", "narrative-vote", "--data", str(train_file))
    assert v["threshold_policy"] == "f1" and 0.05 < v["threshold"] < 0.45
    assert v["metrics"]["fnr"] <= 0.6 and v["flags"] == []
    done = run_cli("evaluate", "1", "--data", str(unseen_file), "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)["metrics"]
    assert out["threshold"] == v["threshold"] and out["threshold_policy"] == "f1"
    assert out["fnr"] < 0.7 and out["f1"] > 0.3  # at 0.5 nearly every pizza was missed


# --- migration ---------------------------------------------------------------------------
def test_0006_labels_old_versions_and_undefines_zero_over_zero(lab: Path) -> None:
    url = f"sqlite:///{lab / 'old.db'}"
    old = Registry(url, migrate=False)
    old.upgrade("0005")
    matrix = {"tn": 80, "fp": 0, "fn": 20, "tp": 0}
    metrics = {
        "threshold": 0.5,
        "confusion_matrix": matrix,
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "roc_auc": 0.7,
    }
    with old.engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO models (id, name, created_at) VALUES (1, 'raop', '2025-01-01')")
        )
        conn.execute(
            sa.text(
                "INSERT INTO model_versions (id, model_id, version, status, created_at, recipe,"
                " params, threshold, builder, fingerprint, data_path, data_sha256, split_seed,"
                " split_test_size, metrics, provenance, cancel_requested, imported, archived)"
                " VALUES (1, 1, 1, 'ready', '2025-01-01', 'nb-bow', '{}', 0.5, 'local', :fp, '',"
                " :d, 42, 0.2, :m, '{}', 0, 0, 0)"
            ),
            {"fp": "f" * 64, "d": "d" * 64, "m": json.dumps(metrics)},
        )
    old.engine.dispose()
    row = Registry(url).resolve(1)
    assert row.threshold == 0.5
    assert row.threshold_policy == "fixed:0.5 (before operating points)"
    assert row.metrics["threshold_policy"] == row.threshold_policy
    assert row.metrics["precision"] is None  # 0/0 stored as 0 before
    assert row.metrics["recall"] == 0.0 and row.metrics["f1"] == 0.0  # real zeros stay
    assert row.flags == ["single-class"]


# --- pages -------------------------------------------------------------------------------
def test_the_build_form_records_the_chosen_policy(lab: Path, registry: Registry) -> None:
    at = run(page(BUILD))
    assert at.selectbox(key="threshold_policy").value == "f1"
    by_label(at.selectbox, "Builder").select("local")
    at.selectbox(key="threshold_policy").set_value("recall>=0.6")
    run(by_label(at.button, "Start build").click())
    (row,) = registry.list_versions()
    assert row.threshold_policy == "recall>=0.6"
    done = builds.wait_for(row.id, registry, timeout_s=240)
    assert done.status == READY, done.error
    assert done.metrics["threshold_policy"] == "recall>=0.6"
    assert done.metrics["recall"] >= 0.4  # tuned for 0.6 on training data, held-out is noisier


def test_a_bad_policy_typed_in_the_form_is_refused(lab: Path, registry: Registry) -> None:
    at = run(page(BUILD))
    by_label(at.selectbox, "Builder").select("local")
    at.selectbox(key="threshold_policy").set_value("other (type it below)")
    at.text_input(key="custom_policy").input("cost:FN=lots")
    run(by_label(at.button, "Start build").click())
    assert any("threshold policy" in e for e in texts(at.error)), texts(at.error)
    assert registry.list_versions() == []


def test_versions_home_and_compare_show_operating_points(three: list[dict]) -> None:
    registry = Registry()
    at = run(page(VERSIONS))
    table = at.dataframe[0].value
    assert table["threshold"].tolist()[0] == "0.99 (fixed:0.99)"
    assert table["threshold"].tolist()[2].endswith("(f1)")
    assert table["flags"].tolist() == ["⚠ single-class", "", ""]
    assert not at.warning and not at.tabs  # no version's details until one is chosen
    by_label(at.selectbox, "Details for").select(3)
    run(at)
    assert at.query_params["v"] == "3"
    assert any("flag single-class" in w for w in texts(at.warning))  # v3's details
    assert any(m.startswith("**Decisions at threshold 0.99**") for m in texts(at.markdown))

    registry.promote(2, "champion")
    home = run(page(HOME))
    assert any("(policy f1)" in c for c in texts(home.caption)), texts(home.caption)

    at = run(page(COMPARE, v="1,2"))
    assert any("each version's own threshold" in c for c in texts(at.caption))
    at.radio(key="at-mode").set_value("fpr")
    run(at)
    assert at.query_params["at"] == "fpr=0.2"
    assert any("equal false positive rate 0.2" in m for m in texts(at.markdown))
    subtitles = [s["title"]["subtitle"] for s in charts(at) if isinstance(s.get("title"), dict)]
    assert len(subtitles) == 2 and all("(not its own" in s for s in subtitles), subtitles
    metrics = at.table[0].value
    fprs = metrics.loc[metrics["metric"] == "False positive rate", ["v1", "v2"]].iloc[0]
    assert all(0.15 < f <= 0.2 for f in fprs)

    at = run(page(COMPARE, v="2,3"))
    assert any("single-class" in w for w in texts(at.warning))
    metrics = at.table[0].value
    assert metrics.loc[metrics["metric"] == "Precision", "Δ v3"].iloc[0] == "—"


def test_try_shows_each_decision_and_warns_of_a_single_class_version(three: list[dict]) -> None:
    from tests.test_dashboard_apptest import TEXT, TITLE, TRY

    at = run(page(TRY))
    by_label(at.text_input, "Title").input(TITLE)
    by_label(at.text_area, "Request text").input(TEXT)
    by_label(at.selectbox, "Version").select("All ready versions")
    run(by_label(at.button, "Predict").click())
    decisions = [m for m in texts(at.markdown) if "would get a pizza: " in m]
    assert len(decisions) == 3, decisions
    assert any(
        "would get a pizza: no, at v3's threshold 0.99 (policy fixed:0.99)" in d for d in decisions
    )
    assert any("(policy f1)" in d for d in decisions)
    assert any("flag single-class" in w for w in texts(at.warning))
