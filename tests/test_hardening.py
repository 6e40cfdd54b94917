"""Hardening, third round (issue 22): each case runs real CLI processes on a real SQLite file.

1. `export -o` through a planted temporary name, onto FIFOs, devices and symlinks;
5. export and import round-trip every kind of version (split, CV, refit, sweep member);
3. a queued row whose worker died (or whose launcher was interrupted) is taken over;
4. corrupt stored predictions are reported, never raised;
7. smaller ones: symlink loops in the store, ARTIFACT_ROOT schemes, reproduce of a refit,
   too few requests per class, gc's count, `sample -o` onto a symlink loop.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core import builds
from core.registry import Registry
from tests.conftest import SAMPLE
from tests.helpers import run_cli, use_lab

NO_ENGINE = {"DOCKER_HOST": "unix:///tmp/altruism-lab-nonexistent.sock"}
OTHER_UID = 65534


def one_line_error(done: subprocess.CompletedProcess) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lab with version 1: nb-bow on the sample, held-out split."""
    home = tmp_path_factory.mktemp("hardening-lab")
    with pytest.MonkeyPatch.context() as mp:
        use_lab(mp.setenv, home)
        registry = Registry()
        request = builds.TrainRequest(recipe="nb-bow", backend="local", data_path=SAMPLE)
        row, _ = builds.train(request, registry)
        assert row.status == "ready", row.error
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
