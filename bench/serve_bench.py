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
                "name": f"core serve, {workers} worker{'s' if workers > 1 else ''}",
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
                    "name": f"mlflow models serve, {workers} worker{'s' if workers > 1 else ''}",
                    "command": [*command, "-p", str(port), "-w", str(workers)],
                    "ready": f"http://127.0.0.1:{port}/ping",
                    "url": f"http://127.0.0.1:{port}/invocations",
                    "body": "mlflow",
                    "env": {"PYTHONPATH": str(ROOT), "PATH": _with_bin(args.mlflow_python)},
                }
            )
    return out


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


def one_cell(
    server: dict[str, Any], cell: Any, paths: dict[str, Path], args: argparse.Namespace, lua: Path
) -> dict[str, Any]:
    if cell == "batch":
        return wrk(server["url"], paths[server["body"] + "-batch"], 1, args.seconds, lua)
    return wrk(server["url"], paths[server["body"]], cell, args.seconds, lua)


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per measure, the median over rounds; errors summed."""
    out = {key: statistics.median(r[key] for r in runs) for key in ("rps", "p50_ms", "p99_ms")}
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


# --- the report -------------------------------------------------------------------------
def report(results: list[dict[str, Any]], facts: dict[str, Any], load: tuple) -> str:
    def cell(r: dict[str, Any]) -> str:
        errors = (
            f", {r['non2xx'] + r['socket_errors']} errors"
            if r["non2xx"] or r["socket_errors"]
            else ""
        )
        return f"{r['rps']:.0f}/s · p50 {r['p50_ms']:.1f} · p99 {r['p99_ms']:.1f}{errors}"

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
        "other engineers' work**: load average {:.2f} before and {:.2f} after the run, so "
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
        table(header, rows),
        "",
    ]
    if swap:
        lines.append(
            f"Alias swap under load: `champion` moved {swap['moves']} times between two "
            f"versions during an 8-connection run against 2 workers: {swap['requests']:,} "
            f"calls, {swap['non2xx']} non-2xx, {swap['socket_errors']} socket errors, "
            f"{swap['rps']:.0f}/s, p99 {swap['p99_ms']:.1f} ms."
        )
        lines.append("")
    return "\n".join(lines)


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
            load_before = os.getloadavg()[0]
            results = measure_all(servers(args, lab, folder), paths, args, lua)
            load = (load_before, os.getloadavg()[0])
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    facts = {**machine(), "seconds": args.seconds, "rounds": args.rounds}
    facts["model"] = f"tfidf-meta-logreg on {Path(args.data).name}"
    section = report(results, facts, load)
    print(section)
    if not args.no_write:
        write_section(HEADING, section)


if __name__ == "__main__":
    main()
