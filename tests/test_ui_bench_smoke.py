"""Smoke test: bench/ui_bench.py runs end to end on the sample (small sizes, no browser)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_bench

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"


@pytest.mark.slow
def test_ui_bench_runs_on_the_sample_without_writing_docs(lab: Path) -> None:
    before = DOC.read_bytes() if DOC.is_file() else None
    completed = run_bench(
        "ui_bench.py",
        "--data",
        str(ROOT / "data" / "sample.json"),
        "--runs",
        "1",
        "--versions",
        "60",
        "--calls",
        "5",
        "--no-browser",
        "--no-write",
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    out = completed.stdout
    assert out.startswith("## Dashboard (bench/ui_bench.py)")
    for needle in ("Compare, 4 versions", "Versions, 60 versions", "submit → probability"):
        assert needle in out, out
    assert "Dashboard memory, 4 models cached" in out
    assert (DOC.read_bytes() if DOC.is_file() else None) == before
