"""What serving looked like, for Home's Live panel, Versions and the model card.

Read from the registry's per-minute aggregates only; imports no web stack. Quantiles over
many rows come from their merged latency histograms (`core.serving.stats`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from core.registry import Registry
from core.registry.serving import ServedMinute
from core.schema import utcnow
from core.serving import stats

WINDOW = timedelta(hours=1)


@dataclass
class Totals:
    """Aggregates summed over some rows."""

    calls: int = 0
    requests: int = 0
    errors: int = 0
    out_of_range: int = 0
    score_sum: float = 0.0
    hosts: set[str] = field(default_factory=set)
    first: datetime | None = None
    last: datetime | None = None
    histogram: dict[str, int] = field(default_factory=dict)

    @property
    def p99_ms(self) -> float | None:
        return stats.histogram_quantile(self.histogram, 0.99)

    @property
    def p50_ms(self) -> float | None:
        return stats.histogram_quantile(self.histogram, 0.5)

    @property
    def out_of_range_share(self) -> float | None:
        return self.out_of_range / self.requests if self.requests else None

    @property
    def mean_score(self) -> float | None:
        return self.score_sum / self.requests if self.requests else None

    @property
    def until(self) -> datetime | None:
        """The end of the last minute with an answer."""
        return self.last + timedelta(minutes=1) if self.last else None


def totals(rows: Iterable[ServedMinute]) -> Totals:
    out = Totals()
    for m in rows:
        out.calls += m.calls
        out.requests += m.requests
        out.errors += m.errors
        out.out_of_range += m.out_of_range
        out.score_sum += m.score_sum
        out.hosts.add(m.host)
        out.first = m.minute if out.first is None else min(out.first, m.minute)
        out.last = m.minute if out.last is None else max(out.last, m.minute)
        out.histogram = stats.merge([out.histogram, m.latency_buckets])
    return out


@dataclass
class AliasLive:
    """One alias: the version it names, what that version answered in the window, and the
    other versions that answered as this alias in the window."""

    alias: str
    version: int
    served: Totals
    before: list[tuple[int, Totals]]

    def sentence(self) -> str:
        words = f"{self.alias} v{self.version} — " + _served_words(self.served)
        for version, t in self.before:
            words += f"; v{version} answered until {t.until:%H:%M} UTC" if t.until else ""
        return words


def _served_words(t: Totals) -> str:
    if not t.calls:
        return "not served in the last hour"
    hosts = f"{len(t.hosts)} host" + ("s" if len(t.hosts) != 1 else "")
    words = f"served {t.requests:,} requests in the last hour from {hosts}"
    if t.p99_ms is not None:
        words += f", p99 {_ms(t.p99_ms)}"
    if t.out_of_range_share is not None:
        words += f", {t.out_of_range_share:.0%} out of range"
    if t.errors:
        words += f", {t.errors:,} failed calls"
    return words


def _ms(value: float) -> str:
    return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


def live(registry: Registry, model: str, now: datetime | None = None) -> list[AliasLive]:
    """Every alias of `model` and what was served in the last hour."""
    since = (now or utcnow()) - WINDOW
    rows = registry.served_minutes(model, since=since)
    out = []
    for pointer in registry.alias_pointers(model):
        mine = [m for m in rows if m.version == pointer.version]
        earlier: dict[int, list[ServedMinute]] = {}
        for m in rows:
            if m.version != pointer.version and pointer.alias in (m.aliases or "").split(","):
                earlier.setdefault(m.version, []).append(m)
        before = sorted(((v, totals(ms)) for v, ms in earlier.items()), key=_last, reverse=True)
        out.append(AliasLive(pointer.alias, pointer.version, totals(mine), before))
    return out


def _last(item: tuple[int, Totals]) -> datetime:
    return item[1].last or datetime.min.replace(tzinfo=utcnow().tzinfo)


def history(registry: Registry, model: str, version_id: int) -> list[dict[str, Any]]:
    """A version's serving history: one row per hour and host, newest first."""
    groups: dict[tuple[datetime, str], list[ServedMinute]] = {}
    for m in registry.served_minutes(model, version_id=version_id):
        hour = m.minute.replace(minute=0, second=0, microsecond=0)
        groups.setdefault((hour, m.host), []).append(m)
    out = []
    for (hour, host), rows in sorted(groups.items(), key=lambda kv: kv[0], reverse=True):
        t = totals(rows)
        out.append(
            {
                "hour (UTC)": hour,
                "host": host,
                "as": ", ".join(
                    sorted({a for m in rows for a in (m.aliases or "").split(",") if a})
                ),
                "requests": t.requests,
                "calls": t.calls,
                "errors": t.errors,
                "p50 ms": t.p50_ms,
                "p99 ms": t.p99_ms,
                "out of range": t.out_of_range_share,
                "mean score": t.mean_score,
            }
        )
    return out


def served_summary(registry: Registry, model: str, version_id: int) -> dict[str, Any] | None:
    """Where and when a version was served (for its model card); None if never."""
    rows = registry.served_minutes(model, version_id=version_id)
    if not rows:
        return None
    t = totals(rows)
    aliases = sorted({a for m in rows for a in (m.aliases or "").split(",") if a})
    return {
        "requests": t.requests,
        "calls": t.calls,
        "errors": t.errors,
        "hosts": sorted(t.hosts),
        "aliases": aliases,
        "first": t.first.isoformat() if t.first else None,
        "until": t.until.isoformat() if t.until else None,
        "p99_ms": t.p99_ms,
        "out_of_range_share": t.out_of_range_share,
    }
