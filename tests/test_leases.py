"""Build leases (issue 25, item 1): a running build's launcher renews its lease in the
registry; recovery on any host ends a build whose lease expired, and never a live one.

"Another machine" is played by recording a different hostname for the row, as a build
launched elsewhere would have: this host's pid check then no longer applies and only the
lease speaks for the launcher. The launchers are real `run-build` processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
from datetime import UTC, datetime

import pytest

from core import builds
from core.artifacts import open_store
from core.maintenance import check
from core.registry import Registry
from core.schema import ModelVersion, aware
from tests.helpers import log_of, run_cli, wait_until

pytestmark = pytest.mark.both_backends
LEASE_S = 3
FOREIGN = "builder-on-another-machine"


def launch_sleeping(registry: Registry, seconds: int) -> tuple[ModelVersion, int, int]:
    """A detached local build sleeping `seconds` in training: (row, launcher pid, worker pid)."""
    request = builds.TrainRequest(
        recipe="nb-bow", backend="local", force=True, fault=f"sleep:{seconds}"
    )
    row = builds.submit(request, registry).version
    launcher = builds.launch(row.id, registry)
    wait_until(lambda: "injected fault: sleeping" in log_of(row), "training", timeout_s=120)
    worker = int(re.search(r"worker pid (\d+):", log_of(row)).group(1))
    return row, launcher, worker


def expiry(registry: Registry, version_id: int) -> datetime:
    return aware(registry.get_by_id(version_id).lease_expires_at)


def test_a_dead_launchers_lease_expires_and_check_ends_its_build(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUILD_LEASE_S", str(LEASE_S))
    row, launcher, worker = launch_sleeping(registry, 60)
    first = expiry(registry, row.id)
    wait_until(lambda: expiry(registry, row.id) > first, "a lease renewal", timeout_s=10)
    try:
        os.kill(launcher, signal.SIGKILL)
        os.waitpid(launcher, 0)
    finally:  # the training subprocess lives in its own session
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker, signal.SIGKILL)
    held = registry.get_by_id(row.id)
    holder = held.lease_holder.replace(held.worker_host, FOREIGN, 1)
    registry._update(row.id, worker_host=FOREIGN, lease_holder=holder)  # as if launched there
    expires = aware(held.lease_expires_at)
    assert expires > datetime.now(UTC), "the lease must still hold when the launcher dies"

    store = open_store()
    while (datetime.now(UTC) - expires).total_seconds() < -0.3:  # before expiry: left alone
        assert check(registry, store).ok
        assert registry.get_by_id(row.id).status == "running"
        time.sleep(0.2)
    wait_until(lambda: datetime.now(UTC) > expires, "the lease to expire", timeout_s=10)

    started = time.monotonic()
    done = run_cli("check", "--json")  # another process, on "another host" than the launcher
    print(f"check ended the build in {time.monotonic() - started:.1f} s")
    assert done.returncode == 1, done.stderr
    (finding,) = json.loads(done.stdout)["findings"]
    renewed = f"{aware(held.lease_renewed_at):%Y-%m-%d %H:%M:%S} UTC"
    reason = f"launcher on {FOREIGN} stopped renewing at {renewed}"
    assert finding["kind"] == "stuck_build" and reason in finding["message"], finding
    ended = registry.get_by_id(row.id)
    assert ended.status == "failed" and reason in ended.error, ended.error
    assert run_cli("check", "--json").returncode == 0  # nothing left to report


def test_a_live_launcher_keeps_renewing_its_lease(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build running for several lease periods, judged only by its lease from this other
    process (and from `list`), is never ended: its launcher keeps renewing."""
    monkeypatch.setenv("BUILD_LEASE_S", str(LEASE_S))
    row, launcher, _ = launch_sleeping(registry, 5 * LEASE_S)
    registry._update(row.id, worker_host=FOREIGN)  # only the lease can tell it is alive
    store = open_store()
    seen = [expiry(registry, row.id)]
    deadline = time.monotonic() + 4 * LEASE_S
    listed = False
    while time.monotonic() < deadline:
        current = registry.get_by_id(row.id)
        if current.status != "running":
            break
        assert check(registry, store).ok, check(registry, store).findings
        if not listed:  # one `list` from another process: its recovery leaves it too
            assert run_cli("list", "--json").returncode == 0
            listed = True
        seen.append(aware(current.lease_expires_at))
        time.sleep(0.5)
    assert len(set(seen)) >= 4, f"the lease was renewed only {len(set(seen)) - 1} times"
    row = builds.wait_for(row.id, registry, timeout_s=120, poll_s=0.2)
    assert row.status == "ready", row.error
    os.waitpid(launcher, 0)


def test_lease_not_pid_judges_a_container_sharing_this_hostname(registry: Registry) -> None:
    """Two dashboard containers with one hostname see different pids: a build whose lease
    names another pid namespace is judged by its lease, not by a pid that means nothing."""
    import socket
    from datetime import timedelta

    from core.registry import orphan_reason

    dead_pid = 2**22 + 4711  # above any pid_max: never a live process here
    request = builds.TrainRequest(recipe="nb-bow", backend="local", force=True)
    row = builds.submit(request, registry).version
    now = datetime.now(UTC)
    here = socket.gethostname()
    row = registry._update(
        row.id,
        status="running",
        worker_pid=dead_pid,
        worker_host=here,
        lease_holder=f"{here} pid {dead_pid} ns 1",  # no real namespace has inode 1
        lease_renewed_at=now,
        lease_expires_at=now + timedelta(seconds=60),
    )
    assert orphan_reason(row) is None, "its own container's pid, not ours to check"
    later = now + timedelta(seconds=61)
    assert orphan_reason(row, later) == (
        f"launcher on {here} stopped renewing at {now:%Y-%m-%d %H:%M:%S} UTC"
    )
    same_namespace = registry._update(row.id, lease_holder=builds.lease_holder())
    assert "pid" in (orphan_reason(same_namespace) or ""), "our own namespace: pid fast path"


@pytest.mark.sqlite_only
def test_a_sweep_keeps_the_lease_of_builds_waiting_for_a_slot(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep claims all its builds at once but runs them a few at a time: the waiting ones
    are renewed too, so another host never takes them for abandoned."""
    import threading

    from core import sweeps
    from core.registry import orphan_reason

    monkeypatch.setenv("BUILD_LEASE_S", "2")
    rows = [
        builds.submit(
            builds.TrainRequest(
                recipe="nb-bow", backend="local", force=True, fault=f"sleep:{s}", seed=s
            ),
            registry,
        ).version
        for s in (8, 1)
    ]
    runner = threading.Thread(
        target=sweeps.run_versions, args=([r.id for r in rows], registry), kwargs={"parallel": 1}
    )
    runner.start()
    try:
        wait_until(lambda: registry.get_by_id(rows[1].id).worker_pid, "the claim", timeout_s=30)
        registry._update(rows[1].id, worker_host=FOREIGN)  # judged by its lease only
        waited = 0
        while registry.get_by_id(rows[1].id).status == "queued":
            assert orphan_reason(registry.get_by_id(rows[1].id)) is None
            waited += 1
            time.sleep(0.5)
        assert waited >= 8, "the second build did not wait beyond its 2 s lease"
    finally:
        runner.join(timeout=180)
    assert [registry.get_by_id(r.id).status for r in rows] == ["ready", "ready"]


@pytest.mark.sqlite_only
def test_the_dashboard_ends_a_build_whose_lease_expired(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening any page runs recovery (at most every 10 s per server): a build on another
    host whose lease expired is failed with the launcher's host and last renewal."""
    from datetime import timedelta

    from streamlit.testing.v1 import AppTest

    from tests.helpers import ROOT
    from ui import common

    at = AppTest.from_file(str(ROOT / "pages" / "1_Build.py"), default_timeout=60)
    at.run()  # the server opens (and caches) the registry before the lease expires
    monkeypatch.setattr(common, "_last_recovery", {})  # as if the last pass was 10 s ago
    row = builds.submit(builds.TrainRequest(recipe="nb-bow", backend="local"), registry).version
    renewed = datetime.now(UTC) - timedelta(seconds=90)
    registry._update(
        row.id,
        status="running",
        worker_pid=2**22 + 4711,
        worker_host=FOREIGN,
        lease_holder=f"{FOREIGN} pid 4711 ns 1",
        lease_renewed_at=renewed,
        lease_expires_at=renewed + timedelta(seconds=60),
    )
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    ended = registry.get_by_id(row.id)
    assert ended.status == "failed", ended.status
    assert f"launcher on {FOREIGN} stopped renewing at {renewed:%Y-%m-%d %H:%M:%S} UTC" in (
        ended.error
    )
