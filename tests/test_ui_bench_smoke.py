"""Smoke test: bench/ui_bench.py runs end to end on the sample (small sizes, no browser)."""

from __future__ import annotations

import re
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


@pytest.mark.slow
@pytest.mark.browser
def test_ui_bench_times_every_page_in_a_browser(lab: Path) -> None:
    """`--pages-only` opens each page in Chromium and waits for its key elements: a page
    whose elements the bench no longer recognises would time out here, not in a bench run."""
    from bench.ui_bench import BLANK_PAGE, PAGE_TARGETS

    before = DOC.read_bytes() if DOC.is_file() else None
    completed = run_bench(
        "ui_bench.py",
        "--pages-only",
        "--data",
        str(ROOT / "data" / "sample.json"),
        "--runs",
        "1",
        "--no-write",
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    out = completed.stdout
    assert out.startswith("## Dashboard pages in a browser (bench/ui_bench.py)"), out
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| ")][2:]
    assert [row[0].removeprefix("| ") for row in rows] == [*PAGE_TARGETS, BLANK_PAGE]
    timed = re.compile(r"^\d+(\.\d+)? m?s")
    assert all(timed.match(row[1]) and timed.match(row[2]) for row in rows), rows
    assert (DOC.read_bytes() if DOC.is_file() else None) == before
