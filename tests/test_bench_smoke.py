"""Smoke test: bench/core_bench.py runs end to end on the sample and prints its table."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_bench

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
RECIPES = ("nb-bow", "tfidf-logreg", "tfidf-meta-logreg")


def _doc_state() -> tuple[bool, bytes]:
    return (True, DOC.read_bytes()) if DOC.is_file() else (False, b"")


@pytest.mark.slow
def test_core_bench_runs_on_the_sample_without_writing_docs(lab: Path) -> None:
    before = _doc_state()
    registry_before = (
        (ROOT / "registry.db").stat().st_mtime if (ROOT / "registry.db").exists() else None
    )
    completed = run_bench(
        "core_bench.py",
        "--data",
        str(ROOT / "data" / "sample.json"),
        "--repeats",
        "1",
        "--calls",
        "50",
        "--warmup",
        "0",
        "--no-write",
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    out = completed.stdout
    assert "## Core (bench/core_bench.py)" in out
    table_rows = [line for line in out.splitlines() if line.startswith("| `")]
    for recipe in RECIPES:
        assert any(row.startswith(f"| `{recipe}` |") for row in table_rows), out
    assert "Targets:" in out
    assert _doc_state() == before, "--no-write must leave docs/benchmarks.md alone"
    registry_after = (
        (ROOT / "registry.db").stat().st_mtime if (ROOT / "registry.db").exists() else None
    )
    assert registry_after == registry_before, "the bench must not touch the checkout's registry"
