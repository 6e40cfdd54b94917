"""The artifact store: content addressing, verified reads, atomic writes, refusal of
modified files; the same tests on a local folder, an fsspec filesystem (memory://) and a real
S3-protocol server (rclone on loopback). The team set-up end to end is tests/test_team.py."""

from __future__ import annotations

import hashlib
import io
import shutil
import uuid
from pathlib import Path

import joblib
import pytest

import core.artifacts.local
from core import builds, predict
from core.artifacts import open_store, sha256_of
from core.artifacts.base import blob_rel, classify
from core.errors import BadInput, IntegrityError, NotFound
from tests.helpers import artifact_files, run_cli


def pickled(obj: object) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(obj, buffer)
    return buffer.getvalue()


@pytest.fixture(params=["local", "memory", pytest.param("s3", marks=pytest.mark.s3)])
def any_store(request, lab: Path):
    if request.param == "local":
        return open_store(str(lab / "artifacts"))
    if request.param == "s3":
        return open_store(request.getfixturevalue("s3_root"))
    return open_store(f"memory://altruism-{uuid.uuid4().hex}/store")


def tamper(store, sha256: str, kind: str = "model", data: bytes | None = None) -> None:
    """Change a stored blob behind the store's back."""
    rel = blob_rel(sha256, kind)
    current = store._open(rel).read()
    store._write_bytes(rel, data if data is not None else current + b"\0")


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Fail loudly if anything reaches joblib.load."""
    calls: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        calls.append(args)
        raise AssertionError("joblib.load reached for bytes that fail their hash check")

    monkeypatch.setattr(joblib, "load", refuse)
    return calls


# --- the store -----------------------------------------------------------------------------
def test_put_bytes_stores_by_sha256(any_store):
    data = pickled({"weights": [1, 2, 3]})
    expected = hashlib.sha256(data).hexdigest()
    assert any_store.put_bytes(data) == (expected, len(data))
    assert any_store.exists(expected) and not any_store.exists(expected, "dataset")
    assert any_store.read_verified(expected) == data
    assert any_store.load(expected) == {"weights": [1, 2, 3]}
    assert list(any_store.digests()) == [expected]
    assert any_store.put_bytes(data) == (expected, len(data))  # again: a no-op
    assert [e.rel for e in any_store.scan()] == [blob_rel(expected)]
    assert any_store.verify(expected) == "ok"


def test_put_file_checks_the_digest_it_was_given(any_store, tmp_path):
    source = tmp_path / "data.jsonl"
    source.write_bytes(b'{"a":1}\n')
    sha = sha256_of(source)
    assert any_store.put_file(source, "dataset", sha256=sha) == (sha, 8)
    target = tmp_path / "copy.jsonl"
    assert any_store.fetch_verified(sha, "dataset", target).read_bytes() == b'{"a":1}\n'
    with pytest.raises(IntegrityError, match="changed before it was stored"):
        any_store.put_file(source, "dataset", sha256="0" * 64)
    assert list(any_store.digests("dataset")) == [sha]


def test_local_put_is_atomic_when_the_copy_fails(lab, tmp_path, monkeypatch):
    store = open_store(str(lab / "artifacts"))
    source = tmp_path / "model.joblib"
    source.write_bytes(pickled(list(range(1000))))

    def half_copy(src, dst, length=0):
        dst.write(src.read(100))
        raise OSError("disk full")

    monkeypatch.setattr(core.artifacts.local.shutil, "copyfileobj", half_copy)
    with pytest.raises(OSError, match="disk full"):
        store.put_file(source)
    assert [p for p in (lab / "artifacts").rglob("*") if p.is_file()] == []


def test_tampered_artifact_is_refused_before_unpickling(any_store, no_unpickling):
    sha256, _ = any_store.put_bytes(pickled({"a": 1}))
    tamper(any_store, sha256)
    with pytest.raises(IntegrityError, match="refusing to unpickle") as info:
        any_store.load(sha256)
    assert sha256[:12] in str(info.value)
    assert no_unpickling == []
    assert any_store.verify(sha256) == "tampered"


def test_swapped_artifact_is_refused(any_store, no_unpickling):
    first, _ = any_store.put_bytes(pickled("first"))
    second, _ = any_store.put_bytes(pickled("second"))
    tamper(any_store, first, data=any_store.read_verified(second))  # valid pickle, wrong one
    with pytest.raises(IntegrityError) as info:
        any_store.load(first)
    assert second[:12] in str(info.value)
    assert no_unpickling == []


def test_fetch_refuses_a_modified_dataset(any_store, tmp_path):
    sha, _ = any_store.put_bytes(b'{"a":1}\n', "dataset")
    tamper(any_store, sha, "dataset")
    target = tmp_path / "copy.jsonl"
    with pytest.raises(IntegrityError):
        any_store.fetch_verified(sha, "dataset", target)
    assert not target.exists()


def test_missing_artifact_and_bad_digest(any_store):
    with pytest.raises(NotFound, match="missing"):
        any_store.load("0" * 64)
    assert any_store.verify("0" * 64) == "missing"
    for bad in ("abc", "../" + "0" * 61, "G" * 64, None):
        with pytest.raises(IntegrityError, match="not a sha256"):
            any_store.read_verified(bad)


def test_remove(any_store):
    sha256, _ = any_store.put_bytes(pickled(1))
    assert any_store.remove(sha256) is True
    assert any_store.remove(sha256) is False
    assert list(any_store.digests()) == []


def test_scan_classifies_blobs_partials_and_strays(lab):
    store = open_store(str(lab / "artifacts"))
    sha, _ = store.put_bytes(b"x")
    root = lab / "artifacts"
    (root / "zz").mkdir()
    (root / "zz" / "notes.joblib").write_text("not an artifact")
    (root / sha[:2] / ".incoming-abc.tmp").write_bytes(b"half")
    kinds = {e.rel: e.kind for e in store.scan()}
    assert kinds == {
        blob_rel(sha): "model",
        "zz/notes.joblib": "stray",
        f"{sha[:2]}/.incoming-abc.tmp": "partial",
    }
    with pytest.raises(IntegrityError):
        store.remove_entry("zz/notes.joblib")  # only partial uploads go by path
    assert classify(f"datasets/{sha[:2]}/{sha}.jsonl") == ("dataset", sha)
    assert classify(f"datasets/{sha[:3]}/{sha}.jsonl")[0] == "stray"


@pytest.mark.parametrize("url", ["s3:/bucket/prefix", "nosuchscheme://bucket/x"])
def test_unknown_or_mistyped_locations_are_refused(url):
    with pytest.raises(BadInput):
        open_store(url)


# --- a trained version ---------------------------------------------------------------------
@pytest.fixture
def trained(registry, store):
    row, _ = builds.train(builds.TrainRequest("nb-bow", backend="local"), registry, store)
    assert row.status == "ready", row.error
    return row


def test_a_build_stores_its_artifact_by_hash(trained, store, lab):
    path = store.local_path(trained.artifact_sha256)
    assert artifact_files(lab) == [path]
    assert sha256_of(path) == trained.artifact_sha256
    assert path.stat().st_size == trained.artifact_size
    pipeline = predict.load_model(trained, store)
    probability = predict.predict_proba(pipeline, [predict.make_request("Hungry", "Broke")])
    assert 0.0 <= probability[0] <= 1.0


def test_predict_refuses_a_tampered_artifact(trained, store, lab):
    with open(store.local_path(trained.artifact_sha256), "ab") as handle:
        handle.write(b"x")
    with pytest.raises(IntegrityError, match="refusing to unpickle"):
        predict.load_model(trained, store)
    result = run_cli("predict", str(trained.version), "--title", "Hungry", "--text", "Broke")
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert "error:" in result.stderr
    assert "was modified" in result.stderr and "refusing to unpickle" in result.stderr
    assert trained.artifact_sha256[:12] in result.stderr
    assert "Traceback" not in result.stderr


def test_predict_refuses_a_swapped_artifact(trained, registry, store):
    other, _ = builds.train(builds.TrainRequest("tfidf-logreg", backend="local"), registry, store)
    assert other.artifact_sha256 != trained.artifact_sha256
    shutil.copyfile(
        store.local_path(other.artifact_sha256), store.local_path(trained.artifact_sha256)
    )
    with pytest.raises(IntegrityError):
        predict.load_model(trained, store)
    result = run_cli("predict", str(trained.version), "--title", "Hungry", "--json")
    assert result.returncode == 1
    assert "refusing to unpickle" in result.stderr
    assert result.stdout == ""
    # the untouched version still predicts
    ok = run_cli("predict", str(other.version), "--title", "Hungry", "--json")
    assert ok.returncode == 0, ok.stderr


def test_read_verified_serves_the_bytes_it_hashed(any_store, monkeypatch) -> None:
    """The Versions download serves `read_verified`: one read, hashed, and those same bytes
    returned, even if the file is swapped right after it was read."""
    data = pickled({"model": "original"})
    sha, _ = any_store.put_bytes(data, "model")
    real_open, opened = any_store._open, []

    def open_then_swap(rel: str):
        handle = real_open(rel)
        opened.append(rel)
        content = handle.read()
        handle.close()
        any_store._write_bytes(rel, pickled({"model": "swapped"}))  # right after the read
        return io.BytesIO(content)

    monkeypatch.setattr(any_store, "_open", open_then_swap)
    assert any_store.read_verified(sha) == data
    assert len(opened) == 1, "the bytes served were read again after hashing"
    monkeypatch.setattr(any_store, "_open", real_open)
    with pytest.raises(IntegrityError):
        any_store.read_verified(sha)  # the swap is caught on the next read


def test_versions_page_download_is_read_verified() -> None:
    """The page's artifact download goes through read_verified (no second read)."""
    source = (Path(__file__).resolve().parent.parent / "pages" / "2_Versions.py").read_text()
    download = source[source.index('"Artifact (.joblib)"') :][:400]
    assert "store.read_verified(row.artifact_sha256)" in download
