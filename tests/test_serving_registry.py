"""The serving aggregates in the registry on SQLite and PostgreSQL: rows keyed by minute,
version, host and process are replaced, never doubled; alias pointers in one query; what
the Live panel, Versions and the model card make of them (merged latency histograms)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.registry import Registry
from core.serving import stats
from core.serving.live import history, live, served_summary
from tests.test_registry import add_version

pytestmark = pytest.mark.both_backends
NOW = datetime(2026, 12, 3, 14, 30, tzinfo=UTC)


def minute_row(version_id: int, minute: datetime, host: str, **values) -> dict:
    latencies = values.pop("latencies", [5.0] * 10)
    row = {
        "version_id": version_id,
        "minute": minute,
        "host": host,
        "pid": values.pop("pid", 1),
        "aliases": "champion",
        "calls": len(latencies),
        "requests": len(latencies),
        "errors": 0,
        "out_of_range": 0,
        "score_sum": 0.25 * len(latencies),
        "latency_p50_ms": stats.exact_quantile(sorted(latencies), 0.5),
        "latency_p99_ms": stats.exact_quantile(sorted(latencies), 0.99),
        "latency_max_ms": max(latencies),
        "latency_buckets": stats.histogram(latencies),
    }
    return row | values


def test_aggregates_are_replaced_per_key_and_read_back(registry: Registry) -> None:
    v1 = add_version(registry)
    minute = NOW.replace(second=0, microsecond=0)
    registry.record_serving([minute_row(v1.id, minute, "a", latencies=[1.0] * 4)])
    registry.record_serving([minute_row(v1.id, minute, "a", latencies=[1.0] * 9)])
    registry.record_serving([minute_row(v1.id, minute, "a", pid=2)])
    rows = registry.served_minutes("raop")
    assert sorted((m.pid, m.requests) for m in rows) == [(1, 9), (2, 10)]
    assert rows[0].minute == minute and rows[0].latency_buckets


def test_the_live_panel_sentence_history_and_card_summary(registry: Registry) -> None:
    v1, v2 = add_version(registry), add_version(registry)
    registry.promote(v1.version, "champion")
    registry.promote(v2.version, "champion")
    earlier = NOW - timedelta(minutes=20)
    slow = [5.0] * 98 + [40.0, 40.0]
    registry.record_serving(
        [
            minute_row(v1.id, earlier, "a"),
            minute_row(v2.id, NOW - timedelta(minutes=5), "a", latencies=slow, out_of_range=3),
            minute_row(v2.id, NOW - timedelta(minutes=4), "b"),
            minute_row(v2.id, NOW - timedelta(hours=3), "a"),  # outside the hour
        ]
    )
    (entry,) = live(registry, "raop", now=NOW)
    assert entry.version == v2.version and entry.served.requests == 110
    words = entry.sentence()
    assert words.startswith(f"champion v{v2.version} — served 110 requests in the last hour")
    assert "from 2 hosts" in words and "3% out of range" in words
    assert "p99 41 ms" in words  # 40 ms lands in the bucket whose upper edge is 40.5 ms
    assert f"v{v1.version} answered until {earlier + timedelta(minutes=1):%H:%M} UTC" in words
    table = history(registry, "raop", v2.id)
    assert {r["host"] for r in table} == {"a", "b"} and sum(r["requests"] for r in table) == 120
    card = served_summary(registry, "raop", v2.id)
    assert card["hosts"] == ["a", "b"] and card["aliases"] == ["champion"]
    assert served_summary(registry, "raop", add_version(registry).id) is None


def test_alias_pointers_name_the_version_in_one_query(registry: Registry) -> None:
    v1, v2 = add_version(registry), add_version(registry)
    registry.promote(v1.version, "champion")
    registry.promote(v2.version, "challenger")
    pointers = {p.alias: p.version for p in registry.alias_pointers("raop")}
    assert pointers == {"challenger": v2.version, "champion": v1.version}


def test_histogram_quantiles_are_within_one_bucket() -> None:
    values = [0.05, 0.5, 3.0, 7.5, 12.0, 250.0, 10_000.0]
    counts = stats.histogram(values)
    for q in (0.1, 0.5, 0.9, 1.0):
        exact = stats.exact_quantile(sorted(values), q)
        assert exact <= stats.histogram_quantile(counts, q) <= max(exact * 1.1, 0.1) + 1e-9
    assert stats.histogram_quantile({}, 0.5) is None
