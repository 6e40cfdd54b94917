"""Refit on all data: a new version linked to its evaluated parent, carrying its metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core import builds
from core.artifacts import open_store
from core.exchange import export_version, import_version
from core.registry import Registry
from tests.helpers import run_cli


def _json(done) -> dict:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def parent(lab: Path) -> dict:
    return _json(run_cli("train", "--recipe", "tfidf-meta-logreg", "--backend", "local", "--json"))


def test_refit_trains_on_every_request_and_carries_the_parents_evaluation(
    parent: dict,
) -> None:
    refit = _json(run_cli("refit", str(parent["version"]), "--backend", "local", "--json"))
    assert refit["status"] == "ready" and refit["version"] == parent["version"] + 1
    assert refit["provenance"]["refit_of"] == {"version": parent["version"], "id": parent["id"]}
    assert refit["metrics"] == parent["metrics"]
    assert refit["split_hash"] == parent["split_hash"]
    assert refit["artifact_sha256"] != parent["artifact_sha256"]
    registry = Registry()
    log = registry.log_text(refit["id"])
    rows = parent["provenance"]["data_rows"]
    assert f"refitting tfidf-meta-logreg on all {rows} requests" in log
    # the model saw every request: its input ranges cover the whole dataset's
    model = open_store().load(refit["artifact_sha256"])
    first = open_store().load(parent["artifact_sha256"])
    for feature, (low, high) in first.input_ranges_.items():
        all_low, all_high = model.input_ranges_[feature]
        assert all_low <= low and all_high >= high
    details = registry.details(refit["id"])
    assert details.test_ids == registry.details(parent["id"]).test_ids

    # asking again returns the same refit; a refit is not refitted; compare says why not
    again = _json(run_cli("refit", str(parent["version"]), "--backend", "local", "--json"))
    assert again["id"] == refit["id"] and again["reused"] is True
    twice = run_cli("refit", str(refit["version"]))
    assert twice.returncode == 2 and "already a refit" in twice.stderr
    compared = run_cli("compare", str(parent["version"]), str(refit["version"]))
    assert compared.returncode == 2 and "refit carries its parent's evaluation" in compared.stderr
    assert len(registry.list_versions()) == 2


def test_only_ready_versions_refit(lab: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALTRUISM_ALLOW_FAULTS", "1")
    request = builds.TrainRequest(recipe="nb-bow", backend="local", fault="raise", force=True)
    failed, _ = builds.train(request, Registry())
    refused = run_cli("refit", str(failed.version))
    assert refused.returncode == 2 and "only ready versions refit" in refused.stderr
    assert len(Registry().list_versions()) == 1


def test_an_imported_refit_keeps_its_link_and_never_passes_for_its_parent(
    parent: dict, tmp_path: Path
) -> None:
    refit = _json(run_cli("refit", str(parent["version"]), "--backend", "local", "--json"))
    registry, store = Registry(), open_store()
    archives = {}
    for version in (parent["version"], refit["version"]):
        archives[version] = tmp_path / f"v{version}.zip"
        export_version(registry.resolve(version), registry, store, archives[version])
    other = Registry(f"sqlite:///{tmp_path / 'other.db'}")
    imported = {v: import_version(path, other, store) for v, path in archives.items()}
    parent_row, refit_row = imported[parent["version"]], imported[refit["version"]]
    assert refit_row.provenance["refit_of"] == {"version": parent["version"]}
    assert refit_row.fingerprint != parent_row.fingerprint
    assert refit_row.metrics == parent_row.metrics
