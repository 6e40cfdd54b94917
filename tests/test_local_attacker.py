"""Another local account races a build to plant its own model (docs/security.md).

The attacker runs as uid 65534 (`setpriv --reuid=65534`) and, for the whole build, tries to
write a pickle of its own into every build folder it can see under WORK_ROOT (a shared,
world-writable, sticky folder like /tmp). Build folders are private (0700) and Docker builds
share no host folder at all (files move through the engine's archive API), so the build
registers the worker's model, never the attacker's bytes. The host also refuses outputs
whose bytes differ from the sha256 the worker reported.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import builds
from core.builders.base import collect
from core.errors import BuildFailed
from core.registry import Registry
from core.workfiles import ARTIFACT_NAME, RESULT_NAME
from tests.conftest import SAMPLE

ATTACKER_UID = 65534
ATTACK = r"""
end=$(( $(date +%s) + $1 ))
while [ "$(date +%s)" -lt "$end" ]; do
  for d in "$2"/altruism-build-*; do
    [ -e "$d" ] || continue
    echo "seen $d" >> "$4"
    for t in "$d/out/model.joblib" "$d/out/result.json" "$d/model.joblib" "$d/data.jsonl"; do
      if cp "$3" "$t" 2>/dev/null; then echo "planted $t" >> "$4"; fi
    done
    if ls "$d" >/dev/null 2>&1; then echo "listed $d" >> "$4"; fi
  done
done
"""


def _can_switch_uid() -> str | None:
    if os.geteuid() != 0:
        return "needs root to start a process as another uid"
    if shutil.which("setpriv") is None:
        return "needs setpriv (util-linux)"
    return None


@pytest.fixture
def shared_work_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A world-writable sticky WORK_ROOT, as /tmp is (pytest's own tmp tree is private)."""
    root = Path(tempfile.mkdtemp(prefix="altruism-shared-work-"))
    root.chmod(0o1777)
    monkeypatch.setenv("WORK_ROOT", str(root))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _start_attacker(root: Path, seconds: int) -> tuple[subprocess.Popen, Path, bytes]:
    payload = json.dumps({"planted": True}).encode()
    payload_file, report = root / "payload.bin", root / "attacker.log"
    payload_file.write_bytes(payload)
    report.touch()
    for path in (payload_file, report):
        path.chmod(0o666)
    proc = subprocess.Popen(
        ["setpriv", f"--reuid={ATTACKER_UID}", f"--regid={ATTACKER_UID}", "--clear-groups",
         "sh", "-c", ATTACK, "attacker", str(seconds), str(root), str(payload_file),
         str(report)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return proc, report, payload


def _race(backend: str, root: Path) -> tuple[object, list[str], bytes]:
    reason = _can_switch_uid()
    if reason:
        pytest.skip(reason)
    attacker, report, payload = _start_attacker(root, 600)
    try:
        request = builds.TrainRequest(
            recipe="nb-bow", backend=backend, seed=7, data_path=SAMPLE, force=True
        )
        row, _ = builds.train(request, Registry())
    finally:
        attacker.kill()
        attacker.wait()
    return row, report.read_text().splitlines(), payload


@pytest.mark.parametrize(
    "backend", ["local", pytest.param("docker", marks=[pytest.mark.docker, pytest.mark.slow])]
)
def test_another_uid_cannot_plant_a_model(shared_work_root: Path, store, backend: str) -> None:
    row, events, payload = _race(backend, shared_work_root)
    assert row.status == "ready", row.error
    assert any(e.startswith("seen ") for e in events), "the attacker never saw a build folder"
    assert not [e for e in events if e.startswith(("planted", "listed"))], events[:5]
    assert row.artifact_sha256 != hashlib.sha256(payload).hexdigest()
    assert hasattr(store.load(row.artifact_sha256), "predict_proba")
    leftovers = [p for p in shared_work_root.iterdir() if p.name.startswith("altruism-build-")]
    assert leftovers == [], "the build left its work folder behind"


def test_build_folders_are_private(shared_work_root: Path) -> None:
    registry = Registry()
    request = builds.TrainRequest(recipe="nb-bow", backend="local", data_path=SAMPLE)
    submission = builds.submit(request, registry)
    folder = builds.new_work_dir(registry, submission.version)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert folder.stat().st_uid == os.geteuid()


def test_host_refuses_an_output_that_differs_from_what_the_worker_reported() -> None:
    worker_wrote = b"the worker's model bytes"
    result = {"artifact_sha256": hashlib.sha256(worker_wrote).hexdigest()}
    files = {RESULT_NAME: json.dumps(result).encode(), ARTIFACT_NAME: b"planted bytes"}
    with pytest.raises(BuildFailed, match="changed after the worker wrote it"):
        collect(files, 0, {})
    files[ARTIFACT_NAME] = worker_wrote
    assert collect(files, 0, {}).artifact_sha256 == result["artifact_sha256"]
