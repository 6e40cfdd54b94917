"""`python -m core serve` against a real SQLite registry with two ready versions: the alias
moves under concurrent load with no failed request, metrics and registry aggregates count
what was served, bad input is named, big bodies refused, tokens required beyond loopback;
the Live panel (AppTest and a browser), Versions and the model card show what was served;
the Dockerfile's serve stage serves the same registry (marker `docker`).

The registry (two local builds on the bundled sample) and one server with two workers are
made once for the module; the server is stopped by its pid.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from core import builds
from core.registry import Registry
from core.schema import READY
from tests.helpers import ROOT, build_serve_image, render_page, run_cli, use_lab, wait_until

BODY = {"title": "Broke student, payday Friday", "text": "Lost my job, fridge is empty."}
MAX_BODY = 200_000


@dataclass
class Server:
    url: str
    registry_url: str
    home: Path
    process: subprocess.Popen

    def registry(self) -> Registry:
        return Registry(self.registry_url)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_versions(home: Path) -> None:
    """v1 nb-bow and v2 tfidf-meta-logreg (it reads requester numbers) on the bundled
    sample; v1 is the champion."""
    with pytest.MonkeyPatch.context() as mp:
        use_lab(mp.setenv, home)
        registry = Registry()
        for recipe in ("nb-bow", "tfidf-meta-logreg"):
            request = builds.TrainRequest(recipe=recipe, backend="local", force=True)
            row, _ = builds.train(request, registry)
            assert row.status == READY, row.error
        registry.promote(1, "champion")
        registry.engine.dispose()


def start_server(home: Path, workers: int, **extra: str) -> Server:
    port = free_port()
    env = {
        **os.environ,
        "REGISTRY_URL": f"sqlite:///{home / 'registry.db'}",
        "ARTIFACT_ROOT": str(home / "artifacts"),
        "LOG_ROOT": str(home / "logs"),
        "SERVE_POLL_SECONDS": "0.25",
        "SERVE_FLUSH_SECONDS": "0.5",
        "SERVE_MAX_BODY_BYTES": str(MAX_BODY),
        **extra,
    }
    command = [sys.executable, "-m", "core", "serve", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--workers", str(workers)], cwd=ROOT, env=env, start_new_session=True
    )
    server = Server(f"http://127.0.0.1:{port}", env["REGISTRY_URL"], home, process)
    wait_until(lambda: _ready(server), "the service to be ready", timeout_s=90, poll_s=0.2)
    return server


def _ready(server: Server) -> bool:
    assert server.process.poll() is None, "serve exited"
    try:
        return httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (uvicorn and its workers), by pid."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("serving")
    two_versions(home)
    running = start_server(home, workers=2)
    try:
        yield running
    finally:
        stop(running.process)


def predict(server: Server, ref: str, body: dict, **params: str) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/models/{ref}/predict", json=body, params=params, timeout=30)


# --- the alias moves under load ------------------------------------------------------------
async def _hammer(
    server: Server, stop_at: list[float], seen: list[tuple], connections: int
) -> None:
    """`connections` clients posting to the champion until `stop_at[0]`; each response is
    (sent, received, status, versions in it)."""
    batch = {"requests": [BODY, {"title": "pizza please"}, {"text": "hungry"}]}

    async def client(index: int) -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            while time.monotonic() < stop_at[0]:
                sent = time.monotonic()
                body = batch if index % 2 else BODY
                response = await http.post("/v1/models/champion/predict", json=body)
                data = response.json() if response.status_code == 200 else {}
                results = data.get("results", [data])
                versions = {r.get("version") for r in results} | {data.get("version")}
                scored = (results[0].get("version"), results[0].get("probability"))
                seen.append((sent, time.monotonic(), response.status_code, versions, scored))

    await asyncio.gather(*(client(i) for i in range(connections)))


def _move_under_load(server: Server, target: int) -> float:
    """Promote `target` to champion while 8 clients post; the seconds until every later
    response named it. No response may fail or mix two versions."""
    seen: list[tuple] = []
    stop_at = [time.monotonic() + 60]

    async def scenario() -> float:
        load = asyncio.create_task(_hammer(server, stop_at, seen, 8))
        await asyncio.sleep(1.0)
        moved = time.monotonic()
        await asyncio.to_thread(server.registry().promote, target, "champion")
        await asyncio.sleep(3.0)
        stop_at[0] = time.monotonic()
        await load
        return moved

    alone = {v: predict(server, str(v), BODY).json()["probability"] for v in (1, 2)}
    moved = asyncio.run(scenario())
    assert len(seen) > 50, f"only {len(seen)} responses under load"
    assert all(status == 200 for _, _, status, *_ in seen), {s[2] for s in seen}
    assert all(len(versions) == 1 for *_, versions, _ in seen), "a response mixed versions"
    wrong = [(v, p) for *_, (v, p) in seen if abs(p - alone[v]) > 1e-12]
    assert not wrong, f"scored by another version than the one named: {wrong[:3]}"
    stale = [
        sent - moved for sent, _, _, versions, _ in seen if sent > moved and target not in versions
    ]
    lag = max(stale, default=0.0)
    assert lag < 2.0, f"the old version answered {lag:.2f}s after the promote"
    assert any(target in versions for *_, versions, _ in seen)
    return lag


def test_promote_and_rollback_under_load_fail_no_request(server: Server) -> None:
    assert predict(server, "champion", BODY).json()["version"] == 1
    lag_promote = _move_under_load(server, 2)
    lag_rollback = _move_under_load(server, 1)
    print(f"promote answered by v2 after {lag_promote:.2f}s; rollback after {lag_rollback:.2f}s")


# --- concurrent calls are scored together, as if alone -----------------------------------------
WHEN = "2026-06-01T18:30:00Z"  # a fixed time: the default (now) would move the hour features


def _varied_calls() -> list[tuple[str, dict, bool]]:
    """(ref, body, explain): typed and blank requester fields, out-of-range numbers,
    unknown fields, batches, both versions by alias and number, two explanations."""
    words = ["pizza", "rent is due", "student, broke", "will pay it forward", "hungry kids"]
    calls: list[tuple[str, dict, bool]] = []
    for i, word in enumerate(words):
        one = {"title": f"[Request] {word}", "text": f"{word} " * (i + 1), "time": WHEN}
        meta = {"requester_number_of_posts_at_request": 10**i}
        calls.append(("2", one, False))
        calls.append(("2", {**one, "meta": meta, "mood": "x"}, False))
        calls.append(("champion", one, False))
        calls.append(("2", {"requests": [one, {**one, "meta": meta}, {"text": word}]}, False))
    calls.append(("2", {"title": "explain me", "text": "rent", "time": WHEN}, True))
    calls.append(("1", {"title": "explain me too", "time": WHEN}, True))
    return calls


def _comparable(data: dict) -> list[dict]:
    """Each result without its probability (compared within 1e-12 apart)."""
    return [{k: v for k, v in r.items() if k != "probability"} for r in data.get("results", [data])]


def _passes(server: Server) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    found = re.search(r"^altruism_serve_batch_requests_count (\S+)$", text, re.MULTILINE)
    assert found, "no batch metric"
    return float(found.group(1))


def test_concurrent_calls_are_scored_as_they_are_alone(server: Server) -> None:
    """Calls sent at once (sharing passes of the scoring thread) get exactly the results
    each got when sent alone; a bad call among them is refused without harming them."""
    server.registry().promote(1, "champion")
    wait_until(lambda: predict(server, "champion", BODY).json()["version"] == 1, "v1")
    calls = _varied_calls()
    alone = []
    for ref, body, explain in calls:
        response = predict(server, ref, body, **({"explain": "true"} if explain else {}))
        assert response.status_code == 200, response.text
        alone.append(response.json())
    bad = {"requests": [BODY, {"text": " "}]}
    passes_before = _passes(server)

    async def together() -> list[tuple[int, int, dict]]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:

            async def send(index: int, ref: str, body: dict, explain: bool) -> tuple:
                params = {"explain": "true"} if explain else {}
                response = await http.post(f"/v1/models/{ref}/predict", json=body, params=params)
                return index, response.status_code, response.json()

            sends = [send(i, *c) for _ in range(4) for i, c in enumerate(calls)]
            sends += [send(-1, "2", bad, False) for _ in range(8)]
            return await asyncio.gather(*sends)

    answers = asyncio.run(together())
    calls_sent = len(answers)
    assert all(status == 422 for index, status, _ in answers if index == -1)
    for index, status, data in (a for a in answers if a[0] >= 0):
        assert status == 200, data
        expected = alone[index]
        assert _comparable(data) == _comparable(expected)
        got = [r["probability"] for r in data.get("results", [data])]
        want = [r["probability"] for r in expected.get("results", [expected])]
        assert max(abs(g - w) for g, w in zip(got, want, strict=True)) <= 1e-12
    passes = _passes(server) - passes_before
    assert 0 < passes < calls_sent - 8, f"{passes} passes for {calls_sent} calls: no batching"


# --- what a result carries -----------------------------------------------------------------
def test_a_result_names_version_threshold_and_unknown_fields(server: Server) -> None:
    registry = server.registry()
    row = registry.resolve(2)
    body = {**BODY, "meta": {"requester_account_age_in_days_at_request": 99_999}, "mood": "x"}
    out = predict(server, "2", body, explain="true").json()
    assert out["version"] == 2 and out["alias"] is None
    assert out["threshold"] == row.threshold and out["threshold_policy"] == "f1"
    assert out["decision"] == (out["probability"] >= row.threshold)
    assert out["fingerprint"] == row.fingerprint
    assert out["artifact_sha256"] == row.artifact_sha256
    assert out["unknown_fields"] == ["mood"]
    assert any(w["feature"].startswith("requester_account_age") for w in out["warnings"])
    explanation = out["explanation"]  # the CLI's and Try's: base + contributions = logit(p)
    assert explanation["method"].startswith("shap permutation explainer")
    total = explanation["base"] + sum(c["value"] for c in explanation["contributions"])
    logit = math.log(out["probability"] / (1 - out["probability"]))
    assert abs(total - logit) < 1e-6
    assert out["unknown"] and out["unknown_note"]  # requester fields not given: averaged
    batch = predict(server, "2", {"requests": [BODY, BODY]}).json()
    assert [r["version"] for r in batch["results"]] == [2, 2]
    assert "explanation" not in batch["results"][0]


def test_models_health_and_docs(server: Server) -> None:
    models = httpx.get(f"{server.url}/v1/models").json()
    assert [v["version"] for v in models["versions"]] == [2, 1]
    assert set(models["aliases"]) == {"champion"}
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/readyz").json()["ready"] is True
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert "/v1/models/{ref}/predict" in spec["paths"]
    assert httpx.get(f"{server.url}/docs").status_code == 200


@pytest.mark.parametrize(
    ("body", "loc", "words"),
    [
        ({}, ["body"], "title or text is required"),
        ({"title": 5}, ["body", "title"], "string"),
        ({"title": "x" * 1001}, ["body", "title"], "1000"),
        ({"title": "x", "time": "yesterday"}, ["body", "time"], "ISO date"),
        ({"title": "x", "meta": {"shoe_size": 4}}, ["body", "meta"], "shoe_size"),
        ({"requests": [BODY, {"text": " "}]}, ["body", "requests", 1], "title or text"),
        ({"requests": []}, ["body", "requests"], "at least 1"),
    ],
)
def test_bad_input_is_422_naming_the_field(server: Server, body, loc, words) -> None:
    response = predict(server, "champion", body)
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(e["loc"] == loc and words in e["msg"] for e in errors), errors


def test_unknown_versions_and_big_bodies_are_refused(server: Server) -> None:
    assert predict(server, "99", BODY).status_code == 404
    assert predict(server, "no-such-alias", BODY).status_code == 404
    big = {"requests": [{"text": "word " * 7000}] * 10}
    response = predict(server, "champion", big)
    assert response.status_code == 413 and f"{MAX_BODY:,}" in response.json()["detail"]


# --- what was served is counted -------------------------------------------------------------
def _counted(server: Server, version: int) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    pattern = (
        rf'^altruism_serve_requests_total{{[^}}]*code="200"[^}}]*version="{version}"[^}}]*}} (\S+)$'
    )
    return sum(float(v) for v in re.findall(pattern, text, re.MULTILINE))


def _aggregated(server: Server, version: int) -> tuple[int, int, int]:
    rows = [m for m in server.registry().served_minutes() if m.version == version]
    return (
        sum(m.calls for m in rows),
        sum(m.requests for m in rows),
        sum(m.out_of_range for m in rows),
    )


def test_metrics_and_registry_aggregates_count_what_was_served(server: Server) -> None:
    wait_until(lambda: _aggregated(server, 2) == _aggregated(server, 2), "a stable count")
    time.sleep(1.2)  # every worker flushed what it served before
    calls, requests, flagged = _aggregated(server, 2)
    before = _counted(server, 2)
    odd = {**BODY, "meta": {"requester_number_of_posts_at_request": 1e9}}
    for _ in range(10):
        assert predict(server, "2", BODY).status_code == 200
    for _ in range(5):
        assert predict(server, "2", {"requests": [BODY, odd, BODY]}).status_code == 200
    assert _counted(server, 2) - before == 15
    expected = (calls + 15, requests + 25, flagged + 5)
    wait_until(lambda: _aggregated(server, 2) == expected, f"aggregates {expected}", 15)
    rows = server.registry().served_minutes()
    assert {m.host for m in rows} == {socket.gethostname()}
    assert all(m.latency_p99_ms is not None and m.latency_buckets for m in rows)


# --- running the way services run -------------------------------------------------------------
def test_binding_beyond_loopback_needs_a_token() -> None:
    result = run_cli("serve", "--host", "0.0.0.0", "--port", str(free_port()))
    assert result.returncode == 2 and "SERVE_TOKEN" in result.stderr


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_a_token_is_required_when_set(lab: Path) -> None:
    from fastapi.testclient import TestClient

    from core.serving.app import ServeConfig, create_app

    config = ServeConfig.from_env()
    app = create_app(ServeConfig(**{**config.__dict__, "token": "s3cret"}))
    with TestClient(app) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/v1/models").status_code == 401
        assert http.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
        ok = http.get("/v1/models", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["versions"] == []


# --- the dashboard shows what is live ---------------------------------------------------------
def _on_dashboard(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    use_lab(monkeypatch.setenv, server.home)


def test_home_live_panel_and_versions_history_show_what_was_served(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    champion = server.registry().resolve("champion").version
    other = 2 if champion == 1 else 1
    for version in (other, champion):  # the other version answers as champion for a while
        server.registry().promote(version, "champion")
        wait_until(
            lambda v=version: predict(server, "champion", BODY).json()["version"] == v,
            f"champion to answer with v{version}",
            timeout_s=5,
        )
    wait_until(
        lambda: all(m.calls for m in server.registry().served_minutes() if m.version == champion),
        "the champion's aggregates",
    )
    _on_dashboard(server, monkeypatch)
    home = render_page("app.py")
    assert "Live" in [s.value for s in home.subheader]
    lines = [m.value for m in home.markdown if m.value.startswith("champion v")]
    assert lines, [m.value for m in home.markdown]
    words = lines[0].replace("\\", "")
    assert re.match(rf"champion v{champion} — served [\d,]+ requests in the last hour", words)
    assert "from 1 host" in words and "p99" in words and "out of range" in words
    assert f"v{other} answered until" in words
    versions = render_page("pages/2_Versions.py", v=str(champion))
    history = [d.value for d in versions.dataframe if "host" in d.value.columns]
    assert history and history[0]["requests"].sum() > 0
    assert set(history[0]["host"]) == {socket.gethostname()}


def test_the_model_card_says_where_and_when_it_was_served(server: Server) -> None:
    from core.modelcard import model_card, model_card_markdown

    assert predict(server, "2", BODY).status_code == 200
    registry = server.registry()
    row = registry.resolve(2)
    wait_until(lambda: registry.served_minutes(version_id=row.id), "v2's aggregates")
    card = model_card(row, registry)
    assert card["served"]["requests"] > 0
    assert card["served"]["hosts"] == [socket.gethostname()]
    assert f"- hosts: {socket.gethostname()}" in model_card_markdown(card)


# --- the serve stage of the Dockerfile --------------------------------------------------------
def _lab_tar(home: Path) -> bytes:
    """The registry (a consistent SQLite backup) and artifacts as /lab, owned by the
    image's non-root user."""
    import io
    import sqlite3
    import tarfile

    buffer = io.BytesIO()
    copy = home / "registry-copy.db"
    with sqlite3.connect(home / "registry.db") as src, sqlite3.connect(copy) as dst:
        src.backup(dst)

    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 10001
        return info

    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.addfile(_dir("lab", owned))
        tar.add(home / "artifacts", arcname="lab/artifacts", filter=owned)
        tar.add(copy, arcname="lab/registry.db", filter=owned)
        tar.addfile(_dir("lab/logs", owned))
    copy.unlink()
    return buffer.getvalue()


def _dir(name: str, owned: Callable[[Any], Any]) -> Any:
    import tarfile

    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return owned(info)


@pytest.mark.docker
def test_the_serve_image_serves_the_registry(server: Server) -> None:
    import docker

    from core.provenance import code_fingerprint

    tag = f"altruism-lab/serve:test-{code_fingerprint()[:12]}"
    build_serve_image(tag, timeout=300)
    client = docker.from_env(timeout=300)
    port = free_port()
    container = client.containers.create(
        tag,
        ["python", "-m", "core", "serve", "--host", "127.0.0.1", "--port", str(port)],
        environment={
            "REGISTRY_URL": "sqlite:////lab/registry.db",
            "ARTIFACT_ROOT": "/lab/artifacts",
            "LOG_ROOT": "/lab/logs",
            "SERVE_TOKEN": "image-token",
        },
        network_mode="host",
        labels={"altruism-lab.test": "serve-image"},
    )
    try:
        container.put_archive("/", _lab_tar(server.home))
        container.start()
        url = f"http://127.0.0.1:{port}"
        ready = lambda: container.reload() or container.status != "running" or _answers(url)  # noqa: E731
        wait_until(ready, "the container to answer", timeout_s=90)
        assert container.status == "running", container.logs().decode()[-2000:]
        denied = httpx.post(f"{url}/v1/models/champion/predict", json=BODY, timeout=30)
        assert denied.status_code == 401
        auth = {"Authorization": "Bearer image-token"}
        out = httpx.post(f"{url}/v1/models/2/predict", json=BODY, headers=auth, timeout=30)
        assert out.status_code == 200, out.text
        assert out.json()["artifact_sha256"] == server.registry().resolve(2).artifact_sha256
    finally:
        container.remove(force=True)
        client.close()


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# --- a version that cannot be loaded is never swapped in ---------------------------------------
def test_an_alias_keeps_its_version_when_the_new_one_cannot_be_loaded() -> None:
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from core.errors import AltruismError
    from core.registry.serving import AliasPointer
    from core.serving.cache import Served
    from core.serving.follower import RegistryFollower

    pointers = [AliasPointer("champion", 1, 1, datetime(2026, 1, 1, tzinfo=UTC))]

    class Cache:
        def served(self, row) -> Served:
            if row.id == 2:
                raise AltruismError("artifact modified in the store")
            return Served(row.id, row.id, "raop", "f", "a", 0.3, "f1", "nb-bow", None)

    registry = SimpleNamespace(
        alias_pointers=lambda model: pointers, get_by_id=lambda i: SimpleNamespace(id=i)
    )
    follower = RegistryFollower(registry, "raop", Cache(), poll_s=60)  # type: ignore[arg-type]
    follower.refresh()
    assert follower.resolve("champion")[0].version == 1 and follower.ready()[0]
    pointers[0] = AliasPointer("champion", 2, 2, datetime(2026, 1, 2, tzinfo=UTC))
    follower.refresh()
    assert follower.resolve("champion")[0].version == 1
    ok, detail = follower.ready()
    assert not ok and "modified in the store" in detail["problems"]["champion"]


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_request_text_is_stored_only_with_serve_log_requests(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from core.serving.app import ServeConfig, create_app

    assert predict(server, "champion", BODY).status_code == 200
    assert not list((server.home / "logs").rglob("requests-*.jsonl"))  # the default: none
    use_lab(monkeypatch.setenv, server.home)
    monkeypatch.setenv("LOG_ROOT", str(tmp_path / "logs"))
    monkeypatch.setenv("SERVE_LOG_REQUESTS", "1")
    with TestClient(create_app(ServeConfig.from_env())) as http:
        out = http.post("/v1/models/2/predict", json=BODY).json()
    (log,) = (tmp_path / "logs" / "serving").glob("requests-*.jsonl")
    line = json.loads(log.read_text().splitlines()[-1])
    assert line["request"]["title"] == BODY["title"] and line["version"] == 2
    assert line["probability"] == out["probability"]


@pytest.mark.browser
def test_the_live_panel_in_a_browser(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    from ui.server import CHROMIUM, CHROMIUM_ARGS, running_dashboard

    assert predict(server, "champion", BODY).status_code == 200
    champion = server.registry().resolve("champion").version
    wait_until(
        lambda: any(m.version == champion for m in server.registry().served_minutes()),
        "the champion's aggregates",
    )
    use_lab(monkeypatch.setenv, server.home)
    with (
        running_dashboard(tmp_path / "streamlit.log") as (url, _),
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.get_by_role("heading", name="Live").wait_for(timeout=60_000)
            line = page.get_by_text(re.compile(rf"champion v{champion} — served [\d,]+ requests"))
            line.first.wait_for(timeout=60_000)
            assert "from 1 host" in line.first.inner_text()
        finally:
            browser.close()
