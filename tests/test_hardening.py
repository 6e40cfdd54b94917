"""Hardening, third round (issue 22): each case runs real CLI processes on a real SQLite file.

1. `export -o` through a planted temporary name, onto FIFOs, devices and symlinks;
2. valid records with a large unused field are slimmed as they are read;
5. export and import round-trip every kind of version (split, CV, refit, sweep member);
3. a queued row whose worker died (or whose launcher was interrupted) is taken over;
4. corrupt stored predictions are reported, never raised;
7. smaller ones: symlink loops in the store, ARTIFACT_ROOT schemes, reproduce of a refit,
   too few requests per class, gc's count, `sample -o` onto a symlink loop.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sqlite3
import stat
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import memory_bench
from core import builds
from core.registry import Registry
from tests.conftest import SAMPLE
from tests.helpers import ROOT, run_cli, use_lab, wait_until

NO_ENGINE = {"DOCKER_HOST": "unix:///tmp/altruism-lab-nonexistent.sock"}
OTHER_UID = 65534


def one_line_error(done: subprocess.CompletedProcess) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


KINDS = {"split": 1, "cv": 2, "refit": 3, "sweep member": 4}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lab with one version of each kind, nb-bow on the sample: v1 on a held-out split,
    v2 cross-validated (3 folds), v3 the refit of v1, v4 and v5 a cross-validated sweep."""
    home = tmp_path_factory.mktemp("hardening-lab")
    with pytest.MonkeyPatch.context() as mp:
        use_lab(mp.setenv, home)
        registry = Registry()
        request = builds.TrainRequest(recipe="nb-bow", backend="local", data_path=SAMPLE)
        row, _ = builds.train(request, registry)
        assert row.status == "ready", row.error
        for argv in (
            ("train", "--recipe", "nb-bow", "--cv", "3"),
            ("refit", "1"),
            ("train", "--recipe", "nb-bow", "--cv", "3", "--grid", "alpha=0.3,0.7"),
        ):
            done = run_cli(*argv, "--backend", "local", env=NO_ENGINE)
            assert done.returncode == 0, done.stderr
        assert [registry.resolve(v).status for v in range(1, 6)] == ["ready"] * 5
        done = run_cli("export", "2", "-o", str(home / "v2.zip"), env=NO_ENGINE)
        assert done.returncode == 0, done.stderr
        registry.engine.dispose()  # checkpoint the WAL so the file can be copied
    return home


@pytest.fixture
def one(built: Path, lab: Path) -> Registry:
    shutil.copy2(built / "registry.db", lab / "registry.db")
    shutil.copytree(built / "artifacts", lab / "artifacts")
    return Registry()


# --- 1. export -o ------------------------------------------------------------------------------
@pytest.fixture
def public() -> Iterator[Path]:
    """A world-writable sticky folder, as /tmp is (pytest's own tmp tree is private)."""
    root = Path(tempfile.mkdtemp(prefix="altruism-pub-"))
    root.chmod(0o1777)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def as_other_user(*argv: str) -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to act as another local account")
    subprocess.run(
        ["setpriv", f"--reuid={OTHER_UID}", f"--regid={OTHER_UID}", "--clear-groups", *argv],
        check=True,
    )


def test_export_never_writes_through_a_planted_temporary_symlink(
    one: Registry, public: Path, lab: Path
) -> None:
    victim = lab / "root-owned.conf"
    victim.write_text("precious\n")
    as_other_user("ln", "-s", str(victim), str(public / ".v1.zip.tmp"))
    done = run_cli("export", "1", "-o", str(public / "v1.zip"), env=NO_ENGINE)
    assert done.returncode == 0, done.stderr
    assert victim.read_text() == "precious\n"
    out = os.lstat(public / "v1.zip")
    assert stat.S_ISREG(out.st_mode) and out.st_uid == os.geteuid()
    assert run_cli("import", str(public / "v1.zip"), env=NO_ENGINE).returncode == 0


def test_export_never_hands_the_archive_to_a_precreated_file(one: Registry, public: Path) -> None:
    as_other_user("sh", "-c", f"umask 0; : > {public / '.v1.zip.tmp'}")
    done = run_cli("export", "1", "-o", str(public / "v1.zip"), env=NO_ENGINE)
    assert done.returncode == 0, done.stderr
    out = os.lstat(public / "v1.zip")
    assert out.st_uid == os.geteuid(), "the archive belongs to the other account"
    assert not out.st_mode & 0o022, oct(out.st_mode)
    assert [p.name for p in public.iterdir() if p.name.endswith(".tmp")] == [".v1.zip.tmp"]


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _null_device(path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to make a device node")
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a /dev/null of our own


def _symlink(path: Path) -> None:
    target = path.with_name("elsewhere.zip")
    target.write_bytes(b"keep")
    path.symlink_to(target)


def _loop(path: Path) -> None:
    path.symlink_to(path)


@pytest.mark.parametrize("make", [_fifo, _null_device, _symlink, _loop])
def test_export_refuses_an_output_that_is_not_a_regular_file(
    one: Registry, lab: Path, make: Any
) -> None:
    target = lab / "out" / "v1.zip"
    target.parent.mkdir()
    make(target)
    before = os.lstat(target)
    done = run_cli("export", "1", "-o", str(target), env=NO_ENGINE)
    assert done.returncode == 2, done.stderr
    assert "refusing" in one_line_error(done)
    after = os.lstat(target)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert sorted(p.name for p in target.parent.iterdir() if p.name.endswith(".tmp")) == []


def test_sample_onto_a_symlink_loop_is_refused(lab: Path) -> None:
    loop = lab / "loop.json"
    loop.symlink_to(loop)
    done = run_cli("sample", "-o", str(loop))
    assert done.returncode == 2, done.stderr
    assert "symbolic link" in one_line_error(done)
    inside = lab / "loop" / "sample.json"
    (lab / "loop").symlink_to(lab / "loop")
    done = run_cli("sample", "-o", str(inside))
    assert done.returncode == 2, done.stderr
    one_line_error(done)


# --- 5. export and import round-trip every kind of version -----------------------------------
@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_of_version_round_trips(one: Registry, lab: Path, kind: str) -> None:
    version = KINDS[kind]
    original = json.loads(run_cli("show", str(version), "--json", env=NO_ENGINE).stdout)
    archive = lab / f"v{version}.zip"
    done = run_cli("export", str(version), "-o", str(archive), env=NO_ENGINE)
    assert done.returncode == 0, done.stderr
    done = run_cli("import", str(archive), "--json", env=NO_ENGINE)
    assert done.returncode == 0, done.stderr
    imported = json.loads(done.stdout)
    assert imported["imported"] is True and imported["status"] == "ready"
    for key in ("metrics", "fingerprint", "split_hash", "artifact_sha256", "params"):
        assert imported[key] == original[key], key
    assert imported["provenance"]["split"] == original["provenance"]["split"]
    assert ("refit_of" in imported["provenance"]) == (kind == "refit")
    compared = run_cli("compare", str(version), str(imported["version"]), "--json", env=NO_ENGINE)
    assert compared.returncode == 0, compared.stderr
    assert run_cli("check", env=NO_ENGINE).returncode == 0


def _reseal(archive: Path, target: Path, edit: Any) -> Path:
    from tests.test_security import reseal

    return reseal(archive, target, edit)


def _claim(path: str, value: Any) -> Any:
    def edit(version: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = version
        for key in parents:
            node = node[key]
        node[leaf] = value

    return edit


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("metrics.roc_auc", 0.999, "metric roc_auc is 0.999 but"),
        ("metrics.evaluation.fold_thresholds", [[0.9, 0.9, 0.9]], "does not follow"),
        ("metrics.evaluation.fold_thresholds", [[0.5, 0.5]], "fold thresholds"),
        ("metrics.evaluation.kind", "split", "evaluation is of an unknown kind"),
        ("metrics.evaluation.extra", 1, "not shaped like a cross-validation"),
        ("metrics.evaluation.fold_metrics.roc_auc", {"mean": 7, "sd": 0}, "fold metric"),
        ("metrics.evaluation.hash", "0" * 64, "fold hash"),
        ("split_hash", "0" * 64, "split hash"),
        ("provenance.split.cv", {"folds": 5, "repeats": 1}, "folds and repeats"),
        ("data_sha256", "1" * 64, "fold hash"),
    ],
)
def test_a_cross_validated_archive_that_lies_is_refused(
    one: Registry, built: Path, lab: Path, path: str, value: Any, message: str
) -> None:
    hostile = _reseal(built / "v2.zip", lab / "hostile.zip", _claim(path, value))
    before = len(one.all_versions())
    done = run_cli("import", str(hostile), env=NO_ENGINE)
    assert done.returncode == 2, done.stderr
    assert message in one_line_error(done)
    assert len(one.all_versions()) == before


# --- 3. dead queued rows are taken over, never joined -----------------------------------------
DIE_AFTER_SUBMIT = """
import os, signal, sys
from core import builds
from core.registry import Registry
request = builds.TrainRequest(recipe="nb-bow", backend="local", data_path=sys.argv[1])
row = builds.submit(request, Registry()).version
print(row.version, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # the train dies after its row exists
"""


def _kill_after_submit() -> int:
    done = subprocess.run(
        [sys.executable, "-c", DIE_AFTER_SUBMIT, str(SAMPLE)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == -signal.SIGKILL, done.stderr
    return int(done.stdout.strip())


def test_a_row_whose_launcher_was_killed_is_never_joined(registry: Registry) -> None:
    version = _kill_after_submit()
    assert registry.resolve(version).status == "queued"
    checked = run_cli("check", "--json", env=NO_ENGINE)
    assert checked.returncode == 1, "a queued row nobody holds is a stuck build at once"
    assert [f["kind"] for f in json.loads(checked.stdout)["findings"]] == ["stuck_build"]
    done = run_cli("train", "--recipe", "nb-bow", "--backend", "local", "--data", str(SAMPLE),
                   "--json", env=NO_ENGINE)  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["status"] == "ready", "joined a dead row"
    dead = registry.resolve(version)  # the CLI's recovery ended it first: a new version built
    assert dead.status == "failed" and "launcher" in dead.error and out["version"] == version + 1
    assert run_cli("check", env=NO_ENGINE).returncode == 0


@pytest.mark.timeout(300)  # today it joins the dead row and waits for ever
def test_an_identical_request_in_process_takes_the_dead_row_over(registry: Registry) -> None:
    version = _kill_after_submit()
    request = builds.TrainRequest(recipe="nb-bow", backend="local", data_path=SAMPLE)
    row, submission = builds.train(request, registry)
    assert not submission.reused and (row.version, row.status) == (version, "ready")
    assert len(registry.all_versions()) == 1


def test_an_identical_train_joins_a_row_its_launcher_still_holds(registry: Registry) -> None:
    request = builds.TrainRequest(recipe="nb-bow", backend="local", data_path=SAMPLE)
    row = builds.submit(request, registry).version  # this (live) process holds it
    done = run_cli("train", "--recipe", "nb-bow", "--backend", "local", "--data", str(SAMPLE),
                   "--detach", "--json", env=NO_ENGINE)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["version"] == row.version
    assert registry.get_by_id(row.id).status == "queued" and len(registry.all_versions()) == 1


def test_ctrl_c_while_a_sweep_queues_leaves_no_queued_row(registry: Registry) -> None:
    grid = "alpha=" + ",".join(f"{0.05 * i:.2f}" for i in range(1, 21))
    argv = [sys.executable, "-m", "core", "train", "--recipe", "nb-bow", "--backend", "local",
            "--data", str(SAMPLE), "--grid", grid]  # fmt: skip
    sweep = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **NO_ENGINE},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    wait_until(lambda: len(registry.all_versions()) >= 2, "the sweep to queue", timeout_s=120)
    sweep.send_signal(signal.SIGINT)
    _, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 130, err
    assert run_cli("list", "--json", env=NO_ENGINE).returncode == 0
    rows = registry.all_versions()
    assert rows and not [r.version for r in rows if r.status in ("queued", "running")]
    assert run_cli("check", env=NO_ENGINE).returncode == 0


# --- 4. corrupt stored predictions are reported, never raised ---------------------------------
def _bomb() -> bytes:
    inflate = zlib.compressobj(9)
    chunk = b" " * (1 << 20)
    body = b"".join(inflate.compress(chunk) for _ in range(1024)) + inflate.flush()
    return b"S1" + body  # 1 GiB of spaces in about 1 MB


DAMAGE = {
    "ids wrong tag": ("test_ids_packed", lambda b: b"X1" + b[2:]),
    "ids stray bytes": ("test_ids_packed", lambda b: b + b"junk"),
    "ids zlib bomb": ("test_ids_packed", lambda b: _bomb()),
    "labels wrong tag": ("test_labels_packed", lambda b: b"F1" + b[2:]),
    "labels out of range": ("test_labels_packed", lambda b: b[:-1] + b"\x07"),
    "labels short": ("test_labels_packed", lambda b: b[:-1]),
    "probabilities stray bytes": ("test_probabilities_packed", lambda b: b + b"\x01"),
    "probabilities NaN": ("test_probabilities_packed", lambda b: b[:-8] + struct.pack("<d", math.nan)),  # noqa: E501
    "probabilities out of range": ("test_probabilities_packed", lambda b: b[:-8] + struct.pack("<d", 7.5)),  # noqa: E501
    "probabilities short": ("test_probabilities_packed", lambda b: b[:-8]),
    "curves missing": ("curves", lambda b: b'{"roc": {}}'),
    "curves NaN": ("curves", lambda b: b'{"roc": {"fpr": [NaN], "tpr": [0]}, "pr": {}}'),
}  # fmt: skip


def _damage(lab: Path, column: str, change: Any) -> None:
    with sqlite3.connect(lab / "registry.db") as db:
        (blob,) = db.execute(
            f"SELECT {column} FROM version_details WHERE version_id = 1"
        ).fetchone()
        blob = blob.encode() if isinstance(blob, str) else bytes(blob)
        value = change(blob)
        db.execute(f"UPDATE version_details SET {column} = ? WHERE version_id = 1",
                   (value.decode() if column == "curves" else value,))  # fmt: skip


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_stored_predictions_are_reported_not_raised(
    one: Registry, lab: Path, case: str
) -> None:
    from streamlit.testing.v1 import AppTest

    _damage(lab, *DAMAGE[case])
    before = len(one.all_versions())
    checked = run_cli("check", "--json", env=NO_ENGINE)
    assert checked.returncode == 1, checked.stdout
    findings = json.loads(checked.stdout)["findings"]
    assert [(f["kind"], f["version"]) for f in findings] == [("damaged_details", 1)]
    for argv in (("export", "1", "-o", str(lab / "v1.zip")), ("compare", "1", "3"),
                 ("refit", "1", "--backend", "local")):  # fmt: skip
        done = run_cli(*argv, env=NO_ENGINE)
        assert done.returncode == 1, (argv, done.stderr)
        assert "version 1's stored predictions are damaged" in one_line_error(done), argv
    assert len(one.all_versions()) == before, "refit created a version"
    for page in ("pages/2_Versions.py", "pages/3_Compare.py"):
        at = AppTest.from_file(str(ROOT / page), default_timeout=60)
        at.query_params["v"] = "1" if "Versions" in page else "1,3"
        at.run()
        assert not at.exception, (page, [e.message for e in at.exception])
        assert any("damaged" in e.value for e in at.error), page


# --- 7. smaller ones ---------------------------------------------------------------------------
def test_reproducing_a_refit_compares_its_artifact_not_its_parents_predictions(
    one: Registry,
) -> None:
    done = run_cli("reproduce", str(KINDS["refit"]), "--json", "--quiet", env=NO_ENGINE)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["artifact_identical"] is True
    assert out["identical"] is True, out
    assert out["probabilities_identical"] is None and out["split_identical"] is None
    assert out["refit_of"] == KINDS["split"] and "parent" in out["note"]
    assert one.resolve(KINDS["refit"]).reproduction["identical"] is True


def _few_positives(lab: Path, positives: int, negatives: int = 40) -> Path:
    records = json.loads(SAMPLE.read_text())
    yes = [r for r in records if r["requester_received_pizza"]][:positives]
    no = [r for r in records if not r["requester_received_pizza"]][:negatives]
    path = lab / f"few-{positives}.json"
    path.write_text(json.dumps(yes + no))
    return path


@pytest.mark.parametrize(
    ("positives", "argv", "message"),
    [
        (3, ("--cv", "5"), "5 stratified folds need at least 5 of each class"),
        (1, (), "a stratified split needs at least 2 of each class"),
        (3, ("--cv", "2"), "needs at least 2 of each class in the training part"),
        (2, (), "needs at least 1 of each class in the test part"),
        (3, ("--test-size", "0.5"), "needs at least 2 of each class in the training part"),
    ],
)
def test_too_few_requests_per_class_are_refused_before_anything_is_written(
    registry: Registry, lab: Path, positives: int, argv: tuple[str, ...], message: str
) -> None:
    data = _few_positives(lab, positives)
    done = run_cli("train", "--recipe", "nb-bow", "--backend", "local", "--data", str(data),
                   *argv, env=NO_ENGINE)  # fmt: skip
    assert done.returncode == 2, done.stderr
    error = one_line_error(done)
    assert message in error and f"{positives} successful and 40 unsuccessful" in error, error
    assert registry.all_versions() == []
    if "training part" in message:  # a fixed threshold needs no inner folds: it builds
        done = run_cli("train", "--recipe", "nb-bow", "--backend", "local", "--data", str(data),
                       *argv, "--threshold-policy", "fixed:0.5", env=NO_ENGINE)  # fmt: skip
        assert done.returncode == 0, done.stderr


def test_gc_counts_only_what_it_removed(one: Registry, lab: Path) -> None:
    for n in range(3):
        (lab / "artifacts" / f"notes-{n}.txt").write_text("mine\n")
    done = run_cli("gc", "--json", env=NO_ENGINE)
    assert done.returncode == 0, done.stderr
    assert "removed 0 item(s)" in done.stderr, done.stderr
    assert "left 3 stray file(s) alone" in done.stderr, done.stderr
    assert all((lab / "artifacts" / f"notes-{n}.txt").exists() for n in range(3))
    assert run_cli("gc", "--dry-run", env=NO_ENGINE).stderr.count("would remove 0 item(s)") == 1


def test_a_symlink_loop_in_the_store_is_reported_and_check_and_gc_go_on(
    one: Registry, lab: Path
) -> None:
    store = lab / "artifacts"
    (store / "loop").symlink_to(store / "loop")
    folder = next(p for p in store.rglob("*") if p.is_dir() and len(p.name) == 2)
    (folder / "ring").symlink_to(folder / "ring")
    (store / "up").symlink_to(store)  # a loop through a folder: never followed
    checked = run_cli("check", "--json", env=NO_ENGINE)
    assert checked.returncode == 1, checked.stderr
    out = json.loads(checked.stdout)
    loops = sorted(f["path"] for f in out["findings"] if f["kind"] == "unreadable_file")
    assert loops == sorted(["loop", f"{folder.relative_to(store).as_posix()}/ring"]), out
    assert out["checked"]["versions"] == 5 and out["checked"]["artifacts"] >= 4
    assert all(f["kind"] in ("unreadable_file", "stray_file") for f in out["findings"]), out
    done = run_cli("gc", env=NO_ENGINE)
    assert done.returncode == 0, done.stderr
    assert "removed 0 item(s)" in done.stderr and "loop" in done.stdout, done
    assert (store / "loop").is_symlink() and [v.status for v in one.all_versions()] == ["ready"] * 5


@pytest.mark.parametrize(
    ("root", "message"),
    [
        ("memory://altruism/store", "does not persist"),
        ("file://", "absolute path"),
        ("file://elsewhere/store", "names a host"),
    ],
)
def test_an_artifact_root_that_cannot_be_shared_is_refused(
    registry: Registry, root: str, message: str
) -> None:
    before = sorted(p.name for p in ROOT.iterdir())
    done = run_cli("train", "--recipe", "nb-bow", "--backend", "local", "--data", str(SAMPLE),
                   env={**NO_ENGINE, "ARTIFACT_ROOT": root})  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert message in one_line_error(done) and "ARTIFACT_ROOT" in done.stderr
    assert registry.all_versions() == [] and sorted(p.name for p in ROOT.iterdir()) == before


@pytest.mark.parametrize("host", ["", "localhost"])
def test_a_file_url_artifact_root_is_its_absolute_folder(
    registry: Registry, lab: Path, host: str
) -> None:
    folder = lab / "my store"
    env = {**NO_ENGINE, "ARTIFACT_ROOT": f"file://{host}{str(folder).replace(' ', '%20')}"}
    before = sorted(p.name for p in ROOT.iterdir())
    done = run_cli("train", "--recipe", "nb-bow", "--backend", "local", "--data", str(SAMPLE),
                   "--threshold-policy", "fixed:0.5", env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (
        len(list(folder.rglob("*.joblib"))) == 1
        and sorted(p.name for p in ROOT.iterdir()) == before
    )
    checked = run_cli("check", "--json", env=env)  # another process finds the artifact
    assert checked.returncode == 0, checked.stdout
    assert json.loads(checked.stdout)["checked"]["artifacts"] == 1


# --- 2. valid records with a large unused field ------------------------------------------------
@pytest.mark.parametrize("verb", list(memory_bench.VERBS))
def test_a_large_unused_field_is_dropped_as_records_are_read(
    one: Registry, lab: Path, verb: str
) -> None:
    """The sample's requests, 30 of them with an unused field of 2 MB of `[[],[],...]` (the
    most Python objects per byte of JSON), through the memory bench's own runner: the whole
    process, its worker included."""
    fat = lab / "fat.json.zip"
    memory_bench.fat_records_zip(fat, 2 << 20)
    result = memory_bench.run_verb(verb, fat)
    assert result["code"] == 0, result["stderr"]
    peak_mib = result["kib"] >> 10
    assert peak_mib < 400, f"{verb} peaked at {peak_mib} MiB holding 30 records' unused fields"
