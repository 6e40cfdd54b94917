"""Adaptive micro-batching: concurrent calls for the same version scored in one pass.

Each worker process has one scoring thread. A call (one request or a batch) becomes a job
in a queue and its coroutine awaits a future, so the event loop keeps reading, validating
and answering other calls while the thread scores. When the thread is free it takes the
oldest job and every queued job for the same snapshot (`Served`: the same version row and
loaded pipeline), up to `max_rows` requests, waiting at most `wait_s` for more; it calls
`core.predict.score` once on all their records and hands each job back its own results,
built with its own alias and unknown fields. Jobs for another version stay queued, in
order, for the next pass: a pass never mixes versions, and each response names the
version that scored it.

Every transformer and estimator the recipes use works row by row, so a request scores the
same in a pass with others as alone (tests/test_serving.py compares both under load). If a
pass fails, each of its jobs is scored alone, so one bad call cannot fail its neighbours.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Histogram

from core.predict import score
from core.serving import scoring
from core.serving.cache import Served

log = logging.getLogger("core.serving")
BATCH_REQUESTS = Histogram(
    "altruism_serve_batch_requests",
    "Requests scored together in one pass of the scoring thread",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000),
)


@dataclass
class Job:
    """One call waiting to be scored: its snapshot, records and the future to settle."""

    served: Served
    alias: str | None
    body: scoring.PredictBody
    records: list[dict[str, Any]]
    explain: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future = field(repr=False)

    @property
    def key(self) -> tuple[int, int]:
        """Jobs with the same key may share a pass: the same version and pipeline."""
        return self.served.version_id, id(self.served.pipeline)


class Batcher:
    """The scoring thread of one worker and its queue of jobs."""

    def __init__(self, max_rows: int = 256, wait_s: float = 0.0) -> None:
        self.max_rows, self.wait_s = max(1, max_rows), max(0.0, wait_s)
        self._pending: deque[Job] = deque()
        self._changed = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="serving-scorer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Score what is queued, then end the thread."""
        with self._changed:
            self._stopping = True
            self._changed.notify()
        if self._thread is not None:
            self._thread.join(timeout=30)

    async def results(
        self,
        served: Served,
        alias: str | None,
        body: scoring.PredictBody,
        records: list[dict[str, Any]],
        explain: bool,
    ) -> list[dict[str, Any]]:
        """The call's results (as `scoring.results` gives them), scored by the thread."""
        loop = asyncio.get_running_loop()
        job = Job(served, alias, body, records, explain, loop, loop.create_future())
        with self._changed:
            if self._stopping:
                raise RuntimeError("the service is stopping")
            self._pending.append(job)
            self._changed.notify()
        return await job.future

    # --- the scoring thread --------------------------------------------------------------
    def _run(self) -> None:
        while (jobs := self._take()) is not None:
            BATCH_REQUESTS.observe(sum(len(j.records) for j in jobs))
            for job, outcome in zip(jobs, _score_jobs(jobs), strict=True):
                try:
                    job.loop.call_soon_threadsafe(_settle, job.future, outcome)
                except RuntimeError:  # its event loop is closed: nobody is waiting
                    log.info("a scored call's event loop has closed")

    def _take(self) -> list[Job] | None:
        """The next pass's jobs (None once stopping with nothing left)."""
        with self._changed:
            while not self._pending and not self._stopping:
                self._changed.wait()
            if not self._pending:
                return None
            if self.wait_s:
                self._wait_for_more()
            return self._same_version()

    def _wait_for_more(self) -> None:
        """Up to `wait_s` for more requests to join (the lock is held by the caller)."""
        deadline = time.monotonic() + self.wait_s
        while sum(len(j.records) for j in self._pending) < self.max_rows:
            left = deadline - time.monotonic()
            if left <= 0 or self._stopping:
                return
            self._changed.wait(left)

    def _same_version(self) -> list[Job]:
        """The oldest job and the queued jobs sharing its key, within `max_rows`; the rest
        stay queued in order (the lock is held by the caller)."""
        first = self._pending.popleft()
        taken, kept, rows = [first], deque(), len(first.records)
        for job in self._pending:
            if job.key == first.key and rows + len(job.records) <= self.max_rows:
                taken.append(job)
                rows += len(job.records)
            else:
                kept.append(job)
        self._pending = kept
        return taken


def _score_jobs(jobs: list[Job]) -> list[list[dict[str, Any]] | BaseException]:
    """Each job's results from one `score` call; each job alone if that call fails."""
    if len(jobs) > 1:
        try:
            scored = score(jobs[0].served.pipeline, [r for j in jobs for r in j.records])
        except Exception as exc:
            log.info("a pass of %d calls failed (%s); scoring each alone", len(jobs), exc)
        else:
            return _split(jobs, scored)
    return [_alone(job) for job in jobs]


def _split(
    jobs: list[Job], scored: list[dict[str, Any]]
) -> list[list[dict[str, Any]] | BaseException]:
    out: list[list[dict[str, Any]] | BaseException] = []
    start = 0
    for job in jobs:
        mine = scored[start : start + len(job.records)]
        start += len(job.records)
        try:
            out.append(
                scoring.annotated(job.served, job.alias, job.body, job.records, mine, job.explain)
            )
        except Exception as exc:  # an explanation that fails fails its own call only
            out.append(exc)
    return out


def _alone(job: Job) -> list[dict[str, Any]] | BaseException:
    try:
        scored = score(job.served.pipeline, job.records)
        return scoring.annotated(job.served, job.alias, job.body, job.records, scored, job.explain)
    except Exception as exc:
        return exc


def _settle(future: asyncio.Future, outcome: list[dict[str, Any]] | BaseException) -> None:
    """On the event loop: hand the outcome to the waiting call (unless it gave up)."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
