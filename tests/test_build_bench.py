"""bench/build_bench.py: its report and that it rewrites only its own docs section."""

from __future__ import annotations

from pathlib import Path

from bench import build_bench

INFO = {
    "build_network": "host",
    "nproc": "2",
    "cpu": "test CPU",
    "memory": "1.0 GiB",
    "docker": "Docker Engine test",
    "python": "3.11",
    "date": "today",
    "load": "0.00",
    "load_end": "0.00",
}


def fake_results() -> dict[str, list[float]]:
    results = {
        name: [1.0, 2.0, 3.0]
        for name in (
            "cold",
            "rebuild",
            "warm_fit",
            "local_fit",
            "bare",
            "bare_cpu",
            "bare_threads",
            "load",
        )
    }
    results["warm"] = [3.0, 4.0, 5.0]
    results["local"] = [2.5, 3.5, 4.5]
    return results


def test_report_judges_targets_on_paired_differences() -> None:
    text = build_bench.report(fake_results(), INFO, 3, "`data`")
    assert text.startswith(build_bench.SECTION + "\n")
    assert "median of 3 runs" in text
    assert "warm − local = +0.50 s" in text
    assert "local − bare = +1.50 s" in text
    assert text.count("**met**") == 3
    assert "test CPU" in text and "Docker Engine test" in text


def test_write_section_replaces_only_its_own_section(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    build_bench.write_section(doc, build_bench.SECTION + "\n\nfirst\n")
    assert doc.read_text().startswith("# Benchmarks")
    other = "## Core (bench/core_bench.py)\n\ncore numbers\n"
    doc.write_text(doc.read_text() + "\n" + other)
    build_bench.write_section(doc, build_bench.SECTION + "\n\nsecond\n")
    text = doc.read_text()
    assert "second" in text and "first" not in text
    assert text.count(build_bench.SECTION) == 1
    assert other in text


def test_transfer_report_gives_the_paired_difference() -> None:
    from bench import transfer

    text = transfer.report({"archive": [2.0, 2.5, 3.0], "bind mount": [1.9, 2.6, 2.7]})
    assert "archive 2.50 s (2.00–3.00)" in text
    assert "bind mount 2.60 s (1.90–2.70)" in text
    assert "median +0.10 s (-0.10 to +0.30)" in text
