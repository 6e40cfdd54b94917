"""Content-addressed artifacts: sha256 paths, atomic stores, and refusal of modified files."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import joblib
import pytest

import core.artifacts
from core import builds, predict
from core.artifacts import sha256_of
from core.errors import IntegrityError, NotFound
from tests.helpers import artifact_files, run_cli


def dumped(tmp_path: Path, obj: object, name: str = "model.joblib") -> Path:
    path = tmp_path / name
    joblib.dump(obj, path)
    return path


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Fail loudly if anything reaches joblib.load inside the store."""
    calls: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        calls.append(args)
        raise AssertionError("joblib.load reached for a file that fails its hash check")

    monkeypatch.setattr(core.artifacts.joblib, "load", refuse)
    return calls


# --- the store -----------------------------------------------------------------------------
def test_put_file_stores_by_sha256(store, tmp_path):
    source = dumped(tmp_path, {"weights": [1, 2, 3]})
    expected = hashlib.sha256(source.read_bytes()).hexdigest()
    sha256, size = store.put_file(source)
    assert (sha256, size) == (expected, source.stat().st_size)
    target = store.root / expected[:2] / f"{expected}.joblib"
    assert store.path_for(expected) == target
    assert target.read_bytes() == source.read_bytes()
    assert store.verify(expected) == target
    assert store.load(expected) == {"weights": [1, 2, 3]}
    assert store.all_digests() == [expected]
    # storing the same bytes again is a no-op; no temporary files are left behind
    assert store.put_file(source) == (expected, size)
    assert sorted(p.name for p in store.root.rglob("*")) == sorted([expected[:2], target.name])


def test_put_file_is_atomic_when_the_copy_fails(store, tmp_path, monkeypatch):
    source = dumped(tmp_path, list(range(1000)))

    def half_copy(src, dst, length=0):
        dst.write(src.read(100))
        raise OSError("disk full")

    monkeypatch.setattr(core.artifacts.shutil, "copyfileobj", half_copy)
    with pytest.raises(OSError, match="disk full"):
        store.put_file(source)
    assert [p for p in store.root.rglob("*") if p.is_file()] == []


def test_put_file_refuses_a_source_that_changes_while_copied(store, tmp_path, monkeypatch):
    source = dumped(tmp_path, "original")
    real_copy = shutil.copyfileobj

    def copy_then_change(src, dst, length=0):
        real_copy(src, dst, length)
        dst.write(b"extra")

    monkeypatch.setattr(core.artifacts.shutil, "copyfileobj", copy_then_change)
    with pytest.raises(IntegrityError, match="changed while it was being stored"):
        store.put_file(source)
    assert [p for p in store.root.rglob("*") if p.is_file()] == []


def test_tampered_artifact_is_refused_before_unpickling(store, tmp_path, no_unpickling):
    sha256, _ = store.put_file(dumped(tmp_path, {"a": 1}))
    with open(store.path_for(sha256), "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(IntegrityError, match="refusing to unpickle") as info:
        store.load(sha256)
    assert sha256[:12] in str(info.value)
    assert no_unpickling == []
    with pytest.raises(IntegrityError, match="does not match"):
        store.verify(sha256)


def test_swapped_artifact_is_refused(store, tmp_path, no_unpickling):
    first, _ = store.put_file(dumped(tmp_path, "first", "a.joblib"))
    second, _ = store.put_file(dumped(tmp_path, "second", "b.joblib"))
    shutil.copyfile(store.path_for(second), store.path_for(first))  # a valid pickle, wrong one
    with pytest.raises(IntegrityError) as info:
        store.load(first)
    assert second[:12] in str(info.value)
    assert no_unpickling == []


def test_missing_artifact_and_bad_digest(store):
    with pytest.raises(NotFound, match="missing"):
        store.load("0" * 64)
    for bad in ("abc", "../" + "0" * 61, "G" * 64):
        with pytest.raises(IntegrityError, match="not a sha256"):
            store.path_for(bad)


def test_remove(store, tmp_path):
    sha256, _ = store.put_file(dumped(tmp_path, 1))
    assert store.remove(sha256) is True
    assert store.remove(sha256) is False
    assert store.all_digests() == []


# --- a trained version ---------------------------------------------------------------------
@pytest.fixture
def trained(registry, store):
    row, _ = builds.train(builds.TrainRequest("nb-bow", backend="local"), registry, store)
    assert row.status == "ready", row.error
    return row


def test_a_build_stores_its_artifact_by_hash(trained, store, lab):
    path = store.path_for(trained.artifact_sha256)
    assert artifact_files(lab) == [path]
    assert sha256_of(path) == trained.artifact_sha256
    assert path.stat().st_size == trained.artifact_size
    pipeline = predict.load_model(trained, store)
    probability = predict.predict_proba(pipeline, [predict.make_request("Hungry", "Broke")])
    assert 0.0 <= probability[0] <= 1.0


def test_predict_refuses_a_tampered_artifact(trained, store, lab):
    path = store.path_for(trained.artifact_sha256)
    with open(path, "ab") as handle:
        handle.write(b"x")
    with pytest.raises(IntegrityError, match="refusing to unpickle"):
        predict.load_model(trained, store)
    result = run_cli("predict", str(trained.version), "--title", "Hungry", "--text", "Broke")
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert "error:" in result.stderr
    assert "modified on disk" in result.stderr and "refusing to unpickle" in result.stderr
    assert trained.artifact_sha256[:12] in result.stderr
    assert "Traceback" not in result.stderr


def test_predict_refuses_a_swapped_artifact(trained, registry, store):
    other, _ = builds.train(builds.TrainRequest("tfidf-logreg", backend="local"), registry, store)
    assert other.artifact_sha256 != trained.artifact_sha256
    shutil.copyfile(store.path_for(other.artifact_sha256), store.path_for(trained.artifact_sha256))
    with pytest.raises(IntegrityError):
        predict.load_model(trained, store)
    result = run_cli("predict", str(trained.version), "--title", "Hungry", "--json")
    assert result.returncode == 1
    assert "refusing to unpickle" in result.stderr
    assert result.stdout == ""
    # the untouched version still predicts
    ok = run_cli("predict", str(other.version), "--title", "Hungry", "--json")
    assert ok.returncode == 0, ok.stderr
