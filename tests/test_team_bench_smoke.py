"""Smoke test: bench/team_bench.py --size smoke runs end to end on real servers and prints
its tables (listing on SQLite and PostgreSQL, train with a local folder and an S3 store)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.helpers import run_bench

pytestmark = [pytest.mark.postgres, pytest.mark.s3]
ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
SECONDS = r"[\d.]+ m?s"  # 1.03 s, 467 ms
LISTING = re.compile(
    rf"^\| (?P<backend>SQLite|PostgreSQL) \| (?P<count>[\d,]+) \| (?P<list>{SECONDS}) \| "
    rf"(?P<list_ratio>[^|]+) \| (?P<page>{SECONDS}) \| (?P<page_ratio>[^|]+) \|$"
)
STORES = ("local folder", "S3 (rclone, loopback)")
STORE_CALLS = ("fresh interpreter:", "`put_bytes` of a new", "canonical dataset to the worker")


def _doc_state() -> bytes | None:
    return DOC.read_bytes() if DOC.is_file() else None


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return not Path(f"/proc/{pid}").exists()


@pytest.mark.slow
def test_team_bench_smoke_prints_every_row_and_stops_its_servers(lab: Path) -> None:
    before = _doc_state()
    registry = ROOT / "registry.db"
    registry_before = registry.stat().st_mtime if registry.exists() else None
    completed = run_bench("team_bench.py", "--size", "smoke", "--no-write", timeout=300)
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    out = completed.stdout
    assert out.startswith("## Team set-up: PostgreSQL and S3 (bench/team_bench.py)"), out[:500]

    listing = {}
    for line in out.splitlines():
        found = LISTING.match(line)
        if found:
            listing[(found["backend"], int(found["count"].replace(",", "")))] = found
    expected = {(b, n) for b in ("SQLite", "PostgreSQL") for n in (200, 500)}
    assert set(listing) == expected, out
    assert listing[("SQLite", 200)]["list_ratio"].strip() == "1.00× (baseline)"
    assert listing[("SQLite", 200)]["page_ratio"].strip() == "1.00× (baseline)"
    for key in expected - {("SQLite", 200)}:
        assert re.fullmatch(r"[\d.]+×", listing[key]["list_ratio"].strip()), key
        assert re.fullmatch(r"[\d.]+×", listing[key]["page_ratio"].strip()), key

    rows = [line for line in out.splitlines() if line.startswith("| ")]
    for store in STORES:
        assert any(re.match(rf"^\| {re.escape(store)} \| {SECONDS} \|", r) for r in rows), out
    difference = next(r for r in rows if r.startswith("| S3 − local"))
    assert re.search(
        rf"\| [+-]{SECONDS} \([^)]*\), target ≤ \+0\.5 s: (met|\*\*missed\*\*) \|", difference
    ), difference
    assert "the same request again (reused" in out
    for call in STORE_CALLS:
        assert any(call in r for r in rows), (call, out)
    assert "Targets:" in out
    assert "The S3 store adds at most 0.5 s" in out

    # every server the bench started is stopped (their pids are logged on stderr)
    pids = re.search(r"PostgreSQL pid (\d+), rclone pid (\d+)", completed.stderr)
    assert pids, completed.stderr[-2000:]
    assert all(_gone(int(pid)) for pid in pids.groups()), pids.groups()

    assert _doc_state() == before, "--no-write must leave docs/benchmarks.md alone"
    registry_after = registry.stat().st_mtime if registry.exists() else None
    assert registry_after == registry_before, "the bench must not touch the checkout's registry"
