"""Sweeps: one build per combination, tagged with one id, run a bounded number at a time."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import builds, sweeps
from core.errors import BadInput
from core.registry import Registry
from core.schema import READY
from tests.helpers import ROOT, run_cli


def test_a_grid_is_checked_whole_before_anything_is_queued() -> None:
    grid = sweeps.parse_grid(["C=0.1,1,1.0", "min_df=1,2"])
    assert grid == {"C": ["0.1", "1", "1.0"], "min_df": ["1", "2"]}
    combos = sweeps.combinations("tfidf-logreg", grid)
    assert len(combos) == 4  # "1" and "1.0" are one build
    assert {(c["C"], c["min_df"]) for c in combos} == {(0.1, 1), (0.1, 2), (1.0, 1), (1.0, 2)}
    for items, message in [
        (["C"], "expected NAME=V1,V2"),
        (["C=0.1", "C=1"], "given twice"),
    ]:
        with pytest.raises(BadInput, match=message):
            sweeps.parse_grid(items)
    for grid, message in [
        ({"nope": ["1"]}, "has no parameter 'nope'"),
        ({"C": ["0.1", "-1"]}, "outside the valid range"),
        ({"meta_fields": ["a"]}, "cannot be swept"),
        ({"C": [str(i) for i in range(1, 11)], "min_df": [str(i) for i in range(1, 7)]}, "60"),
    ]:
        recipe = "tfidf-meta-logreg" if "meta_fields" in grid else "tfidf-logreg"
        with pytest.raises(BadInput, match=message):
            sweeps.combinations(recipe, grid)


def _json(done) -> dict:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _sweep(*grid: str, env: dict[str, str] | None = None, extra: tuple = ()) -> dict:
    args = ["train", "--recipe", "tfidf-logreg", "--backend", "local", "--json", "--quiet"]
    for item in grid:
        args += ["--grid", item]
    return _json(run_cli(*args, *extra, env=env))


def test_a_sweep_builds_every_combination_at_most_n_at_a_time(lab: Path) -> None:
    out = _sweep("C=0.1,1,10", "min_df=1,2", env={"MAX_PARALLEL_BUILDS": "2"})
    sweep_id = out["sweep"]
    assert sweeps.SWEEP_TAG.match(sweep_id) and out["builds"] == 6
    versions = out["versions"]
    assert [v["status"] for v in versions] == [READY] * 6
    assert {(v["params"]["C"], v["params"]["min_df"]) for v in versions} == {
        (c, m) for c in (0.1, 1.0, 10.0) for m in (1, 2)
    }
    assert all(sweep_id in v["tags"] for v in versions)
    listed = _json(run_cli("list", "--tag", sweep_id, "--json"))
    assert sorted(v["version"] for v in listed) == list(range(1, 7))

    # never more than two builds ran at once
    registry = Registry()
    spans = sorted(
        (row.started_at, row.finished_at) for row in registry.list_versions() if row.started_at
    )
    for i, (start, _) in enumerate(spans):
        running = sum(1 for s, f in spans[:i] if f > start)
        assert running <= 1, spans

    # the same grid again: every combination reused, tagged with the new sweep too
    again = _sweep("C=0.1,1,10", "min_df=1,2")
    assert [v["reused"] for v in again["versions"]] == [True] * 6
    assert [v["version"] for v in again["versions"]] == [v["version"] for v in versions]
    assert all(again["sweep"] in v["tags"] and sweep_id in v["tags"] for v in again["versions"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--grid", "C=" + ",".join(str(i) for i in range(1, 52))], "at most 50"),
        (["--grid", "C=0.1,-3"], "outside the valid range"),
        (["--grid", "nosuch=1,2"], "has no parameter"),
    ],
)
def test_a_bad_grid_is_refused_and_queues_nothing(lab: Path, args: list[str], message: str) -> None:
    done = run_cli("train", "--recipe", "tfidf-logreg", "--backend", "local", *args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    assert Registry().list_versions() == []
    refused = run_cli(
        "train", "--recipe", "nb-bow", "--backend", "local", "--grid", "alpha=1,2",
        env={"MAX_PARALLEL_BUILDS": "zero"},
    )  # fmt: skip
    assert refused.returncode == 2 and "MAX_PARALLEL_BUILDS" in refused.stderr
    assert Registry().list_versions() == []


def test_a_detached_sweep_runs_in_one_background_process(lab: Path) -> None:
    out = _sweep("C=0.5,2", extra=("--detach",))
    registry = Registry()
    rows = [builds.wait_for(v["id"], registry, timeout_s=240) for v in out["versions"]]
    assert [r.status for r in rows] == [READY, READY]
    pids = {r.worker_pid for r in rows}
    assert len(pids) == 1 and os.getpid() not in pids  # both run by the one runner


def test_the_dashboard_launches_filters_and_compares_a_sweep(lab: Path) -> None:
    champion = _json(run_cli("train", "--recipe", "tfidf-logreg", "--backend", "local", "--json",
                             "--quiet", "--param", "C=0.01"))  # fmt: skip
    registry = Registry()
    registry.promote(champion["version"], "champion")

    at = AppTest.from_file(str(ROOT / "pages" / "1_Build.py"), default_timeout=60)
    at.run()
    at.selectbox(key="recipe").select("tfidf-logreg")
    at.run()
    at.text_input(key="sweep").input("C=0.3,3; min_df=1,2")
    at.run()
    assert any("launches **4 builds**" in c.value for c in at.caption)
    next(b for b in at.selectbox if b.label == "Builder").select("local")
    next(b for b in at.button if b.label == "Start build").click()
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    (note,) = [s.value for s in at.success]
    sweep_id = note.split(":")[0]
    swept = [r for r in registry.list_versions() if any(t.name == sweep_id for t in r.tags)]
    assert len(swept) == 4
    done = [builds.wait_for(r.id, registry, timeout_s=300) for r in swept]
    assert all(r.status == READY for r in done)

    versions = AppTest.from_file(str(ROOT / "pages" / "2_Versions.py"), default_timeout=60)
    versions.run()
    next(box for box in versions.selectbox if box.label == "Sweep").select(sweep_id)
    versions.run()
    assert sorted(versions.dataframe[0].value["version"].tolist()) == sorted(
        r.version for r in done
    )

    best = max(done, key=lambda r: r.metrics["roc_auc"])
    compare = AppTest.from_file(str(ROOT / "pages" / "3_Compare.py"), default_timeout=60)
    compare.run()
    next(b for b in compare.button if b.label == "Compare best of sweep vs champion").click()
    compare.run()
    assert not compare.exception, [e.message for e in compare.exception]
    assert compare.query_params["v"] == f"{champion['version']},{best.version}"
    assert compare.multiselect[0].value == [champion["version"], best.version]
