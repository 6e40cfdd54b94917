"""A local worker started before its job: it trains when handed one, and leaves nothing behind
when it is not needed or dies first."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from core import builds
from core.builders.local import LocalBuilder, SpareWorker
from core.registry import Registry
from tests.helpers import run_cli


def test_a_spare_that_is_not_needed_is_stopped_at_once() -> None:
    spare = SpareWorker()
    process = spare.process
    started = time.monotonic()
    spare.discard()
    assert process.returncode == -signal.SIGKILL and time.monotonic() - started < 5
    assert spare.process is None
    spare.discard()  # twice is harmless


def test_a_spare_that_died_is_replaced_by_a_new_worker(lab: Path, registry: Registry) -> None:
    spare = SpareWorker()
    os.killpg(spare.process.pid, signal.SIGKILL)
    spare.process.wait()
    submission = builds.submit(builds.TrainRequest(recipe="nb-bow", backend="local"), registry)
    row = builds.execute(submission.version.id, registry, builder=LocalBuilder(spare))
    assert row.status == "ready", row.error
    assert spare.process is None


def test_the_cli_hands_its_job_to_the_spare_and_a_reused_request_leaves_no_worker(
    lab: Path,
) -> None:
    first = run_cli("train", "--recipe", "nb-bow", "--backend", "local", "--json", "--quiet")
    assert first.returncode == 0, first.stderr
    again = run_cli("train", "--recipe", "nb-bow", "--backend", "local", "--json", "--quiet")
    assert again.returncode == 0 and '"reused": true' in again.stdout
    refused = run_cli("train", "--recipe", "nb-bow", "--backend", "local", "--param", "alpha=-1")
    assert refused.returncode == 2
    # no worker of this test's lab is left running (each would hold its work folder)
    time.sleep(0.5)
    mine = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if b"core.worker" in cmdline and str(lab).encode() in environ:
            mine.append(pid)
    assert mine == []
