"""Smoke test: bench/core_bench.py --scale smoke runs end to end and prints its table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import run_bench

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
SECONDS = re.compile(r"^\d+(\.\d+)? (ms|s)\b")
MEGABYTES = re.compile(r"^\d+ MB\b")
ROWS = (
    "floor: `python -c pass`",
    'floor: `python -c "import sqlalchemy.orm"`',
    "peer: MLflow",
    "`python -m core --help`",
    "`list --json`, 2 versions",
    "`show 2` (2 versions)",
    "`list --json`, 500 versions",
    "`list --json`, 100 versions",
    "`check`, 500 versions",
    "`train tfidf-meta-logreg` local, 1× data",
    "peak memory of the `train` process tree (parent + worker), 1× data",
)


def _doc_state() -> tuple[bool, bytes]:
    return (True, DOC.read_bytes()) if DOC.is_file() else (False, b"")


@pytest.mark.slow
def test_scale_bench_smoke_prints_every_row_with_numbers(lab: Path) -> None:
    before = _doc_state()
    completed = run_bench("core_bench.py", "--scale", "smoke", "--no-write", timeout=300)
    assert completed.returncode == 0, completed.stderr[-4000:]
    out = completed.stdout
    assert out.startswith("## Scale (bench/core_bench.py --scale full)"), out[:500]
    assert "Size `smoke`" in out and "load average" in out

    cells = {}
    for line in out.splitlines():
        parts = [c.strip() for c in line.strip().strip("|").split(" | ")]
        label = next((r for r in ROWS if parts[0].startswith(r)), None)
        if line.startswith("| ") and label:
            cells[label] = parts
    assert set(cells) == set(ROWS), sorted(cells)

    for label, row in cells.items():
        _, wall, cpu, rss, _peer, ratio, _target, result = row
        if label.startswith("peer: MLflow") and wall == "not installed":
            continue
        assert SECONDS.match(wall) and SECONDS.match(cpu), row
        assert MEGABYTES.match(rss), row
        assert result in {"met", "**not met**", "—"}, row
        if label.startswith(("`train", "peak memory")):
            assert re.match(r"\d+\.\d\d×", ratio), row
    assert "Result: " in out
    assert _doc_state() == before, "--no-write must leave docs/benchmarks.md alone"
