"""Latency statistics that can be merged across processes, hosts and minutes.

A latency histogram has fixed, geometrically growing buckets (about 10% wide from 0.1 ms
to over a minute), stored sparse as {bucket index: count}. Histograms from any number of
rows add up exactly; a quantile is read as the upper edge of the bucket where the count
reaches it, so it errs high by at most one bucket width (10%).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

FIRST_EDGE_MS = 0.1
GROWTH = 1.1
BUCKETS = 150  # 0.1 ms * 1.1**149 is about 150 s; slower calls land in the last bucket


def bucket_of(ms: float) -> int:
    """The index of the bucket holding a latency in milliseconds."""
    if ms <= FIRST_EDGE_MS:
        return 0
    return min(BUCKETS - 1, math.ceil(math.log(ms / FIRST_EDGE_MS, GROWTH)))


def upper_edge(index: int) -> float:
    return FIRST_EDGE_MS * GROWTH**index


def histogram(latencies_ms: Iterable[float]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for ms in latencies_ms:
        key = str(bucket_of(ms))
        counts[key] = counts.get(key, 0) + 1
    return counts


def merge(histograms: Iterable[dict[str, int] | None]) -> dict[str, int]:
    total: dict[str, int] = {}
    for counts in histograms:
        for key, n in (counts or {}).items():
            total[key] = total.get(key, 0) + int(n)
    return total


def histogram_quantile(counts: dict[str, int], q: float) -> float | None:
    """The q-quantile (0..1) in ms of a histogram; None when it is empty."""
    n = sum(counts.values())
    if n == 0:
        return None
    rank, seen = q * n, 0
    for index in sorted(int(k) for k in counts):
        seen += counts[str(index)]
        if seen >= rank:
            return round(upper_edge(index), 3)
    return round(upper_edge(max(int(k) for k in counts)), 3)


def exact_quantile(sorted_ms: list[float], q: float) -> float | None:
    """The q-quantile of sorted latencies (nearest rank); None when there are none."""
    if not sorted_ms:
        return None
    return sorted_ms[min(len(sorted_ms) - 1, max(0, math.ceil(q * len(sorted_ms)) - 1))]
