"""Registry integrity under a busy team: maintenance beside running builds.

Ten `python -m core train` processes run at once while another process loops over `gc`,
`check`, `promote` and archiving. Every build must end ready and loadable, no `check` run
during the load may report a missing or unreferenced artifact (files in flight are pinned
by their version before they land), and the final `check` must be clean.
Rounds: ALTRUISM_INTEGRITY_ROUNDS (default 3).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from core.artifacts import open_store
from core.maintenance import check
from core.registry import Registry
from core.schema import READY
from tests.helpers import ROOT

TRAINS = 10
ROUNDS = int(os.environ.get("ALTRUISM_INTEGRITY_ROUNDS", "3"))
WAIT_S = 240

MAINTENANCE_LOOP = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from core.artifacts import open_store
    from core.maintenance import check, gc
    from core.registry import Registry

    stop, out = Path(sys.argv[1]), Path(sys.argv[2])
    registry, store = Registry(), open_store()
    seen, loops, turn = [], 0, 0
    while not stop.exists():
        loops += 1
        gc(registry, store)
        seen += [f["kind"] for f in check(registry, store).findings]
        ready = [r for r in registry.list_versions() if r.status == "ready" and not r.archived]
        if ready:
            turn += 1
            row = ready[turn % len(ready)]
            registry.promote(row.version, alias="champion")
            if turn % 3 == 0 and len(ready) > 2:
                registry.set_archived(ready[-1].id, True)
        time.sleep(0.05)
        if loops == 1:  # warm (imports, engine and store clients): the trains may start
            out.with_suffix(".warm").touch()
    out.write_text(json.dumps({"loops": loops, "kinds": seen}))
    """
)


def _train(seed: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "core", "train", "--recipe", "nb-bow", "--backend", "local",
         "--seed", str(seed), "--json", "--quiet"],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(ROUNDS))
def test_maintenance_beside_ten_trains_loses_nothing(lab: Path, round_: int) -> None:
    stop, out = lab / "stop", lab / "maintenance.json"
    loop = subprocess.Popen(
        [sys.executable, "-c", MAINTENANCE_LOOP, str(stop), str(out)],
        cwd=ROOT,
        env=dict(os.environ),
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120  # its first loop pays the imports: not maintenance time
    while not out.with_suffix(".warm").exists() and loop.poll() is None:
        assert time.monotonic() < deadline, "the maintenance loop never finished a first round"
        time.sleep(0.05)
    started = time.monotonic()
    trains = [_train(100 * round_ + i) for i in range(TRAINS)]
    try:
        results = [(*proc.communicate(timeout=WAIT_S), proc.returncode) for proc in trains]
    finally:
        stop.touch()
        for proc in trains:
            proc.kill() if proc.poll() is None else None
        _, loop_err = loop.communicate(timeout=120)
    elapsed = time.monotonic() - started
    assert loop.returncode == 0, loop_err[-3000:]
    for stdout, stderr, code in results:
        assert code == 0, stderr[-3000:]
        assert "Traceback" not in stderr
        assert json.loads(stdout)["status"] == READY
    seen = json.loads(out.read_text())
    assert seen["loops"] >= 3, f"the maintenance loop only ran {seen['loops']} times"
    bad = {"missing_artifact", "tampered_artifact", "unreferenced_artifact", "error"}
    assert not bad & set(seen["kinds"]), seen["kinds"]

    registry, store = Registry(), open_store()
    ready = [row for row in registry.list_versions() if row.status == READY]
    assert len(ready) == TRAINS
    for row in ready:
        assert store.verify(row.artifact_sha256) == "ok"
        assert hasattr(store.load(row.artifact_sha256), "predict_proba")
    report = check(registry, store)
    assert report.ok, report.findings
    print(f"round {round_}: {TRAINS} trains + {seen['loops']} maintenance loops in {elapsed:.0f}s")


def test_identical_requests_in_flight_share_one_version(lab: Path) -> None:
    """Three identical `train --detach` at once (a triple click): one version, one build."""
    argv = [sys.executable, "-m", "core", "train", "--recipe", "nb-bow", "--backend", "local",
            "--param", "alpha=0.7", "--detach", "--json"]  # fmt: skip
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    procs = [subprocess.Popen(argv, cwd=ROOT, env=dict(os.environ), **pipes) for _ in range(3)]
    outs = [proc.communicate(timeout=120) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), [err for _, err in outs]
    ids = {json.loads(out)["id"] for out, _ in outs}
    assert len(ids) == 1, f"three identical requests made versions {sorted(ids)}"
    registry = Registry()
    (row,) = registry.list_versions()
    from core.builds import wait_for

    assert wait_for(row.id, registry, timeout_s=120).status == READY
    again = subprocess.run(argv, cwd=ROOT, env=dict(os.environ), capture_output=True, text=True)
    assert json.loads(again.stdout)["id"] == row.id  # and once ready, it is reused
