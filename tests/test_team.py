"""A registry a team shares: PostgreSQL for the registry, an S3 bucket for the artifacts.

Real servers only (a private PostgreSQL cluster and `rclone serve s3`, both on loopback):

* every verb works end to end, and a second "machine" (its own data, log and work folders,
  the same REGISTRY_URL and ARTIFACT_ROOT) reproduces a version from the stored dataset;
* every dashboard page renders from the shared registry;
* a modified object in the bucket is refused before unpickling; gc removes unreferenced
  objects; export from the team registry imports into a SQLite one;
* wrong credentials, a missing database and a server that goes away are one-line errors
  with the right exit code and no password; the store refuses unknown schemes.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.artifacts import open_store
from core.registry import Registry
from core.registry.database import Database, Retryable, classify
from tests import servers
from tests.helpers import ROOT, run_cli

pytestmark = [pytest.mark.postgres, pytest.mark.s3]
TITLE = "Broke student in Ohio, payday Friday"
TEXT = "Lost my job last week and the fridge is empty. I will pay it forward, promise!"


def ok_json(*args: str, env: dict[str, str] | None = None):
    done = run_cli(*args, "--json", env=env)
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stderr}"
    return json.loads(done.stdout)


@pytest.fixture
def team(pg_url: str, s3_root: str, monkeypatch: pytest.MonkeyPatch, lab: Path) -> str:
    """This test's REGISTRY_URL on PostgreSQL and ARTIFACT_ROOT in an S3 bucket."""
    monkeypatch.setenv("REGISTRY_URL", pg_url)
    return s3_root


def bucket_objects(s3_server: servers.S3Server, root: str) -> list[str]:
    """Every object key under ARTIFACT_ROOT, listed through the S3 API."""
    return sorted(s3_server.client().find(root.split("://", 1)[1]))


@pytest.fixture
def trained(team: str, lab: Path) -> dict:
    """One nb-bow version trained through the CLI on the team set-up."""
    return ok_json("train", "--recipe", "nb-bow", "--backend", "local", "--quiet")


def test_every_verb_on_postgres_and_s3(trained: dict, team: str, lab: Path, s3_server) -> None:
    v1 = trained
    assert v1["status"] == "ready" and v1["version"] == 1
    objects = bucket_objects(s3_server, team)
    names = {key.rsplit("/", 1)[-1] for key in objects}
    assert f"{v1['artifact_sha256']}.joblib" in names  # the model, by content hash
    assert f"{v1['data_sha256']}.jsonl" in names  # and the dataset it was trained on
    assert not (lab / "artifacts").exists()  # nothing went to a local folder
    assert not (lab / "s3:").exists()

    prediction = ok_json("predict", "1", "--title", TITLE, "--text", TEXT)
    assert 0.0 <= prediction["predictions"][0]["probability"] <= 1.0
    assert ok_json("promote", "1")["aliases"] == ["champion"]
    assert [v["version"] for v in ok_json("list")] == [1]
    assert ok_json("show", "champion")["artifact_sha256"] == v1["artifact_sha256"]
    v2 = ok_json("train", "--recipe", "tfidf-logreg", "--backend", "local", "--quiet")
    compared = ok_json("compare", "1", "2", "--resamples", "200")
    assert compared["versions"] == [1, 2] and compared["comparable"], compared
    assert len(compared["paired"]) == 1
    assert v2["data_sha256"] == v1["data_sha256"]
    report = ok_json("check")
    assert report["ok"] and report["checked"]["artifacts"] == 2, report


def test_another_machine_reproduces_from_the_stored_dataset(
    trained: dict, team: str, tmp_path: Path
) -> None:
    """Machine B shares only REGISTRY_URL and ARTIFACT_ROOT: no data file, no local logs."""
    other = tmp_path / "machine-b"
    (other / "data").mkdir(parents=True)
    env = {
        "DATA_DIR": str(other / "data"),
        "LOG_ROOT": str(other / "logs"),
        "WORK_ROOT": str(other),
    }
    shutil.rmtree(Path(os.environ["DATA_DIR"]))  # machine A's copy is gone too
    done = run_cli("reproduce", "1", "--quiet", "--json", env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["probabilities_identical"] and result["split_identical"], result
    assert ok_json("show", "1")["reproduction"]["probabilities_identical"] is True
    assert not (other / "logs").exists() or not any((other / "logs").rglob("*"))


def test_pages_render_from_the_shared_registry(trained: dict, team: str) -> None:
    for path in ("app.py", "pages/1_Build.py", "pages/2_Versions.py", "pages/3_Compare.py"):
        at = AppTest.from_file(str(ROOT / path), default_timeout=60).run()
        assert not at.exception, (path, [e.message for e in at.exception])
    at = AppTest.from_file(str(ROOT / "pages/4_Try_a_request.py"), default_timeout=60).run()
    next(t for t in at.text_input if t.label == "Title").input(TITLE)
    next(t for t in at.text_area if t.label == "Request text").input(TEXT)
    at = next(b for b in at.button if b.label == "Predict").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert len(at.metric) == 1 and at.metric[0].value.endswith("%")


def test_a_modified_object_is_refused_and_gc_cleans_the_bucket(
    trained: dict, team: str, s3_server
) -> None:
    store = open_store()
    stray, _ = store.put_bytes(b"no version needs this", "model")
    done = run_cli("check", "--json")
    assert done.returncode == 1, done.stderr
    assert [f["kind"] for f in json.loads(done.stdout)["findings"]] == ["unreferenced_artifact"]
    removed = ok_json("gc")
    assert stray in json.dumps(removed)
    assert not store.exists(stray) and store.exists(trained["artifact_sha256"])

    (model,) = [
        key
        for key in bucket_objects(s3_server, team)
        if key.endswith(f"/{trained['artifact_sha256']}.joblib")
    ]
    client = s3_server.client()  # someone with write access to the bucket changes it
    client.pipe(model, client.cat(model) + b"\0")
    done = run_cli("predict", "1", "--title", TITLE, "--text", TEXT)
    assert done.returncode == 1 and "modified in the store" in done.stderr, done.stderr
    assert ok_json_code("check") == 1


def ok_json_code(*args: str) -> int:
    return run_cli(*args, "--json").returncode


def test_export_and_import_between_sqlite_and_the_team_registry(
    trained: dict, team: str, tmp_path: Path, pg_server
) -> None:
    """Team (PostgreSQL + S3) -> solo (SQLite + folder) -> another team database."""
    archive = tmp_path / "v1.zip"
    assert run_cli("export", "1", "-o", str(archive)).returncode == 0
    solo = tmp_path / "solo"
    env = {"REGISTRY_URL": f"sqlite:///{solo / 'registry.db'}", "ARTIFACT_ROOT": str(solo / "a")}
    imported = ok_json("import", str(archive), env=env)
    assert imported["artifact_sha256"] == trained["artifact_sha256"]
    here = ok_json("predict", "1", "--title", TITLE, "--text", TEXT)
    there = ok_json("predict", "1", "--title", TITLE, "--text", TEXT, env=env)
    assert here["predictions"] == there["predictions"]

    again = tmp_path / "again.zip"
    assert run_cli("export", "1", "-o", str(again), env=env).returncode == 0
    name = pg_server.create_database("import")
    try:
        other = {"REGISTRY_URL": pg_server.url(name)}
        back = ok_json("import", str(again), env=other)
        assert back["artifact_sha256"] == trained["artifact_sha256"] and back["imported"]
        assert ok_json("predict", "1", "--title", TITLE, "--text", TEXT, env=other) == here
    finally:
        pg_server.drop_database(name)


# --- errors --------------------------------------------------------------------------------
def one_line_failure(env: dict[str, str], code: int, *needles: str, secret: str = "") -> str:
    done = run_cli("list", env=env)
    assert done.returncode == code, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    if secret:
        assert secret not in done.stderr + done.stdout
    return lines[0]


def test_wrong_password_and_missing_database_exit_2_without_the_password(pg_server) -> None:
    wrong = "not-the-password-4711"
    one_line_failure(
        {"REGISTRY_URL": pg_server.url("postgres", password=wrong)},
        2,
        "refused the connection",
        "password authentication failed",
        "***",
        secret=wrong,
    )
    one_line_failure(
        {"REGISTRY_URL": pg_server.url("no_such_database")},
        2,
        "refused the connection",
        "does not exist",
        secret=pg_server.password,
    )


def test_no_server_is_a_one_line_error_with_exit_1() -> None:
    port = servers.free_port()  # nothing listens there
    url = f"postgresql+psycopg://team:hunter2secret@127.0.0.1:{port}/registry"
    one_line_failure({"REGISTRY_URL": url}, 1, "cannot reach the registry", secret="hunter2secret")


def test_a_server_that_goes_away(monkeypatch: pytest.MonkeyPatch, lab: Path) -> None:
    """A private cluster stopped under a registry in use: the open registry and a new
    command each fail with one line naming the server, no traceback, no password."""
    own = servers.start_postgres(max_connections=20)
    try:
        url = own.url(own.create_database())
        monkeypatch.setenv("REGISTRY_URL", url)
        registry = Registry()
        assert registry.list_versions() == []  # a pooled connection now exists
        ok_json("train", "--recipe", "nb-bow", "--backend", "local", "--quiet")
        own.stop()
        with pytest.raises(Exception) as caught:
            registry.list_versions()
        assert "cannot reach the registry" in str(caught.value) or "could not be used" in str(
            caught.value
        )
        assert own.password not in str(caught.value)
        line = one_line_failure({"REGISTRY_URL": url}, 1, "cannot reach the registry")
        assert own.password not in line
        for path in ("app.py", "pages/2_Versions.py", "pages/4_Try_a_request.py"):
            at = AppTest.from_file(str(ROOT / path), default_timeout=60).run()
            assert not at.exception, (path, [e.message for e in at.exception])
            (error,) = at.error
            assert "cannot reach the registry" in error.value and own.password not in error.value
    finally:
        own.stop()


def test_a_bucket_server_that_goes_away(monkeypatch: pytest.MonkeyPatch, lab: Path) -> None:
    """The S3 server stops: predict and train fail with one line, quickly; the failed build
    is recorded as failed with the reason, and nothing else changes."""
    own = servers.start_s3()
    try:
        for name, value in own.environment().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("ARTIFACT_ROOT", f"s3://{own.create_bucket()}/artifacts")
        ok_json("train", "--recipe", "nb-bow", "--backend", "local", "--quiet")
        own.stop()
        started = time.monotonic()
        done = run_cli("predict", "1", "--title", TITLE, "--text", TEXT)
        assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "Traceback" not in done.stderr and own.secret not in done.stderr
        done = run_cli("train", "--recipe", "nb-bow", "--backend", "local", "--seed", "7")
        assert done.returncode == 1 and "could not store the dataset" in done.stderr, done.stderr
        assert own.secret not in done.stderr
        assert time.monotonic() - started < 120
        listed = ok_json("list")
        assert [(v["version"], v["status"]) for v in listed] == [(2, "failed"), (1, "ready")]
    finally:
        own.stop()


def test_lock_conflicts_are_retried_by_sqlstate(pg_url: str) -> None:
    """A serialisation failure or deadlock (by SQLSTATE) is retried; the work then commits."""
    import psycopg
    from sqlalchemy.exc import OperationalError

    db = Database(pg_url)
    calls = []

    def work(session) -> str:
        calls.append(1)
        if len(calls) < 3:
            orig = psycopg.errors.SerializationFailure("could not serialize access")
            raise OperationalError("UPDATE ...", {}, orig)
        return "done"

    assert db.write(work) == "done" and len(calls) == 3
    deadlock = OperationalError("x", {}, psycopg.errors.DeadlockDetected("deadlock detected"))
    assert isinstance(classify(deadlock, pg_url), Retryable)


@pytest.mark.parametrize(
    "root", ["s3:/bucket/prefix", "nosuchscheme://bucket/x", "s3:bucket/prefix"]
)
def test_unknown_or_mistyped_artifact_roots_are_refused(root: str, lab: Path) -> None:
    done = run_cli("check", env={"ARTIFACT_ROOT": root})
    assert done.returncode == 2, done.stderr
    assert "ARTIFACT_ROOT" in done.stderr and "Traceback" not in done.stderr
    assert not any(p.name.startswith("s3") for p in Path(ROOT).iterdir())
    assert not any(p.name.startswith("s3") for p in lab.iterdir())


def test_a_build_survives_a_pg_restart(monkeypatch: pytest.MonkeyPatch, lab: Path) -> None:
    """`pg_ctl stop -m fast`, 8 s with no server, `pg_ctl start`, while a build runs: its
    registry reads and writes wait the restart out (REGISTRY_RETRY_S) and it ends ready,
    its log whole. (Before, the build failed within a second, "cannot reach the registry".)"""
    import subprocess
    import sys

    own = servers.start_postgres(max_connections=40)
    try:
        url = own.url(own.create_database())
        monkeypatch.setenv("REGISTRY_URL", url)
        monkeypatch.setenv("REGISTRY_RETRY_S", "60")
        registry = Registry()
        build = subprocess.Popen(
            [sys.executable, "-m", "core", "train", "--recipe", "narrative-vote", "--backend",
             "local", "--cv", "5", "--cv-repeats", "3", "--json", "--quiet"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while not [r for r in registry.list_versions() if r.status == "running"]:
            assert build.poll() is None, build.communicate()
            assert time.monotonic() < deadline, "the build never started running"
            time.sleep(0.2)
        own.restart(down_s=8)
        assert build.poll() is None, "the build ended while the registry was down"
        out, err = build.communicate(timeout=600)
        assert build.returncode == 0, err
        version = json.loads(out)
        assert version["status"] == "ready", version["error"]
        (row,) = Registry().list_versions()
        assert row.status == "ready" and row.artifact_sha256
        log = Registry().log_text(row.id)
        assert "progress: " in log and "registered artifact" in log, log[-500:]
    finally:
        own.stop()
