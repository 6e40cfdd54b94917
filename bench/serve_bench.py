"""Serving benchmark: `python -m core serve` (1 and 2 workers) against a bare FastAPI app
calling `predict_proba` and `mlflow models serve`, on the same fitted pipeline, one run.

    .venv/bin/python bench/serve_bench.py [--data PATH] [--seconds 10] [--mlflow-python P]
                                          [--rounds 3] [--no-write]

Load comes from Debian's `wrk` (one thread, a Lua script posting one JSON body; latency
quantiles from wrk's own histogram). For each server: a warm-up, then 8 and 32 open
connections for --seconds each, then the batch endpoint with 100 requests per call on one
connection; all servers stay up and --rounds rounds interleave them, each cell reported as
the median over the rounds. Last, the alias swap: `champion` is moved between two versions
every second while 8 connections post, and non-2xx answers are counted.

MLflow runs from its own virtualenv (--mlflow-python, default /tmp/wt24-mlflow/bin/python:
MLflow 3.x with this project's pinned scikit-learn, numpy, scipy and pandas) with
`--env-manager local`; the pipeline is saved with `mlflow.sklearn.save_model(...,
pyfunc_predict_fn="predict_proba")` and receives the model-input frame
(`core.features.to_frame`) as `dataframe_split`, since MLflow has no request schema of its
own. Everything runs against a temporary registry and store. The section "## Serving
(bench/serve_bench.py)" of docs/benchmarks.md is rewritten unless --no-write.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, environment, machine, table, write_section

HEADING = "## Serving (bench/serve_bench.py)"
OURS, MLFLOW = "core serve, {} worker{}", "mlflow models serve, {} worker{}"
SHARED = ROOT.parent / "shared" / "data" / "raop" / "train.json.zip"
REQUEST = {
    "title": "[Request] Broke student in Ohio, payday is Friday",
    "text": "Lost my job last week and the fridge is empty. I will pay it forward, promise! "
    "Happy to send pictures of my student ID. Thanks for reading.",
}
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open(os.getenv("BENCH_BODY")):read("*a")
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %.1f %.1f\\n", summary.requests,
    summary.duration, summary.errors.status, summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout, latency:percentile(50),
    latency:percentile(99)))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, process: subprocess.Popen, timeout_s: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout_s}s")


@contextmanager
def running(command: list[str], ready_url: str, env: dict[str, str]) -> Iterator[None]:
    """A server process group, stopped by its pid at the end."""
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_up(ready_url, process)
        yield
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wrk(url: str, body: Path, connections: int, seconds: float, lua: Path) -> dict[str, Any]:
    threads = 2 if connections >= 16 else 1
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{int(seconds)}s", "-s", str(lua), url],
        capture_output=True,
        text=True,
        env={**os.environ, "BENCH_BODY": str(body)},
        timeout=seconds + 60,
    ).stdout
    found = re.search(r"^RESULT (\d+) (\d+) (\d+) (\d+) (\S+) (\S+)$", out, re.M)
    if not found:
        raise RuntimeError(f"wrk gave no result:\n{out}")
    requests, micros, non2xx, socket_errors = (int(found.group(i)) for i in range(1, 5))
    return {
        "rps": requests / (micros / 1e6),
        "p50_ms": float(found.group(5)) / 1000,
        "p99_ms": float(found.group(6)) / 1000,
        "requests": requests,
        "non2xx": non2xx,
        "socket_errors": socket_errors,
    }


# --- the model --------------------------------------------------------------------------
def build_versions(home: Path, data: Path) -> dict[str, Any]:
    """Two versions (tfidf-meta-logreg champion, tfidf-logreg) trained locally."""
    from core import builds
    from core.registry import Registry

    registry = Registry()
    rows = []
    for recipe in ("tfidf-meta-logreg", "tfidf-logreg"):
        request = builds.TrainRequest(
            recipe=recipe, data_path=str(data), backend="local", force=True
        )
        row, _ = builds.train(request, registry)
        assert row.status == "ready", row.error
        rows.append(row)
    registry.promote(rows[0].version, "champion")
    artifact = next((home / "artifacts").rglob(f"{rows[0].artifact_sha256}.joblib"))
    return {"registry": registry, "rows": rows, "artifact": artifact}


def model_frame_split(records: list[dict[str, Any]]) -> dict[str, Any]:
    from core.features import to_frame

    frame = to_frame(records)
    return {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}


def bodies(folder: Path) -> dict[str, Path]:
    """The request bodies each server gets: one request and a batch of 100."""
    one = {"request_id": "bench", "request_title": REQUEST["title"]}
    one["request_text_edit_aware"] = REQUEST["text"]
    batch = [dict(one, request_id=f"bench-{i}") for i in range(100)]
    files = {
        "service": REQUEST,
        "service-batch": {"requests": [REQUEST] * 100},
        "mlflow": model_frame_split([one]),
        "mlflow-batch": model_frame_split(batch),
    }
    files["bare"], files["bare-batch"] = files["service"], files["service-batch"]
    paths = {}
    for name, value in files.items():
        paths[name] = folder / f"{name}.json"
        paths[name].write_text(json.dumps(value))
    return paths


def save_mlflow_model(mlflow_python: str, artifact: Path, target: Path) -> None:
    script = (
        "import joblib, mlflow.sklearn, sys\n"
        "mlflow.sklearn.save_model(joblib.load(sys.argv[1]), sys.argv[2], "
        "pyfunc_predict_fn='predict_proba', serialization_format='cloudpickle')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([mlflow_python, "-c", script, str(artifact), str(target)], check=True, env=env)


# --- the servers ------------------------------------------------------------------------
def servers(args: argparse.Namespace, lab: dict[str, Any], folder: Path) -> list[dict[str, Any]]:
    py = sys.executable
    out = []
    for workers in (1, 2):
        port = free_port()
        out.append(
            {
                "name": label(OURS, workers),
                "command": [
                    py,
                    "-m",
                    "core",
                    "serve",
                    "--port",
                    str(port),
                    "--workers",
                    str(workers),
                ],
                "ready": f"http://127.0.0.1:{port}/readyz",
                "url": f"http://127.0.0.1:{port}/v1/models/champion/predict",
                "body": "service",
                "env": {},
                "workers": workers,
            }
        )
    port = free_port()
    uvicorn = [py, "-m", "uvicorn", "bench.bare_serve_app:create_app", "--factory"]
    out.append(
        {
            "name": "bare FastAPI + predict_proba, 1 worker",
            "command": [*uvicorn, "--port", str(port), "--no-access-log", "--log-level", "warning"],
            "ready": f"http://127.0.0.1:{port}/docs",
            "url": f"http://127.0.0.1:{port}/predict",
            "body": "bare",
            "env": {"BARE_ARTIFACT": str(lab["artifact"])},
        }
    )
    if args.mlflow_python and Path(args.mlflow_python).exists():
        model = folder / "mlflow-model"
        save_mlflow_model(args.mlflow_python, lab["artifact"], model)
        mlflow = str(Path(args.mlflow_python).parent / "mlflow")
        for workers in (1, 2):
            port = free_port()
            command = [mlflow, "models", "serve", "-m", str(model), "--env-manager", "local"]
            out.append(
                {
                    "name": label(MLFLOW, workers),
                    "command": [*command, "-p", str(port), "-w", str(workers)],
                    "ready": f"http://127.0.0.1:{port}/ping",
                    "url": f"http://127.0.0.1:{port}/invocations",
                    "body": "mlflow",
                    "env": {"PYTHONPATH": str(ROOT), "PATH": _with_bin(args.mlflow_python)},
                }
            )
    return out


def mlflow_version(python: str) -> str:
    """The MLflow version of the --mlflow-python interpreter ('3.x' if it cannot say)."""
    if not Path(python).exists():
        return "3.x"
    out = subprocess.run(
        [python, "-c", "from importlib.metadata import version; print(version('mlflow'))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout.strip() or "3.x"


def _with_bin(python: str) -> str:
    """PATH with the MLflow virtualenv's bin first (MLflow starts `uvicorn` by name)."""
    return f"{Path(python).parent}{os.pathsep}{os.environ.get('PATH', '')}"


CELLS = (8, 32, "batch")


def measure_all(
    servers: list[dict[str, Any]], paths: dict[str, Path], args: argparse.Namespace, lua: Path
) -> list[dict[str, Any]]:
    """Every server up at once; `--rounds` rounds, each measuring every cell of every server
    (server order rotated per round, so the machine's noise spreads over all of them); the
    median of the rounds per cell. Then the alias swap against the 2-worker service."""
    runs: dict[str, dict[Any, list[dict[str, Any]]]] = {s["name"]: {} for s in servers}
    with contextlib.ExitStack() as stack:
        for server in servers:
            env = {**os.environ, **server["env"]}
            stack.enter_context(running(server["command"], server["ready"], env))
            wrk(server["url"], paths[server["body"]], 8, 3, lua)  # warm-up
        for index in range(args.rounds):
            shift = index % len(servers)
            for server in servers[shift:] + servers[:shift]:
                for cell in CELLS:
                    runs[server["name"]].setdefault(cell, []).append(
                        one_cell(server, cell, paths, args, lua)
                    )
            print(f"round {index + 1} of {args.rounds} done", flush=True)
        swapped = next(s for s in servers if s.get("workers") == 2)
        swap = swap_under_load(swapped, paths[swapped["body"]], args, lua)
    results = [
        {"name": name, **{c: median_run(r) for c, r in cells.items()}}
        for name, cells in runs.items()
    ]
    results[[s["name"] for s in servers].index(swapped["name"])]["swap"] = swap
    print(json.dumps(results, default=str), flush=True)
    return results


def pass_totals(server: dict[str, Any]) -> tuple[float, float]:
    """Requests scored and passes of the service's scoring threads so far (the
    `altruism_serve_batch_requests` histogram's sum and count, all workers)."""
    import httpx

    text = httpx.get(server["url"].split("/v1/")[0] + "/metrics", timeout=10).text
    pattern = r"^altruism_serve_batch_requests_(sum|count) (\S+)$"
    found = {kind: float(value) for kind, value in re.findall(pattern, text, re.M)}
    return found.get("sum", 0.0), found.get("count", 0.0)


def one_cell(
    server: dict[str, Any], cell: Any, paths: dict[str, Path], args: argparse.Namespace, lua: Path
) -> dict[str, Any]:
    if cell == "batch":
        return wrk(server["url"], paths[server["body"] + "-batch"], 1, args.seconds, lua)
    if "workers" not in server:
        return wrk(server["url"], paths[server["body"]], cell, args.seconds, lua)
    before = pass_totals(server)
    out = wrk(server["url"], paths[server["body"]], cell, args.seconds, lua)
    scored, passes = (a - b for a, b in zip(pass_totals(server), before, strict=True))
    return {**out, "per_pass": scored / passes if passes else 0.0}


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per measure, the median over rounds; errors summed."""
    keys = ["rps", "p50_ms", "p99_ms"] + (["per_pass"] if "per_pass" in runs[0] else [])
    out = {key: statistics.median(r[key] for r in runs) for key in keys}
    for key in ("requests", "non2xx", "socket_errors"):
        out[key] = sum(r[key] for r in runs)
    return out


def swap_under_load(
    server: dict[str, Any], body: Path, args: argparse.Namespace, lua: Path
) -> dict[str, Any]:
    """Move `champion` between the two versions every second during an 8-connection run."""
    from core.registry import Registry

    registry = Registry()
    versions = [r.version for r in registry.list_versions() if r.status == "ready"]
    stop = threading.Event()
    moves = [0]

    def mover() -> None:
        while not stop.wait(1.0):
            registry.promote(versions[moves[0] % 2], "champion")
            moves[0] += 1

    thread = threading.Thread(target=mover, daemon=True)
    thread.start()
    try:
        outcome = wrk(server["url"], body, 8, max(10, args.seconds), lua)
    finally:
        stop.set()
        thread.join()
    return {**outcome, "moves": moves[0]}


@contextmanager
def sampled_load(every_s: float = 5.0) -> Iterator[list[float]]:
    """The 1-minute load average at the start, every `every_s` seconds and at the end."""
    samples = [os.getloadavg()[0]]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(every_s):
            samples.append(os.getloadavg()[0])

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()
        samples.append(os.getloadavg()[0])


# --- the report -------------------------------------------------------------------------
def report(results: list[dict[str, Any]], facts: dict[str, Any], load: tuple) -> str:
    def cell(r: dict[str, Any]) -> str:
        errors = (
            f", {r['non2xx'] + r['socket_errors']} errors"
            if r["non2xx"] or r["socket_errors"]
            else ""
        )
        passes = f" · {r['per_pass']:.1f} per pass" if r.get("per_pass") else ""
        return f"{r['rps']:.0f}/s · p50 {r['p50_ms']:.1f} · p99 {r['p99_ms']:.1f}{passes}{errors}"

    rows = [
        [
            r["name"],
            cell(r[8]),
            cell(r[32]),
            f"{r['batch']['p50_ms']:.1f} / {r['batch']['p99_ms']:.1f} ms "
            f"({r['batch']['rps'] * 100:.0f} requests/s)",
        ]
        for r in results
    ]
    header = ["server", "8 connections", "32 connections", "batch of 100, p50 / p99 per call"]
    swap = next((r["swap"] for r in results if "swap" in r), None)
    lines = [
        HEADING,
        "",
        f"Run {facts['date']} on {facts['nproc']} CPUs ({facts['cpu']}), "
        f"{facts['memory_gib']:.1f} GiB, Python {facts['python']}. **The 2 CPUs are shared with "
        "other engineers' work**: 1-minute load average {:.2f} at the start, median {:.2f} "
        "and highest {:.2f} while measuring (sampled every 5 s), {:.2f} at the end, so "
        "absolute numbers move between runs; all servers were measured in the same run, "
        "interleaved, on the same fitted pipeline ({}).".format(*load, facts["model"]),
        "",
        "All servers run at once (an idle one costs memory, not CPU) and are warmed up for "
        "3 s; then {} rounds each measure every cell of every server for {} s, in an order "
        "rotated per round, and each cell is the median over the rounds. Load from `wrk` (one "
        "thread at 8 connections, two at 32; it runs on the same two CPUs); latencies in ms, "
        "throughput in answered calls per second. The batch column is one connection posting "
        "100 requests per call (MLflow gets the same 100 rows as a frame).".format(
            facts["rounds"], facts["seconds"]
        ),
        "",
        "`core serve` and the bare app run on uvicorn with uvloop and httptools "
        "(requirements-serve.txt); `core serve` scores on one thread per worker, concurrent "
        "calls for one version together (*per pass*: requests scored per `score()` call, "
        "mean over the cell; default SERVE_BATCH_MAX_REQUESTS 256, SERVE_BATCH_WAIT_MS 0). "
        f"MLflow {facts.get('mlflow', '3.x')} runs as `pip install mlflow` sets it up (its "
        "uvicorn without uvloop or httptools).",
        "",
        table(header, rows),
        "",
    ]
    lines += [*targets(results), ""]
    if swap:
        lines.append(
            f"Alias swap under load: `champion` moved {swap['moves']} times between two "
            f"versions during an 8-connection run against 2 workers: {swap['requests']:,} "
            f"calls, {swap['non2xx']} non-2xx, {swap['socket_errors']} socket errors, "
            f"{swap['rps']:.0f}/s, p99 {swap['p99_ms']:.1f} ms."
        )
        lines.append("")
    return "\n".join(lines)


TARGET_RATIO, TARGET_P99_MS, TARGET_BATCH_MS = 2.0, 50.0, 50.0


def targets(results: list[dict[str, Any]]) -> list[str]:
    """Issue 24's targets, met or missed, from this run's medians: throughput at least
    twice MLflow's with as many workers at the same connection count; p99 at 8
    connections with 2 workers; a batch of 100 in one call (p50)."""
    by_name = {r["name"]: r for r in results}
    lines = ["Targets (issue 24):", ""]
    for workers in (1, 2):
        ours, theirs = by_name.get(label(OURS, workers)), by_name.get(label(MLFLOW, workers))
        if not ours or not theirs:
            continue
        for conns in (8, 32):
            ratio = ours[conns]["rps"] / theirs[conns]["rps"]
            lines.append(
                f"- {label('{} worker{}', workers)}, {conns} connections: {ratio:.2f}x "
                f"MLflow's throughput (target ≥ {TARGET_RATIO:.0f}x): "
                f"{_verdict(ratio >= TARGET_RATIO)}"
            )
    two = by_name.get(label(OURS, 2))
    if two:
        p99 = two[8]["p99_ms"]
        lines.append(
            f"- p99 at 8 connections, 2 workers: {p99:.1f} ms (target ≤ {TARGET_P99_MS:.0f} "
            f"ms): {_verdict(p99 <= TARGET_P99_MS)}"
        )
    for workers in (1, 2):
        ours = by_name.get(label(OURS, workers))
        if ours:
            p50 = ours["batch"]["p50_ms"]
            lines.append(
                f"- a batch of 100 in one call, {label('{} worker{}', workers)}: p50 "
                f"{p50:.1f} ms (target ≤ {TARGET_BATCH_MS:.0f} ms): "
                f"{_verdict(p50 <= TARGET_BATCH_MS)}"
            )
    return lines


def label(template: str, workers: int) -> str:
    """'core serve, 2 workers' from OURS or MLFLOW."""
    return template.format(workers, "s" if workers > 1 else "")


def _verdict(met: bool) -> str:
    return "✅ met" if met else "❌ missed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data", default=str(SHARED if SHARED.is_file() else ROOT / "data/sample.json")
    )
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mlflow-python", default="/tmp/wt24-mlflow/bin/python")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    folder = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    settings = {
        "REGISTRY_URL": f"sqlite:///{folder / 'registry.db'}",
        "ARTIFACT_ROOT": str(folder / "artifacts"),
        "LOG_ROOT": str(folder / "logs"),
        "SERVE_FLUSH_SECONDS": "5",
    }
    try:
        with environment(settings):
            lab = build_versions(folder, Path(args.data))
            paths = bodies(folder)
            lua = folder / "post.lua"
            lua.write_text(LUA)
            with sampled_load() as samples:
                results = measure_all(servers(args, lab, folder), paths, args, lua)
            load = (samples[0], statistics.median(samples), max(samples), samples[-1])
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    facts = {**machine(), "seconds": args.seconds, "rounds": args.rounds}
    facts["model"] = f"tfidf-meta-logreg on {Path(args.data).name}"
    facts["mlflow"] = mlflow_version(args.mlflow_python)
    section = report(results, facts, load)
    print(section)
    if not args.no_write:
        write_section(HEADING, section)


if __name__ == "__main__":
    main()
