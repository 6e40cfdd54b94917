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


def _cell(rps: float, p99_ms: float) -> dict:
    return {"rps": rps, "p50_ms": p99_ms / 2, "p99_ms": p99_ms, "non2xx": 0, "socket_errors": 0}


def test_serve_bench_says_which_targets_are_met() -> None:
    """Issue 24's verdicts from a run's medians: 2x MLflow with as many workers at each
    connection count, p99 at 8 connections with 2 workers, a batch of 100 per call."""
    from bench.serve_bench import targets

    def server(name: str, rps8: float, rps32: float, p99: float, batch_ms: float) -> dict:
        batch = {**_cell(10, batch_ms * 2), "p50_ms": batch_ms}
        return {"name": name, 8: _cell(rps8, p99), 32: _cell(rps32, 90), "batch": batch}

    lines = targets(
        [
            server("core serve, 1 worker", 400, 500, 40, 45),
            server("core serve, 2 workers", 300, 400, 60, 55),
            server("mlflow models serve, 1 worker", 100, 300, 40, 20),
            server("mlflow models serve, 2 workers", 150, 100, 40, 20),
        ]
    )
    assert lines[2:] == [
        "- 1 worker, 8 connections: 4.00x MLflow's throughput (target ≥ 2x): ✅ met",
        "- 1 worker, 32 connections: 1.67x MLflow's throughput (target ≥ 2x): ❌ missed",
        "- 2 workers, 8 connections: 2.00x MLflow's throughput (target ≥ 2x): ✅ met",
        "- 2 workers, 32 connections: 4.00x MLflow's throughput (target ≥ 2x): ✅ met",
        "- p99 at 8 connections, 2 workers: 60.0 ms (target ≤ 50 ms): ❌ missed",
        "- a batch of 100 in one call, 1 worker: p50 45.0 ms (target ≤ 50 ms): ✅ met",
        "- a batch of 100 in one call, 2 workers: p50 55.0 ms (target ≤ 50 ms): ❌ missed",
    ]
    without_mlflow = targets([server("core serve, 2 workers", 300, 400, 50, 50)])
    assert without_mlflow[2:] == [
        "- p99 at 8 connections, 2 workers: 50.0 ms (target ≤ 50 ms): ✅ met",
        "- a batch of 100 in one call, 2 workers: p50 50.0 ms (target ≤ 50 ms): ✅ met",
    ]
