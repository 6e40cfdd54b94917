"""`python -m core` end to end on the bundled sample with the local builder.

Three versions are trained once per module through the real CLI (v1 nb-bow and v2
tfidf-logreg on the same split, v3 nb-bow with another seed); each test gets its own copy of
that registry and artifact store in its isolated folder, so tests can change it freely.
"""

from __future__ import annotations

import json
import math
import platform
import re
import shutil
import sqlite3
from contextlib import closing
from datetime import datetime
from importlib import metadata
from pathlib import Path

import pytest
from sklearn import metrics as skm

from core import builds, predict
from core.artifacts import open_store, sha256_of
from core.cli import main
from core.dataset import LABEL, REQUEST_ID, load_dataset
from core.errors import BadInput
from core.evaluate import classification_metrics, make_split
from core.recipes import get_recipe
from core.registry import Registry
from tests.conftest import SAMPLE
from tests.helpers import artifact_files, run_cli

SHA256 = re.compile(r"^[0-9a-f]{64}$")
PACKAGES = ("scikit-learn", "numpy", "scipy", "pandas", "joblib")
TRAINED = (("nb-bow", "42"), ("tfidf-logreg", "42"), ("nb-bow", "7"))


def train_args(recipe: str = "nb-bow", seed: str = "42", *extra: str) -> list[str]:
    return ["train", "--recipe", recipe, "--seed", seed, "--backend", "local", "--json", *extra]


def ok_json(*args: str, env: dict[str, str] | None = None):
    result = run_cli(*args, env=env)
    assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stderr}"
    return json.loads(result.stdout)


pytestmark = pytest.mark.both_backends


def _train_three(home: Path, registry_url: str) -> list[dict]:
    env = {
        "REGISTRY_URL": registry_url,
        "ARTIFACT_ROOT": str(home / "artifacts"),
        "LOG_ROOT": str(home / "logs"),
        "DATA_DIR": str(home / "data"),
    }
    return [ok_json(*train_args(recipe, seed, "--quiet"), env=env) for recipe, seed in TRAINED]


@pytest.fixture(scope="module")
def built_sqlite(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict], str]:
    home = tmp_path_factory.mktemp("cli-home")
    return home, _train_three(home, f"sqlite:///{home / 'registry.db'}"), ""


@pytest.fixture(scope="module")
def built_postgresql(tmp_path_factory, pg_server) -> tuple[Path, list[dict], str]:
    """The three versions in a PostgreSQL database that tests copy (CREATE ... TEMPLATE)."""
    home = tmp_path_factory.mktemp("cli-home-pg")
    name = pg_server.create_database("cli_template")
    yield home, _train_three(home, pg_server.url(name)), name
    pg_server.drop_database(name)


@pytest.fixture
def built(request: pytest.FixtureRequest, registry_backend: str) -> tuple[Path, list[dict]]:
    """(home, train JSON) of the module's three versions on this test's backend."""
    home, outputs, _ = request.getfixturevalue(f"built_{registry_backend}")
    return home, outputs


@pytest.fixture
def trained(request: pytest.FixtureRequest, registry_backend: str, lab: Path, monkeypatch):
    """This test's own copy of the module's three trained versions; returns their train JSON."""
    home, outputs, template = request.getfixturevalue(f"built_{registry_backend}")
    if template:
        server = request.getfixturevalue("pg_server")
        name = server.create_database("cli", template=template)
        request.addfinalizer(lambda: server.drop_database(name))
        monkeypatch.setenv("REGISTRY_URL", server.url(name))
    else:
        with (
            closing(sqlite3.connect(home / "registry.db")) as source,
            closing(sqlite3.connect(lab / "registry.db")) as target,
        ):
            source.backup(target)  # a consistent copy, WAL or not
    shutil.copytree(home / "artifacts", lab / "artifacts")
    return outputs


def cli_main(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """`python -m core ARGS` in-process: quick extra checks beside the subprocess ones."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def count_versions() -> int:
    return len(Registry().all_versions())


def sample_records() -> list[dict]:
    return json.loads(SAMPLE.read_text())


# --- train ---------------------------------------------------------------------------------
def test_train_json_is_a_complete_version(built):
    home, outputs = built
    v = outputs[0]
    assert v["version"] == 1 and v["status"] == "ready" and v["reused"] is False
    assert v["recipe"] == "nb-bow" and v["builder"] == "local"
    assert v["params"] == get_recipe("nb-bow").resolve({})
    assert v["error"] is None

    records = sample_records()
    split = make_split(
        [r[REQUEST_ID] for r in records], [r[LABEL] for r in records], seed=42, test_size=0.2
    )
    assert v["split_hash"] == split.hash

    m = v["metrics"]
    cm = m["confusion_matrix"]
    assert set(cm) == {"tn", "fp", "fn", "tp"}
    assert sum(cm.values()) == m["n"] == math.ceil(0.2 * len(records))
    assert m["positives"] == sum(records[i][LABEL] for i in split.test_index)
    assert m["fpr"] == pytest.approx(cm["fp"] / (cm["fp"] + cm["tn"]))
    assert m["fnr"] == pytest.approx(cm["fn"] / (cm["fn"] + cm["tp"]))
    assert 0.5 < m["roc_auc"] <= 1.0  # the sample carries signal; a broken model is ~0.5

    assert SHA256.match(v["artifact_sha256"])
    stored = open_store(str(home / "artifacts")).local_path(v["artifact_sha256"])
    assert sha256_of(stored) == v["artifact_sha256"]
    assert stored.stat().st_size == v["artifact_size"]

    p = v["provenance"]
    assert p["builder"] == "local"
    assert p["data_sha256"] == v["data_sha256"] == load_dataset(SAMPLE).sha256
    assert p["data_rows"] == len(records)
    for name in PACKAGES:
        assert p["packages"][name] == metadata.version(name)
    assert p["python"] == platform.python_version()
    assert p["platform"] == platform.platform()
    assert {"commit", "dirty"} <= set(p["git"])
    if p["git"]["commit"] is not None:
        assert re.fullmatch(r"[0-9a-f]{40}", p["git"]["commit"])
    assert p["split"] == {"seed": 42, "test_size": 0.2, "hash": v["split_hash"]}
    assert p["fit_seconds"] >= 0 and p["evaluate_seconds"] >= 0
    started = datetime.fromisoformat(p["started_at"])
    finished = datetime.fromisoformat(p["finished_at"])
    assert started <= finished
    assert SHA256.match(p["code_fingerprint"])


def test_recorded_test_predictions_are_the_models(trained):
    """The stored held-out ids, labels and probabilities are what the stored artifact gives."""
    registry = Registry()
    row = registry.resolve(1)
    details = registry.details(row.id)
    by_id = {r[REQUEST_ID]: r for r in sample_records()}
    test_records = [by_id[rid] for rid in details.test_ids]
    assert details.test_labels == [int(r[LABEL]) for r in test_records]
    assert len(details.test_ids) == row.metrics["n"]
    probabilities = predict.predict_proba(predict.load_model(row), test_records)
    assert probabilities == pytest.approx(details.test_probabilities, abs=1e-12)
    assert row.metrics["roc_auc"] == pytest.approx(
        skm.roc_auc_score(details.test_labels, details.test_probabilities)
    )


def test_identical_train_is_reused(trained, lab):
    # Compare two back-to-back calls: a commit between the module's build and this test
    # legitimately changes the fingerprint (git commit and code are part of it).
    first = ok_json(*train_args("nb-bow", "42", "--quiet"))
    before = artifact_files(lab)
    count = count_versions()
    again = ok_json(*train_args())
    assert again["reused"] is True and again["status"] == "ready"
    assert again["id"] == first["id"] and again["version"] == first["version"]
    assert again["artifact_sha256"] == first["artifact_sha256"]
    assert artifact_files(lab) == before
    assert count_versions() == count


def test_force_trains_a_new_version(trained, lab):
    forced = ok_json(*train_args("nb-bow", "42", "--force", "--quiet"))
    assert forced["reused"] is False and forced["status"] == "ready"
    assert forced["version"] == len(TRAINED) + 1
    assert forced["id"] not in {t["id"] for t in trained}
    assert forced["split_hash"] == trained[0]["split_hash"]
    assert open_store(str(lab / "artifacts")).exists(forced["artifact_sha256"])
    assert count_versions() == len(TRAINED) + 1


# --- list, show, promote -------------------------------------------------------------------
def test_list_show_and_promote(trained, capsys):
    listed = ok_json("list", "--json")
    assert [v["version"] for v in listed] == [3, 2, 1]
    assert [v["recipe"] for v in listed] == ["nb-bow", "tfidf-logreg", "nb-bow"]
    assert all(v["status"] == "ready" and v["aliases"] == [] for v in listed)

    shown = ok_json("show", "latest", "--json")
    assert shown["version"] == 3 and shown["id"] == trained[2]["id"]
    assert shown["metrics"] == trained[2]["metrics"]

    assert ok_json("promote", "1", "--alias", "champion", "--json")["aliases"] == ["champion"]
    assert ok_json("promote", "2", "--alias", "champion", "--json")["aliases"] == ["champion"]
    champion = ok_json("show", "champion", "--json")
    assert champion["version"] == 2 and champion["recipe"] == "tfidf-logreg"
    registry = Registry()
    assert registry.aliases_by_version() == {trained[1]["id"]: ["champion"]}

    # the readable renderings of the same verbs
    code, out, _ = cli_main(capsys, "list")
    assert code == 0 and "champion" in out and "tfidf-logreg" in out
    code, out, _ = cli_main(capsys, "show", "1")
    assert code == 0 and f"artifact:   {trained[0]['artifact_sha256']}" in out


def test_unknown_references_are_bad_input(trained, capsys):
    result = run_cli("show", "99")
    assert result.returncode == 2
    assert "no version '99'" in result.stderr
    code, out, err = cli_main(capsys, "predict", "nope", "--title", "x")
    assert (code, out) == (2, "") and "no version 'nope'" in err
    code, _, err = cli_main(capsys, "promote", "3", "--alias", "latest")
    assert code == 2 and "shadow" in err


# --- compare -------------------------------------------------------------------------------
def test_compare_versions_on_the_same_split(trained):
    result = ok_json("compare", "1", "2", "--json", "--resamples", "400")
    assert result["comparable"] is True and result["versions"] == [1, 2]
    (paired,) = result["paired"]
    assert (paired["first"], paired["second"]) == (1, 2)
    expected = trained[1]["metrics"]["roc_auc"] - trained[0]["metrics"]["roc_auc"]
    assert paired["auc_difference"] == pytest.approx(expected, abs=1e-9)
    low, high = paired["auc_difference_ci95"]
    assert low <= paired["auc_difference"] <= high and low < high
    assert 0.0 <= paired["mcnemar"]["p_value"] <= 1.0
    assert paired["n"] == trained[0]["metrics"]["n"]
    said = paired["verdict"]
    if low > 0:
        assert said.startswith("v2 is better than v1: ROC AUC +"), said
    elif high < 0:
        assert said.startswith("v1 is better than v2: ROC AUC +"), said
    else:
        assert said.startswith("No clear difference between v1 and v2"), said
    assert f"of {paired['n']} requests, McNemar p = " in said
    assert result["not_comparable"] == []
    auc_row = next(m for m in result["metrics"] if m["metric"] == "roc_auc")
    assert auc_row["values"] == [t["metrics"]["roc_auc"] for t in trained[:2]]
    differs = {d["field"]: d["differs"] for d in result["provenance_diff"]}
    assert differs["recipe"] is True and differs["split_hash"] is False


def test_compare_renders_a_table(trained, capsys):
    code, out, err = cli_main(capsys, "compare", "1", "2", "--resamples", "200")
    assert code == 0, err
    assert "McNemar p =" in out and "roc_auc" in out
    assert (
        "v2 is better than v1" in out
        or "v1 is better than v2" in out
        or ("No clear difference between v1 and v2" in out)
    )


def test_compare_refuses_different_splits(trained):
    assert trained[0]["split_hash"] != trained[2]["split_hash"]
    result = run_cli("compare", "1", "3", "--json")
    assert result.returncode == 2
    assert "not comparable" in result.stderr
    assert result.stdout == ""


def test_compare_pairs_what_it_can_and_names_the_rest(trained):
    """v1 and v2 share a test set, v3 does not: one verdict, two pairs named once."""
    result = ok_json("compare", "1", "2", "3", "--json", "--resamples", "200")
    assert result["comparable"] is False
    assert [(p["first"], p["second"]) for p in result["paired"]] == [(1, 2)]
    assert result["not_comparable"] == [{"first": 1, "second": 3}, {"first": 2, "second": 3}]


# --- predict and evaluate ------------------------------------------------------------------
def in_process_probabilities(version: int, records: list[dict]) -> list[float]:
    row = Registry().resolve(version)
    return predict.predict_proba(predict.load_model(row), records)


def test_predict_title_and_text(trained, capsys):
    title, text = "Broke student", "Payday is Friday and the fridge is empty. Will pay it forward."
    out = ok_json("predict", "1", "--title", title, "--text", text, "--json")
    assert out["version"] == 1 and out["recipe"] == "nb-bow"
    (prediction,) = out["predictions"]
    assert 0.0 <= prediction["probability"] <= 1.0
    expected = in_process_probabilities(1, [predict.make_request(title, text)])
    assert prediction["probability"] == pytest.approx(expected[0], abs=1e-12)
    code, out_text, err = cli_main(capsys, "predict", "latest", "--title", title)
    assert code == 0, err
    assert "typed" in out_text and "probability" in out_text


def test_predict_file(trained, tmp_path, capsys):
    records = [
        {k: v for k, v in r.items() if k != LABEL and not k.endswith("_at_retrieval")}
        for r in sample_records()[:3]
    ]
    del records[2][REQUEST_ID]  # ids are optional
    path = tmp_path / "requests.json"
    path.write_text(json.dumps(records))
    out = ok_json("predict", "2", "--file", str(path), "--json")
    ids = [p["request_id"] for p in out["predictions"]]
    assert ids == [records[0][REQUEST_ID], records[1][REQUEST_ID], "request-2"]
    expected = in_process_probabilities(2, predict.prepare_requests(records))
    got = [p["probability"] for p in out["predictions"]]
    assert got == pytest.approx(expected, abs=1e-12)
    assert len(set(got)) > 1
    # the same requests as JSON lines give the same answers
    lines = tmp_path / "requests.jsonl"
    lines.write_text("\n".join(json.dumps(r) for r in records))
    code, text, err = cli_main(capsys, "predict", "2", "--file", str(lines), "--json")
    assert code == 0, err
    assert json.loads(text) == out


def test_predict_needs_some_text(trained, capsys):
    result = run_cli("predict", "1", "--title", "", "--text", "   ", "--json")
    assert result.returncode == 2
    assert "title" in result.stderr
    assert result.stdout == ""
    code, out, err = cli_main(capsys, "predict", "1", "--json")
    assert (code, out) == (2, "") and "--title/--text or --file" in err


def test_evaluate_prints_metrics_and_registers_nothing(trained, tmp_path, lab):
    records = sample_records()[100:250]
    path = tmp_path / "other.json"
    path.write_text(json.dumps(records))
    before = artifact_files(lab)
    out = ok_json("evaluate", "1", "--data", str(path), "--json")
    assert out["version"] == 1
    assert out["data"]["rows"] == len(records)
    assert out["data"]["sha256"] == load_dataset(path).sha256
    labels = [int(r[LABEL]) for r in records]
    probabilities = in_process_probabilities(1, records)
    version = ok_json("show", "1", "--json")
    assert version["threshold"] != 0.5  # tuned on its training data (policy f1)
    expected = classification_metrics(labels, probabilities, version["threshold"])
    assert out["metrics"]["threshold"] == version["threshold"]
    assert out["metrics"]["threshold_policy"] == version["threshold_policy"] == "f1"
    assert out["metrics"]["confusion_matrix"] == expected["confusion_matrix"]
    # --threshold overrides the version's own operating point
    given = ok_json("evaluate", "1", "--data", str(path), "--threshold", "0.9", "--json")
    at_09 = classification_metrics(labels, probabilities, 0.9)["confusion_matrix"]
    assert given["metrics"]["confusion_matrix"] == at_09 != expected["confusion_matrix"]
    assert given["metrics"]["threshold_policy"] == "given with --threshold"
    assert out["metrics"]["roc_auc"] == pytest.approx(skm.roc_auc_score(labels, probabilities))
    assert out["metrics"]["fpr"] == pytest.approx(expected["fpr"])
    assert count_versions() == len(TRAINED)
    assert artifact_files(lab) == before


def test_evaluate_refuses_bad_data(trained, tmp_path, capsys):
    code, _, err = cli_main(capsys, "evaluate", "1", "--data", str(tmp_path / "missing.json"))
    assert code == 2 and "not found" in err
    unlabelled = [{k: v for k, v in r.items() if k != LABEL} for r in sample_records()[:20]]
    (tmp_path / "unlabelled.json").write_text(json.dumps(unlabelled))
    code, _, err = cli_main(capsys, "evaluate", "1", "--data", str(tmp_path / "unlabelled.json"))
    assert code == 2 and LABEL in err
    assert count_versions() == len(TRAINED)


# --- bad input -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--recipe", "svm"], ["unknown recipe 'svm'", "nb-bow"]),
        (["--recipe", "nb-bow", "--param", "alpha=0"], ["'alpha'", "outside the valid range"]),
        (["--recipe", "tfidf-logreg", "--param", "C=abc"], ["'C'", "expected float", "'abc'"]),
        (["--recipe", "nb-bow", "--param", "gamma=1"], ["no parameter 'gamma'"]),
    ],
    ids=["unknown-recipe", "out-of-range", "wrong-type", "unknown-param"],
)
def test_bad_train_arguments_exit_2_and_change_nothing(lab, args, expected):
    result = run_cli("train", *args, "--backend", "local", "--json")
    assert result.returncode == 2, result.stderr
    for text in expected:
        assert text in result.stderr
    assert result.stdout == ""
    assert count_versions() == 0
    assert artifact_files(lab) == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--param", "alpha"], "KEY=VALUE"),
        (["--seed", "-1"], "argument --seed: must be between 0"),
        (["--test-size", "0.9"], "test size"),
        (["--threshold", "1"], "threshold"),
        (["--backend", "cloud"], "unknown backend 'cloud'"),
        (["--memory", "lots"], "memory"),
        (["--data", "/nowhere/train.json"], "not found"),
    ],
)
def test_more_bad_train_arguments(lab, capsys, args, expected):
    backend = [] if "--backend" in args else ["--backend", "local"]
    code, out, err = cli_main(capsys, "train", "--recipe", "nb-bow", *backend, *args)
    assert (code, out) == (2, "")
    assert expected in err
    assert count_versions() == 0
    assert artifact_files(lab) == []


def test_submit_checks_everything_before_storing(registry):
    bad = [
        builds.TrainRequest("nb-bow", {"alpha": 0}, backend="local"),
        builds.TrainRequest("nb-bow", seed=True, backend="local"),
        builds.TrainRequest("nb-bow", timeout_s=0.5, backend="local"),
        builds.TrainRequest("nb-bow", cpus=100, backend="local"),
    ]
    for request in bad:
        with pytest.raises(BadInput):
            builds.submit(request, registry)
    assert registry.all_versions() == []


def test_rejected_trains_leave_the_list_unchanged(trained, tmp_path, lab):
    before = run_cli("list", "--json")
    assert before.returncode == 0 and len(json.loads(before.stdout)) == len(TRAINED)
    artifacts = artifact_files(lab)
    broken = sample_records()
    broken[3][LABEL] = "maybe"
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    rejected = [
        train_args("nb-bow", "42", "--data", str(tmp_path / "broken.json")),
        train_args(
            "tfidf-meta-logreg",
            "42",
            "--param",
            "meta_fields=requester_number_of_comments_at_retrieval",
        ),
    ]
    for args in rejected:
        result = run_cli(*args)
        assert result.returncode == 2, result.stderr
    assert run_cli("list", "--json").stdout == before.stdout
    assert artifact_files(lab) == artifacts


# --- the shared RAOP data ------------------------------------------------------------------
@pytest.mark.shared_data
@pytest.mark.slow
def test_train_on_shared_data(shared_data, lab):
    args = [
        "train",
        "--recipe",
        "tfidf-meta-logreg",
        "--data",
        str(shared_data),
        "--backend",
        "local",
        "--json",
    ]
    first = ok_json(*args, "--quiet")
    assert first["status"] == "ready" and first["reused"] is False
    assert first["metrics"]["roc_auc"] >= 0.66
    assert first["provenance"]["data_rows"] == load_dataset(shared_data).rows
    again = ok_json(*args)
    assert again["reused"] is True
    assert again["id"] == first["id"] and again["version"] == first["version"]
    assert len(artifact_files(lab)) == 1
