"""The scoring thread's passes (core/serving/batching.py), with `score` replaced by a fake
that records what each pass got: queued calls for one version share a pass, a pass never
mixes versions or exceeds its size, a failing pass falls back to each call alone, and
the waiting window gathers calls that arrive just after the first.

Jobs are queued before the thread starts, so which calls share a pass is deterministic.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from core.serving import batching
from core.serving.batching import Batcher
from core.serving.cache import Served
from core.serving.scoring import PredictBody


class Pipeline:
    """Stands in for a fitted pipeline: its version is in every probability it gives."""

    def __init__(self, version: int) -> None:
        self.version = version


def served(version: int, pipeline: Pipeline | None = None) -> Served:
    return Served(
        version_id=version,
        version=version,
        model="raop",
        fingerprint=f"f{version}",
        artifact_sha256=f"a{version}",
        threshold=0.5,
        threshold_policy="f1",
        recipe="nb-bow",
        pipeline=pipeline or Pipeline(version),
    )


class FakeScore:
    """`core.predict.score`'s shape; a record titled 'poison' fails the whole call."""

    def __init__(self) -> None:
        self.passes: list[tuple[int, list[str]]] = []
        self.lock = threading.Lock()

    def __call__(self, pipeline: Pipeline, records: list[dict[str, Any]]) -> list[dict]:
        with self.lock:
            self.passes.append((pipeline.version, [r["title"] for r in records]))
        if any(r["title"] == "poison" for r in records):
            raise ValueError("this record cannot be scored")
        return [
            {
                "request_id": r["request_id"],
                "probability": pipeline.version / 10 + len(r["title"]) / 1000,
                "warnings": [],
                "unknown": [],
                "unknown_note": "",
                "defaults": {},
            }
            for r in records
        ]


@pytest.fixture
def fake_score(monkeypatch: pytest.MonkeyPatch) -> FakeScore:
    fake = FakeScore()
    monkeypatch.setattr(batching, "score", fake)
    return fake


def call(title: str, count: int = 1) -> tuple[PredictBody, list[dict[str, Any]]]:
    """A body and its records: one request, or a batch of `count` with the same title."""
    if count == 1:
        body = PredictBody.model_validate({"title": title, "mood": "x"})
    else:
        body = PredictBody.model_validate({"requests": [{"title": title}] * count})
    records = [{"request_id": f"request-{i}", "title": title} for i in range(count)]
    return body, records


async def queued_then_scored(batcher: Batcher, calls: list[tuple[Served, str, int]]) -> list[Any]:
    """Queue every call, then start the thread; each call's results or exception."""
    tasks = []
    for snapshot, title, count in calls:
        body, records = call(title, count)
        coroutine = batcher.results(snapshot, "champion", body, records, False)
        tasks.append(asyncio.create_task(coroutine))
    await asyncio.sleep(0.05)  # every task has queued its job
    batcher.start()
    try:
        return await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        batcher.stop()


def test_queued_calls_for_one_version_share_a_pass_and_get_their_own_results(
    fake_score: FakeScore,
) -> None:
    v1 = served(1)
    calls = [(v1, "a", 1), (v1, "bb", 3), (v1, "ccc", 1)]
    out = asyncio.run(queued_then_scored(Batcher(), calls))
    assert fake_score.passes == [(1, ["a", "bb", "bb", "bb", "ccc"])]
    assert [len(results) for results in out] == [1, 3, 1]
    assert out[0][0]["probability"] == pytest.approx(0.101)
    assert out[0][0]["unknown_fields"] == ["mood"] and out[1][0]["unknown_fields"] == []
    assert [r["probability"] for r in out[1]] == [pytest.approx(0.102)] * 3
    assert all(r["version"] == 1 and r["alias"] == "champion" for rs in out for r in rs)


def test_a_pass_never_mixes_versions_and_keeps_the_queue_order(fake_score: FakeScore) -> None:
    v1, v2 = served(1), served(2)
    v1_reloaded = served(1, Pipeline(1))  # same version row, another loaded pipeline
    calls = [(v1, "a", 1), (v2, "b", 1), (v1, "c", 1), (v1_reloaded, "d", 1), (v2, "e", 1)]
    out = asyncio.run(queued_then_scored(Batcher(), calls))
    assert fake_score.passes == [(1, ["a", "c"]), (2, ["b", "e"]), (1, ["d"])]
    versions = [results[0]["version"] for results in out]
    assert versions == [1, 2, 1, 1, 2]
    assert [round(rs[0]["probability"], 3) for rs in out] == [0.101, 0.201, 0.101, 0.101, 0.201]


def test_a_pass_holds_at_most_max_requests(fake_score: FakeScore) -> None:
    v1 = served(1)
    calls = [(v1, "a", 3), (v1, "b", 3), (v1, "c", 1), (v1, "d", 9)]
    asyncio.run(queued_then_scored(Batcher(max_rows=4), calls))
    sizes = [len(titles) for _, titles in fake_score.passes]
    assert sizes == [4, 3, 9]  # a then c; b; d alone (bigger than a pass, never split)
    assert fake_score.passes[0][1] == ["a", "a", "a", "c"]


def test_a_failing_call_does_not_fail_its_neighbours(fake_score: FakeScore) -> None:
    v1 = served(1)
    calls = [(v1, "a", 1), (v1, "poison", 1), (v1, "c", 2)]
    out = asyncio.run(queued_then_scored(Batcher(), calls))
    assert isinstance(out[1], ValueError)
    assert out[0][0]["probability"] == pytest.approx(0.101)
    assert [r["probability"] for r in out[2]] == [pytest.approx(0.101)] * 2
    assert fake_score.passes[0] == (1, ["a", "poison", "c", "c"])  # together, failed
    assert sorted(fake_score.passes[1:]) == [(1, ["a"]), (1, ["c", "c"]), (1, ["poison"])]


def test_the_wait_gathers_calls_arriving_just_after_the_first(fake_score: FakeScore) -> None:
    async def scenario(wait_s: float) -> None:
        batcher, v1 = Batcher(wait_s=wait_s), served(1)
        batcher.start()
        try:
            first = asyncio.create_task(batcher.results(v1, None, *call("a"), False))
            await asyncio.sleep(0.05)
            second = batcher.results(v1, None, *call("b"), False)
            await asyncio.gather(first, second)
        finally:
            batcher.stop()

    asyncio.run(scenario(wait_s=1.0))
    assert fake_score.passes == [(1, ["a", "b"])]
    fake_score.passes.clear()
    asyncio.run(scenario(wait_s=0.0))
    assert fake_score.passes == [(1, ["a"]), (1, ["b"])]


def test_stop_scores_what_is_queued_and_then_refuses(fake_score: FakeScore) -> None:
    async def scenario() -> None:
        batcher = Batcher()
        pending = asyncio.create_task(batcher.results(served(1), None, *call("a"), False))
        await asyncio.sleep(0.05)
        batcher.start()
        await asyncio.to_thread(batcher.stop)
        assert (await pending)[0]["version"] == 1
        with pytest.raises(RuntimeError, match="stopping"):
            await batcher.results(served(1), None, *call("b"), False)

    asyncio.run(scenario())
