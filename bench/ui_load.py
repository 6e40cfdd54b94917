"""The dashboard under load: many websocket clients on the pages while builds run.

Used by `bench/ui_bench.py --load` and by tests/test_dashboard_load.py. A client speaks the
browser's protocol to a real `streamlit run app.py` server: it opens `/_stcore/stream`, asks
for a page (`rerun_script` with the page name), reads every message until the run finishes,
waits `think_s` (the Build page's panel refreshes every 2 s) and asks again; clients go
round the pages Home, Build, Versions, Compare and Try a request. A prober meanwhile times
`GET /_stcore/health` every `probe_s`. No browser is used: 50 Chromium tabs would take the
2 CPUs of this machine from the server they are meant to measure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PAGES = ("", "Build", "Versions", "Compare", "Try_a_request")


@dataclass
class LoadResult:
    """Health latencies (s) and what the clients managed."""

    health_s: list[float] = field(default_factory=list)
    health_at: list[float] = field(default_factory=list)  # seconds into the run
    health_failures: int = 0
    page_runs: int = 0
    page_errors: int = 0
    page_s: list[float] = field(default_factory=list)

    def quantiles(self) -> dict[str, float]:
        from bench.common import quantile

        values = self.health_s or [float("nan")]
        return {
            "p50": quantile(values, 0.5),
            "p95": quantile(values, 0.95),
            "p99": quantile(values, 0.99),
            "max": max(values),
        }


async def _client(url: str, index: int, stop: float, think_s: float, result: LoadResult) -> None:
    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    ws_url = url.replace("http://", "ws://") + "/_stcore/stream"
    await asyncio.sleep(index * 0.05)  # arrive over a few seconds, as visitors do
    page = PAGES[index % len(PAGES)]
    while time.monotonic() < stop:
        try:
            async with websockets.connect(
                ws_url, subprotocols=["streamlit"], max_size=None, open_timeout=60
            ) as ws:
                while time.monotonic() < stop:
                    back = BackMsg()
                    back.rerun_script.page_name = page
                    back.rerun_script.query_string = ""
                    started = time.monotonic()
                    await ws.send(back.SerializeToString())
                    while True:
                        raw = await asyncio.wait_for(ws.recv(), timeout=120)
                        msg = ForwardMsg()
                        msg.ParseFromString(raw)
                        if msg.WhichOneof("type") == "script_finished":
                            break
                    result.page_runs += 1
                    result.page_s.append(time.monotonic() - started)
                    await asyncio.sleep(think_s)
        except (TimeoutError, OSError, Exception):
            result.page_errors += 1
            await asyncio.sleep(1)


async def _prober(url: str, stop: float, probe_s: float, result: LoadResult) -> None:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=60)
    begin = time.monotonic()
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while time.monotonic() < stop:
            started = time.monotonic()
            try:
                async with session.get(f"{url}/_stcore/health") as response:
                    await response.read()
                    ok = response.status == 200
            except (TimeoutError, aiohttp.ClientError):
                ok = False
            elapsed = time.monotonic() - started
            if ok:
                result.health_s.append(elapsed)
                result.health_at.append(started - begin)
            else:
                result.health_failures += 1
            await asyncio.sleep(max(0.0, probe_s - elapsed))


async def _clients(url: str, clients: int, seconds: float, think_s: float) -> LoadResult:
    result = LoadResult()
    stop = time.monotonic() + seconds
    await asyncio.gather(*(_client(url, i, stop, think_s, result) for i in range(clients)))
    return result


def measure(
    url: str, clients: int, seconds: float, think_s: float = 2.0, probe_s: float = 0.1
) -> LoadResult:
    """Health latencies over `seconds` with `clients` page clients (0: the idle baseline).
    The clients run in a process of their own (`python -m bench.ui_load`), so their CPU is
    not the prober's; it is stopped by its pid."""
    import json
    import subprocess
    import sys

    from bench.common import ROOT

    result = LoadResult()
    worker = None
    if clients:
        worker = subprocess.Popen(
            [sys.executable, "-m", "bench.ui_load", url, str(clients), str(seconds), str(think_s)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
    try:
        asyncio.run(_prober(url, time.monotonic() + seconds, probe_s, result))
        if worker is not None:
            out, _ = worker.communicate(timeout=180)
            counts = json.loads(out.strip().splitlines()[-1])
            result.page_runs, result.page_errors = counts["runs"], counts["errors"]
            result.page_s = counts["page_s"]
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
    return result


def process_tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of `pid` so far (/proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def running_builds(count: int, data: str, seconds: float) -> Iterator[list[int]]:
    """Keep `count` real local builds (cross-validated tfidf-meta-logreg on `data`) running
    for about `seconds`: each is launched the way the dashboard launches one (a detached
    `python -m core run-build`); a finished one is replaced. Yields the launcher pids so
    far; at the end every launcher still running is stopped by its process group."""
    import threading

    from core import builds
    from core.registry import Registry

    registry = Registry()
    pids: list[int] = []
    versions: list[int] = []
    done = threading.Event()

    def launch_one(seed: int) -> int:
        request = builds.TrainRequest(
            recipe="tfidf-meta-logreg",
            data_path=data,
            backend="local",
            force=True,
            seed=seed,
            cv_folds=5,
        )
        row = builds.submit(request, registry).version
        versions.append(row.id)
        pid = builds.launch(row.id, registry)
        pids.append(pid)
        return pid

    def keep_running() -> None:
        seed = 1
        running = [launch_one(seed + i) for i in range(count)]
        seed += count
        while not done.wait(0.5):
            for i, pid in enumerate(running):
                if _finished(pid):
                    running[i] = launch_one(seed)
                    seed += 1

    thread = threading.Thread(target=keep_running, daemon=True)
    thread.start()
    try:
        yield pids
    finally:
        done.set()
        thread.join(timeout=30)
        for version_id in versions:  # the builder stops its worker's process group
            with contextlib.suppress(Exception):
                registry.request_cancel(version_id)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(_finished(pid) for pid in pids):
            time.sleep(0.5)
        for pid in pids:
            if not _finished(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)


_reaped: set[int] = set()


def _finished(pid: int) -> bool:
    """Whether our child `pid` has exited (reaping it)."""
    if pid in _reaped:
        return True
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        done = pid
    if done == pid:
        _reaped.add(pid)
    return done == pid


def summary(result: LoadResult) -> dict[str, Any]:
    """Quantiles and counts, for reports."""
    return result.quantiles() | {
        "probes": len(result.health_s),
        "failures": result.health_failures,
        "page_runs": result.page_runs,
        "page_errors": result.page_errors,
    }


async def _flood_one(url: str, files: int, size: int, statuses: list[tuple[int, str]]) -> None:
    """One visitor (no sign-in): open a session, then PUT `files` uploads of `size` bytes to
    the upload endpoint, as many as a script could."""
    import uuid

    import aiohttp
    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    jar = aiohttp.CookieJar(unsafe=True)  # a cookie from 127.0.0.1
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=120), cookie_jar=jar
    ) as http:
        async with http.get(f"{url}/_stcore/health") as response:  # sets the XSRF cookie
            await response.read()
        token = next((c.value for c in http.cookie_jar if c.key == "_streamlit_xsrf"), "")
        ws_url = url.replace("http://", "ws://") + "/_stcore/stream"
        async with websockets.connect(ws_url, subprotocols=["streamlit"], max_size=None) as ws:
            back = BackMsg()
            back.rerun_script.query_string = ""
            await ws.send(back.SerializeToString())
            session_id = ""
            while not session_id:
                msg = ForwardMsg()
                msg.ParseFromString(await asyncio.wait_for(ws.recv(), timeout=120))
                if msg.WhichOneof("type") == "new_session":
                    session_id = msg.new_session.initialize.session_id
            payload = os.urandom(size)
            for _ in range(files):
                form = aiohttp.FormData()
                form.add_field("file", payload, filename="flood.json")
                target = f"{url}/_stcore/upload_file/{session_id}/{uuid.uuid4()}"
                async with http.put(target, data=form, headers={"X-Xsrftoken": token}) as r:
                    statuses.append((r.status, await r.text()))


def upload_flood(url: str, sessions: int, files: int, mb: float) -> list[tuple[int, str]]:
    """(HTTP status, body) of every upload: `sessions` visitors, one after the other, each
    sending `files` uploads of `mb` MB and staying connected until all are done."""

    async def run() -> list[tuple[int, str]]:
        statuses: list[tuple[int, str]] = []
        await asyncio.gather(
            *(_flood_one(url, files, int(mb * 1024 * 1024), statuses) for _ in range(sessions))
        )
        return statuses

    return asyncio.run(run())


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of `pid` in MB."""
    import re

    text = Path(f"/proc/{pid}/status").read_text()
    found = {k: int(v) / 1024 for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", text, re.M)}
    return found.get("VmRSS", 0.0), found.get("VmHWM", 0.0)


if __name__ == "__main__":  # the clients' process: URL CLIENTS SECONDS THINK_S
    import json
    import sys

    done = asyncio.run(
        _clients(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]))
    )
    print(json.dumps({"runs": done.page_runs, "errors": done.page_errors, "page_s": done.page_s}))
