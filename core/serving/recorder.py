"""What the service served: Prometheus metrics and per-minute aggregates in the registry.

Each process keeps the current minutes in memory, keyed by (minute, version), and writes
them to `serving_aggregates` every `flush_s` seconds (rewriting the minute's row with its
totals so far) and at shutdown; a minute that has ended is dropped from memory once written.
With several uvicorn workers, Prometheus metrics use prometheus-client's multiprocess mode
(`PROMETHEUS_MULTIPROC_DIR`, set by `core.serving.run` before the workers start).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from core.registry import Registry
from core.serving import stats
from core.serving.cache import Served

log = logging.getLogger("core.serving")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

CALLS = Counter(
    "altruism_serve_requests", "Prediction calls answered", ["version", "alias", "code"]
)
PREDICTIONS = Counter("altruism_serve_predictions", "Requests scored", ["version"])
ERRORS = Counter("altruism_serve_errors", "Prediction calls that failed", ["version", "code"])
OUT_OF_RANGE = Counter(
    "altruism_serve_out_of_range", "Requests with an input outside the training range", ["version"]
)
LATENCY = Histogram(
    "altruism_serve_latency_seconds", "Time to answer a call", ["version"], buckets=LATENCY_BUCKETS
)


def metrics_text() -> bytes:
    """The Prometheus exposition of this process, or of all workers in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(DEFAULT_REGISTRY)


def minute_of(moment: float) -> datetime:
    return datetime.fromtimestamp(moment - moment % 60, UTC)


@dataclass
class _Minute:
    aliases: set[str] = field(default_factory=set)
    calls: int = 0
    requests: int = 0
    errors: int = 0
    out_of_range: int = 0
    score_sum: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms)
        return {
            "aliases": ",".join(sorted(self.aliases))[:300] or None,
            "calls": self.calls,
            "requests": self.requests,
            "errors": self.errors,
            "out_of_range": self.out_of_range,
            "score_sum": self.score_sum,
            "latency_p50_ms": stats.exact_quantile(ordered, 0.5),
            "latency_p99_ms": stats.exact_quantile(ordered, 0.99),
            "latency_max_ms": ordered[-1] if ordered else None,
            "latency_buckets": stats.histogram(ordered),
        }


@dataclass(frozen=True)
class Outcome:
    """One answered call: what the recorder needs to know about it."""

    served: Served | None
    alias: str | None
    code: int
    seconds: float
    probabilities: list[float] = field(default_factory=list)
    out_of_range: int = 0


class Recorder:
    """Counts calls into Prometheus and into per-minute rows written to the registry."""

    def __init__(
        self, registry: Registry, host: str, flush_s: float, request_log: Path | None
    ) -> None:
        self.registry, self.host, self.flush_s = registry, host, flush_s
        self.request_log = request_log
        self.pid = os.getpid()
        self._minutes: dict[tuple[datetime, int], _Minute] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.pid = os.getpid()
        self._thread = threading.Thread(target=self._loop, name="serving-recorder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_s):
            try:
                self.flush()
            except Exception as exc:  # the registry may be briefly away; try again later
                log.warning("writing serving aggregates failed: %s", exc)

    def observe(self, outcome: Outcome) -> None:
        version = str(outcome.served.version) if outcome.served else "none"
        CALLS.labels(version, outcome.alias or "", str(outcome.code)).inc()
        LATENCY.labels(version).observe(outcome.seconds)
        if outcome.code >= 400:
            ERRORS.labels(version, str(outcome.code)).inc()
        else:
            PREDICTIONS.labels(version).inc(len(outcome.probabilities))
            if outcome.out_of_range:
                OUT_OF_RANGE.labels(version).inc(outcome.out_of_range)
        if outcome.served is not None:
            self._count(outcome)

    def _count(self, outcome: Outcome) -> None:
        assert outcome.served is not None
        key = (minute_of(time.time()), outcome.served.version_id)
        with self._lock:
            minute = self._minutes.setdefault(key, _Minute())
            if outcome.alias:
                minute.aliases.add(outcome.alias)
            minute.calls += 1
            minute.latencies_ms.append(outcome.seconds * 1000)
            if outcome.code >= 400:
                minute.errors += 1
                return
            minute.requests += len(outcome.probabilities)
            minute.out_of_range += outcome.out_of_range
            minute.score_sum += sum(outcome.probabilities)

    def flush(self) -> None:
        """Write every minute in memory; forget the minutes that have ended."""
        current = minute_of(time.time())
        with self._lock:
            rows = [
                {"version_id": vid, "minute": m, "host": self.host, "pid": self.pid, **v.row()}
                for (m, vid), v in self._minutes.items()
            ]
            ended = [key for key in self._minutes if key[0] < current]
        self.registry.record_serving(rows)
        with self._lock:
            for key in ended:
                self._minutes.pop(key, None)

    def log_requests(
        self, served: Served, alias: str | None, items: list[Any], results: list[dict[str, Any]]
    ) -> None:
        """Append raw requests and their scores (only with SERVE_LOG_REQUESTS=1)."""
        if self.request_log is None:
            return
        now = datetime.now(UTC).isoformat()
        lines = [
            json.dumps(
                {
                    "time": now,
                    "version": served.version,
                    "alias": alias,
                    "request": item.model_dump(),
                    "probability": result["probability"],
                }
            )
            for item, result in zip(items, results, strict=True)
        ]
        with open(self.request_log, "a", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
