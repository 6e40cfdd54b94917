"""What a new user trips over (issue 23): the data folder, wording and evaluation kinds."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from core.config import SAMPLE_DATA
from core.datafiles import list_data_files
from tests.test_dashboard_apptest import BUILD, by_label, page, run


def test_the_data_folder_offers_the_teams_files_first_and_never_the_sample(lab: Path) -> None:
    data = lab / "data"
    assert (data / "sample.json").is_file()  # the checkout's data folder holds the sample
    shutil.copy(SAMPLE_DATA, data / "train.json")
    (data / "uploads").mkdir()
    shutil.copy(SAMPLE_DATA, data / "uploads" / "a-upload.json")
    assert list_data_files() == ["train.json", "uploads/a-upload.json"]
    at = run(page(BUILD))
    at.radio(key="source").set_value("File in the data folder")
    run(at)
    assert by_label(at.selectbox, "Dataset file").value == "train.json"


def _train(*args: str) -> dict:
    import json

    from tests.helpers import run_cli

    done = run_cli("train", "--backend", "local", "--json", "--quiet", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_small_things_a_new_user_noticed(lab: Path) -> None:
    """Refit hidden for a CV version, promote confirmed by a toast after the reload, the
    Kaggle address a link, the registry named as a file, one name for the data folder."""
    from core.registry import Registry
    from tests.test_dashboard_apptest import HOME, VERSIONS, texts

    home = run(page(HOME))  # an empty registry: where to get the real data, as a link
    markdown = "\n".join(texts(home.markdown))
    assert "(https://www.kaggle.com/c/random-acts-of-pizza/data)" in markdown
    assert any(c.startswith("Registry SQLite file `") for c in texts(home.caption))
    shutil.copy(SAMPLE_DATA, lab / "data" / "train.json")
    cv = _train("--recipe", "nb-bow", "--cv", "3", "--data", str(lab / "data" / "train.json"))
    at = run(page(VERSIONS, v=str(cv["version"]), tab="Actions"))
    assert not [b for b in at.button if b.label == "Refit on all data"]
    assert any("already fitted on all of its data" in c for c in texts(at.caption))
    assert any("train.json (data folder)" in c for c in texts(at.caption))
    form_alias = next(t for t in at.text_input if t.label == "Alias")
    assert form_alias.value == "champion"
    run(next(b for b in at.button if b.label == "Promote to alias").click())
    assert texts(at.toast) == ["champion → v1"]
    assert Registry().resolve("champion").version == cv["version"]


def test_the_cli_help_and_tables_stay_readable(lab: Path) -> None:
    from tests.helpers import run_cli

    helped = run_cli("--help").stdout
    assert "SUPPRESS" not in helped and "run-build" not in helped and "train" in helped
    recipes = run_cli("recipes").stdout
    assert max(len(line) for line in recipes.splitlines() if not line.endswith(".")) < 160
    _train("--recipe", "nb-bow")
    _train("--recipe", "tfidf-logreg")
    compared = run_cli("compare", "1", "2", "--resamples", "200").stdout
    deltas = [line.split()[-1] for line in compared.splitlines()[3:10]]
    assert all(d[0] in "+−" for d in deltas), compared
    assert "ROC AUC v2 − v1 = " in compared


def test_the_evaluation_kind_is_shown_wherever_a_metric_is(lab: Path) -> None:
    """list, show, Versions and Home's chart say how each version was evaluated; a refit
    says its figures are its parent's."""
    import json

    from tests.helpers import run_cli
    from tests.test_dashboard_apptest import HOME, VERSIONS, charts

    _train("--recipe", "nb-bow")
    _train("--recipe", "nb-bow", "--cv", "3")
    refit = run_cli("refit", "1", "--backend", "local", "--json", "--quiet")
    assert refit.returncode == 0, refit.stderr
    listed = {v["version"]: v["evaluated"] for v in json.loads(run_cli("list", "--json").stdout)}
    assert listed == {1: "20% split", 2: "3-fold CV", 3: "refit of v1"}
    assert "evaluated" in run_cli("list").stdout.splitlines()[0]
    shown = run_cli("show", "3").stdout
    assert (
        "evaluated:  refit of v1: the split, confusion matrix and metrics below are v1's" in shown
    )
    versions = run(page(VERSIONS)).dataframe[0]
    assert versions.value["evaluated"].tolist() == ["refit of v1", "3-fold CV", "20% split"]
    shown = list(versions.proto.column_order)  # the columns on screen by default
    assert shown.index("evaluated") == shown.index("F1") + 1, shown  # beside the metrics
    (spec,) = [c for c in charts(run(page(HOME))) if "roc_auc" in json.dumps(c)]
    assert spec["encoding"]["shape"]["field"] == "kind"
    assert spec["encoding"]["y"]["title"] == "ROC AUC"


def test_running_builds_show_their_stage_progress_and_time(lab: Path) -> None:
    """A worker's `progress: D/N fits` lines become the build's stage; the Build panel shows
    a running build with a spinner, its stage and elapsed time, and a sweep's builds done."""
    from core import builds, sweeps
    from core.builders.base import BuildLog
    from core.registry import Registry
    from tests.test_dashboard_apptest import shown

    stages: list[str] = []
    log = BuildLog(on_stage=stages.append)
    log("12:00:01 cross-validation: 3 folds")
    log("12:00:02 progress: 7/18 fits")
    assert stages == ["training · 7/18 fits"]

    registry = Registry()
    request = builds.TrainRequest(recipe="nb-bow", backend="local")
    sweep = sweeps.submit_sweep(request, {"alpha": [0.5, 1.0]}, registry)  # queued, not run
    at = run(page(BUILD))
    statuses = at.get("status")
    assert len(statuses) == 2 and all(s.state == "running" for s in statuses)
    assert all(re.search(r"· queued · \d+s · ", shown(s.label)) for s in statuses)
    captions = [c.value for c in at.caption]
    assert f"{sweep.sweep_id}: 0 of 2 builds done" in captions, captions
    done = builds.execute(sweep.submissions[0].version.id, registry)
    assert done.status == "ready"
    assert "progress: " not in (done.stage or "")  # a finished build has no stage left
    cv = _train("--recipe", "nb-bow", "--cv", "3")
    assert "progress: 18/18 fits" in registry.log_text(cv["id"])  # 3 folds x (1 + 5 inner)
    at = run(page(BUILD))
    assert f"{sweep.sweep_id}: 1 of 2 builds done" in [c.value for c in at.caption]


def test_a_sweeps_parameter_values_are_shown_beside_its_metric(lab: Path) -> None:
    from core import builds, sweeps
    from core.registry import Registry
    from tests.test_dashboard_apptest import VERSIONS, charts, shown

    registry = Registry()
    request = builds.TrainRequest(recipe="nb-bow", backend="local")
    sweep = sweeps.submit_sweep(request, {"alpha": [0.1, 1.0, 10.0]}, registry)
    for submission in sweep.submissions:
        assert builds.execute(submission.version.id, registry).status == "ready"
    at = run(page(BUILD))
    titles = sorted(shown(s.label) for s in at.get("status"))
    assert [t.split(" · ")[1] for t in titles] == [
        "nb-bow (alpha=0.1)",
        "nb-bow (alpha=1)",
        "nb-bow (alpha=10)",
    ]
    at = run(page(VERSIONS))
    by_label(at.selectbox, "Sweep").select(sweep.sweep_id)
    run(at)
    table = at.dataframe[0].value  # the sweep's table comes before the versions table
    assert sorted(table["alpha"].tolist()) == [0.1, 1.0, 10.0]
    (spec,) = [c for c in charts(at) if "hconcat" in c]
    assert spec["hconcat"][0]["encoding"]["x"]["scale"]["type"] == "log"


def test_predict_says_which_version_answered(lab: Path) -> None:
    from core.registry import Registry
    from tests.helpers import run_cli

    _train("--recipe", "nb-bow")
    Registry().promote(1, "champion")
    said = run_cli("predict", "champion", "--title", "Broke", "--text", "Payday is Friday")
    assert said.returncode == 0, said.stderr
    assert said.stdout.startswith("answered by v1 (nb-bow)"), said.stdout
