"""Core benchmark: `train` end to end vs a bare sklearn fit, predict latency, memory, size.

Run from the repository root:

    .venv/bin/python bench/core_bench.py [--data PATH] [--repeats 5] [--calls 1000] [--no-write]

Everything runs against a temporary REGISTRY_URL / ARTIFACT_ROOT / LOG_ROOT (never the
checkout's registry.db). Results are printed as markdown and, unless --no-write, stored in
docs/benchmarks.md under "## Core (bench/core_bench.py)" (other sections are left alone).

What is measured, per recipe:

* train: `core.builds.train(TrainRequest(backend="local", force=True))` (submit with dataset
  validation and fingerprint, registry rows, a fresh worker subprocess that imports
  sklearn/pandas, loads the data, fits, evaluates and dumps the artifact, artifact store,
  provenance) vs a bare in-process `recipe.pipeline(params).fit` + `predict_proba` on the same
  split. Bare and product runs are interleaved (alternating order) so machine noise hits both.
  The product path is traced with timing-only wrappers around core functions (no core code is
  changed) and the worker's log lines, giving a per-phase breakdown. A bare fit limited to one
  BLAS thread is timed too (diagnostic), and when the machine is busy the verdict uses a
  noise-robust estimate: the smallest fixed cost of a build over the fastest bare fit.
* predict: `core.predict.predict_proba(model, [make_request(title, text)])` vs bare
  `pipeline.predict_proba(one_row_frame)` with the frame prepared beforehand; calls are
  interleaved one by one.
* memory: one `train` in a fresh subprocess; `getrusage(RUSAGE_CHILDREN).ru_maxrss` there, and
  the worker's own VmHWM polled from /proc (the getrusage figure cannot be lower than the
  parent's RSS at spawn time: Linux charges the pre-exec address space to the child).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import resource
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import machine as shared_machine  # noqa: E402
from bench.common import quantile, read_text, table, write_section  # noqa: E402

DEFAULT_DATA = (ROOT / ".." / "shared" / "data" / "raop" / "train.json.zip").resolve()
SAMPLE_DATA = ROOT / "data" / "sample.json"
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Core (bench/core_bench.py)"
RECIPE_NAMES = ("nb-bow", "tfidf-logreg", "tfidf-meta-logreg")
TRAIN_TARGET_RECIPE = "tfidf-meta-logreg"
TRAIN_TARGET_OVERHEAD = 0.25  # at most +25 % over the bare fit + predict_proba
P99_TARGET_MS = 5.0
PREDICT_RATIO_TARGET = 1.5
PREDICT_WARMUP = 20

# Worker log lines (core.worker / core.train) that mark the start of each phase.
WORKER_MARKS = {
    "started": "worker pid",
    "loaded": "loaded ",
    "fitting": "fitting ",
    "fit_done": "fit done in",
    "evaluated": "evaluated in",
    "wrote": "wrote model.joblib",
}

# (key, label) of the breakdown rows, in the order the product path runs them.
PHASES = (
    ("submit_load", "submit: read + validate + hash dataset (parent)"),
    ("submit_fingerprint", "submit: fingerprint (code hash, 2× git, package versions)"),
    ("submit_queue", "submit: insert queued version (registry)"),
    ("execute_setup", "execute: mark running, log, temp dir"),
    ("worker_start", "worker: spawn + Python start + imports (sklearn, pandas, scipy)"),
    ("worker_load", "worker: read + validate + hash dataset again"),
    ("worker_frame", "worker: to_frame + split + build pipeline"),
    ("worker_fit", "worker: fit"),
    ("worker_evaluate", "worker: predict_proba + metrics + curves"),
    ("worker_dump", "worker: environment + joblib.dump(compress=3) + result.json"),
    ("worker_exit", "worker: interpreter exit (after the last log line)"),
    ("builder_poll", "builder notices the exit (polls every POLL_SECONDS = 0.25 s)"),
    ("store", "artifact store (sha256, copy, fsync, sha256)"),
    ("provenance", "provenance (2× git, code hash, package versions)"),
    ("registry", "registry: stage + complete (versions, details)"),
    ("other", "other (unattributed)"),
)


# --- small helpers -----------------------------------------------------------------------
def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def seconds(value: float) -> str:
    return f"{value:.2f} s" if value >= 1 else f"{value * 1000:.0f} ms"


def spread(values: list[float]) -> str:
    return f"{seconds(min(values))}–{seconds(max(values))}" if values else "–"


def megabytes(kib: float | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:.0f} MB"


def pct(ratio: float) -> str:
    return f"{ratio * 100:+.0f}%"


def best_case(slot: dict[str, Any]) -> dict[str, Any]:
    """Noise-robust overhead: the smallest per-build cost outside the worker's fit and
    evaluation (same code as the bare fit, so contention there cancels) over the fastest bare
    fit seen (default or one BLAS thread: the fit's speed on an uncontended machine).
    Slightly favourable to the product: metrics and curves count as 'evaluation'."""
    fixed = [
        total - phases["worker_fit"] - phases["worker_evaluate"]
        for total, phases in zip(slot["product"], slot["phases"], strict=True)
    ]
    best = min(range(len(fixed)), key=fixed.__getitem__)
    bare = min(slot["bare"] + slot.get("bare_1", []))
    return {
        "fixed": fixed[best],
        "all_fixed": fixed,
        "phases": slot["phases"][best],
        "bare": bare,
        "overhead": fixed[best] / bare,
    }


def noise_reasons(train: dict[str, dict[str, Any]], noise: dict[str, Any]) -> list[str]:
    reasons = []
    if noise["other_cores"] >= 0.25:
        reasons.append(f"other processes used {noise['other_cores']:.2f} of {noise['cores']} cores")
    for name, slot in train.items():
        if len(slot["bare"]) > 1 and max(slot["bare"]) > 1.5 * min(slot["bare"]):
            reasons.append(
                f"`{name}` bare fit varied {max(slot['bare']) / min(slot['bare']):.1f}× "
                "between repeats"
            )
    return reasons


# --- machine and noise -------------------------------------------------------------------


def machine() -> dict[str, Any]:
    from core.provenance import package_versions

    packages = package_versions()
    try:
        import scipy.linalg  # noqa: F401  (load the BLAS pools the recipes use)
        import sklearn.linear_model  # noqa: F401
        from threadpoolctl import threadpool_info

        pools = threadpool_info()
        blas = ", ".join(f"{p['internal_api']} {p['num_threads']} threads" for p in pools)
    except Exception:  # diagnostic only
        blas = "unknown"
    return shared_machine() | {
        "blas": blas or "none",
        "packages": ", ".join(
            f"{n} {packages[n]}" for n in ("scikit-learn", "numpy", "scipy", "pandas")
        ),
        "bytecode_cache": "off (PYTHONDONTWRITEBYTECODE set)"
        if os.environ.get("PYTHONDONTWRITEBYTECODE")
        else "on",
    }


class CpuMonitor:
    """How much CPU other processes used while the benchmark ran (from /proc/stat)."""

    def __init__(self) -> None:
        self.ticks = os.sysconf("SC_CLK_TCK")
        self.start_busy, self.start_total = self._system()
        self.start_own = self._own()
        self.start_wall = time.monotonic()
        self.load_start = read_text("/proc/loadavg").split()[:3]

    def _system(self) -> tuple[float, float]:
        fields = [float(v) for v in read_text("/proc/stat").splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
        return (sum(fields) - idle) / self.ticks, sum(fields) / self.ticks

    @staticmethod
    def _own() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    def report(self) -> dict[str, Any]:
        busy, total = self._system()
        wall = time.monotonic() - self.start_wall
        others = max(0.0, (busy - self.start_busy) - (self._own() - self.start_own))
        cores = len(os.sched_getaffinity(0))
        return {
            "wall_s": wall,
            "other_cpu_s": others,
            "other_share": others / max(1e-9, (total - self.start_total)),
            "other_cores": others / max(1e-9, wall),
            "cores": cores,
            "load_start": " ".join(self.load_start),
            "load_end": " ".join(read_text("/proc/loadavg").split()[:3]),
            "others": other_test_processes(),
        }


def other_test_processes() -> list[str]:
    """Names of pytest / python processes that are not this benchmark or its ancestors."""
    mine = {os.getpid()}
    pid = os.getppid()
    while pid > 1 and pid not in mine:
        mine.add(pid)
        stat = read_text(f"/proc/{pid}/stat")
        pid = int(stat.rsplit(")", 1)[1].split()[1]) if stat else 1
    seen = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        cmdline = read_text(f"/proc/{entry.name}/cmdline").replace("\0", " ").strip()
        if "pytest" in cmdline or "core.worker" in cmdline or "streamlit" in cmdline:
            seen.append(cmdline[:80])
    return seen


# --- tracing the product path -----------------------------------------------------------
class Trace:
    """Timestamps of one `train()` call: wrapped core functions and worker log lines."""

    def __init__(self) -> None:
        self.spans: dict[str, tuple[float, float]] = {}
        self.marks: dict[str, float] = {}
        self.worker_pid: int | None = None
        self.on_mark: Callable[[str, Trace], None] | None = None

    def echo(self, line: str) -> None:
        now = time.perf_counter()
        for key, needle in WORKER_MARKS.items():
            if key not in self.marks and needle in line:
                self.marks[key] = now
                if key == "started":
                    found = re.search(r"worker pid (\d+)", line)
                    self.worker_pid = int(found.group(1)) if found else None
                    if self.worker_pid:
                        threading.Thread(
                            target=self._watch_exit, args=(self.worker_pid,), daemon=True
                        ).start()
                if self.on_mark:
                    self.on_mark(key, self)

    def _watch_exit(self, pid: int) -> None:
        """Record the moment the worker process ends (a pidfd turns readable), no polling."""
        try:
            fd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            return
        try:
            if select.select([fd], [], [], 3600)[0]:
                self.marks["exited"] = time.perf_counter()
        finally:
            os.close(fd)

    def span(self, name: str) -> float:
        start, end = self.spans[name]
        return end - start

    def phases(self, total: float) -> dict[str, float]:
        s, m = self.spans, self.marks
        run_start, run_end = s["run"]
        store_start, store_end = s["put_file"]
        complete_start, _ = s["complete"]
        submit_total = self.span("submit")
        phases = {
            "submit_load": self.span("load_dataset"),
            "submit_fingerprint": self.span("fingerprint"),
            "submit_queue": submit_total - self.span("load_dataset") - self.span("fingerprint"),
            "execute_setup": run_start - s["execute"][0],
            "worker_start": m["started"] - run_start,
            "worker_load": m["loaded"] - m["started"],
            "worker_frame": m["fitting"] - m["loaded"],
            "worker_fit": m["fit_done"] - m["fitting"],
            "worker_evaluate": m["evaluated"] - m["fit_done"],
            "worker_dump": m["wrote"] - m["evaluated"],
            "worker_exit": m.get("exited", run_end) - m["wrote"],
            "builder_poll": run_end - m.get("exited", run_end),
            "store": store_end - store_start,
            "provenance": complete_start - store_end,
        }
        phases["registry"] = (s["execute"][1] - run_end) - phases["store"] - phases["provenance"]
        phases["other"] = total - submit_total - self.span("execute")
        return phases


_CURRENT: list[Trace] = []


def _timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            if _CURRENT:
                _CURRENT[-1].spans.setdefault(name, (started, time.perf_counter()))

    return wrapper


@contextmanager
def traced_product_path() -> Iterator[None]:
    """Timing-only wrappers around the functions `core.builds.train` calls (restored after)."""
    import core.builds
    from core.artifacts import ArtifactStore
    from core.builders.local import LocalBuilder
    from core.registry import Registry

    targets = [
        (core.builds, "submit", "submit"),
        (core.builds, "execute", "execute"),
        (core.builds, "load_dataset", "load_dataset"),
        (core.builds, "fingerprint", "fingerprint"),
        (LocalBuilder, "run", "run"),
        (ArtifactStore, "put_file", "put_file"),
        (Registry, "complete", "complete"),
    ]
    saved = [(owner, attr, owner.__dict__[attr]) for owner, attr, _ in targets]
    try:
        for owner, attr, name in targets:
            setattr(owner, attr, _timed(name, owner.__dict__[attr]))
        yield
    finally:
        for owner, attr, original in saved:
            setattr(owner, attr, original)


# --- measurements ------------------------------------------------------------------------
class Prepared:
    """The dataset as model input, and the split `fit_and_evaluate` would make."""

    def __init__(self, data: Path) -> None:
        import numpy as np

        from core.dataset import LABEL, REQUEST_ID, load_dataset
        from core.evaluate import make_split
        from core.features import to_frame

        self.dataset = load_dataset(data)
        self.frame = to_frame(self.dataset.records)
        self.labels = np.array([bool(r[LABEL]) for r in self.dataset.records])
        ids = [r[REQUEST_ID] for r in self.dataset.records]
        from core.builds import TrainRequest

        defaults = TrainRequest(recipe=RECIPE_NAMES[0])  # the split `train` will make
        self.split = make_split(ids, self.labels.tolist(), defaults.seed, defaults.test_size)
        self.train_x = self.frame.iloc[self.split.train_index]
        self.train_y = self.labels[self.split.train_index]
        self.test_x = self.frame.iloc[self.split.test_index]
        self.test_records = [self.dataset.records[i] for i in self.split.test_index]


def bare_fit(prepared: Prepared, recipe_name: str, blas_threads: int | None = None) -> float:
    """Seconds for pipeline(params).fit on the train rows + predict_proba on the test rows.

    `blas_threads=1` is a diagnostic (threadpoolctl limit), not what the product does.
    """
    from threadpoolctl import threadpool_limits

    from core.recipes import get_recipe

    recipe = get_recipe(recipe_name)
    params = recipe.resolve({})
    with threadpool_limits(blas_threads) if blas_threads else nullcontext():
        started = time.perf_counter()
        pipeline = recipe.pipeline(params).fit(prepared.train_x, prepared.train_y)
        pipeline.predict_proba(prepared.test_x)
        return time.perf_counter() - started


def product_train(data: Path, recipe_name: str, registry: Any) -> tuple[float, Any, Trace]:
    from core.builds import TrainRequest, train

    trace = Trace()
    _CURRENT.append(trace)
    try:
        request = TrainRequest(recipe=recipe_name, data_path=data, backend="local", force=True)
        started = time.perf_counter()
        version, _ = train(request, registry, echo=trace.echo)
        elapsed = time.perf_counter() - started
    finally:
        _CURRENT.pop()
    if version.status != "ready":
        raise RuntimeError(f"train {recipe_name} ended {version.status}: {version.error}")
    return elapsed, version, trace


def measure_train(
    prepared: Prepared, data: Path, registry: Any, repeats: int, warmup: int
) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {
        name: {"bare": [], "bare_1": [], "product": [], "phases": [], "version": None}
        for name in RECIPE_NAMES
    }
    with traced_product_path():
        for _ in range(warmup):  # first-call imports, page cache, lazy sklearn init
            for name in RECIPE_NAMES:
                bare_fit(prepared, name)
                product_train(data, name, registry)
        for repeat in range(repeats):
            for name in RECIPE_NAMES:
                slot = results[name]
                order = ("bare", "product") if repeat % 2 == 0 else ("product", "bare")
                for kind in order:
                    if kind == "bare":
                        slot["bare"].append(bare_fit(prepared, name))
                        slot["bare_1"].append(bare_fit(prepared, name, blas_threads=1))
                    else:
                        elapsed, version, trace = product_train(data, name, registry)
                        slot["product"].append(elapsed)
                        slot["phases"].append(trace.phases(elapsed))
                        slot["version"] = version
                print(
                    f"  train {name} repeat {repeat + 1}/{repeats}: "
                    f"product {seconds(slot['product'][-1])}, bare {seconds(slot['bare'][-1])}",
                    file=sys.stderr,
                    flush=True,
                )
    return results


def measure_predict(prepared: Prepared, version: Any, calls: int) -> dict[str, Any]:
    from core.features import to_frame
    from core.predict import load_model, make_request, predict_proba

    started = time.perf_counter()
    model = load_model(version)
    load_s = time.perf_counter() - started
    pairs = [
        (r["request_title"], r["request_text_edit_aware"])
        for r in prepared.test_records
        if r["request_title"].strip() or r["request_text_edit_aware"].strip()
    ]
    frames = [to_frame([make_request(title, text)]) for title, text in pairs]
    product_ns: list[int] = []
    bare_ns: list[int] = []
    clock = time.perf_counter_ns
    for index in range(PREDICT_WARMUP + calls):
        title, text = pairs[index % len(pairs)]
        frame = frames[index % len(frames)]
        for kind in ("product", "bare") if index % 2 == 0 else ("bare", "product"):
            if kind == "product":
                t0 = clock()
                predict_proba(model, [make_request(title, text)])
                elapsed = clock() - t0
                if index >= PREDICT_WARMUP:
                    product_ns.append(elapsed)
            else:
                t0 = clock()
                model.predict_proba(frame)
                elapsed = clock() - t0
                if index >= PREDICT_WARMUP:
                    bare_ns.append(elapsed)
    parts: dict[str, list[int]] = {"make_request": [], "to_frame": []}
    for index in range(min(calls, 200)):
        title, text = pairs[index % len(pairs)]
        t0 = clock()
        record = make_request(title, text)
        t1 = clock()
        to_frame([record])
        t2 = clock()
        parts["make_request"].append(t1 - t0)
        parts["to_frame"].append(t2 - t1)
    product_ms = [v / 1e6 for v in product_ns]
    bare_ms = [v / 1e6 for v in bare_ns]
    return {
        "load_s": load_s,
        "calls": calls,
        "product_p50": quantile(product_ms, 0.5),
        "product_p99": quantile(product_ms, 0.99),
        "bare_p50": quantile(bare_ms, 0.5),
        "bare_p99": quantile(bare_ms, 0.99),
        "make_request_us": median(parts["make_request"]) / 1e3,
        "to_frame_us": median(parts["to_frame"]) / 1e3,
    }


def measure_imports(repeats: int) -> dict[str, float]:
    """Fresh-interpreter start-up with the worker's environment (median seconds)."""
    from core.builders.local import worker_env

    probes = {
        "python_start": "pass",
        "pipeline_libraries": (
            "import joblib, pandas, sklearn.compose, sklearn.feature_extraction.text, "
            "sklearn.linear_model, sklearn.naive_bayes, sklearn.pipeline, "
            "sklearn.preprocessing, sklearn.metrics, sklearn.model_selection"
        ),
        "core_worker": "import core.worker",
    }
    timings: dict[str, list[float]] = {name: [] for name in probes}
    for _ in range(max(1, repeats)):
        for name, code in probes.items():
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=worker_env(), check=True)
            timings[name].append(time.perf_counter() - started)
    return {name: median(values) for name, values in timings.items()}


def measure_memory(data: Path, recipe_name: str) -> dict[str, Any]:
    """One `train` in a fresh interpreter (this script's --memory-probe mode)."""
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--memory-probe", recipe_name, str(data)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"memory probe for {recipe_name} failed:\n{completed.stderr}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def vm_hwm_kib(pid: int) -> int | None:
    found = re.search(r"^VmHWM:\s*(\d+) kB", read_text(f"/proc/{pid}/status"), re.M)
    return int(found.group(1)) if found else None


def memory_probe(recipe_name: str, data: str) -> int:
    """Child mode: run one train; print the worker's peak RSS two ways, as JSON."""
    from core.builds import TrainRequest, train
    from core.registry import Registry

    registry = Registry()
    trace = Trace()
    peak: dict[str, int] = {}
    done = threading.Event()

    def poll(pid: int) -> None:
        while not done.is_set():
            value = vm_hwm_kib(pid)
            if value is None:
                return
            peak["hwm"] = max(peak.get("hwm", 0), value)
            time.sleep(0.005)

    def on_mark(key: str, current: Trace) -> None:
        if key == "started" and current.worker_pid:
            threading.Thread(target=poll, args=(current.worker_pid,), daemon=True).start()
        if key == "wrote" and current.worker_pid:  # the worker is about to exit
            value = vm_hwm_kib(current.worker_pid)
            if value is not None:
                peak["hwm"] = max(peak.get("hwm", 0), value)

    trace.on_mark = on_mark
    own_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    request = TrainRequest(recipe=recipe_name, data_path=data, backend="local", force=True)
    version, _ = train(request, registry, echo=trace.echo)
    done.set()
    print(
        json.dumps(
            {
                "status": version.status,
                "children_maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                "worker_hwm_kib": peak.get("hwm"),
                "parent_before_kib": own_before,
                "parent_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "artifact_size": version.artifact_size,
            }
        )
    )
    return 0 if version.status == "ready" else 1


# --- report ------------------------------------------------------------------------------
def render(
    info: dict[str, Any],
    data_note: str,
    args: argparse.Namespace,
    train: dict[str, dict[str, Any]],
    predict: dict[str, dict[str, Any]],
    memory: dict[str, dict[str, Any]],
    imports: dict[str, float],
    noise: dict[str, Any],
) -> str:
    out = [SECTION, ""]
    out.append(
        f"Measured {info['date']} on {info['nproc']} CPUs ({info['cpu']}), "
        f"{info['memory_gib']:.1f} GiB RAM, Python {info['python']} ({info['platform']}); "
        f"{info['packages']}; bytecode cache {info['bytecode_cache']}."
    )
    out.append("")
    out.append(
        f"Data: {data_note}. `train` is median of {args.repeats} "
        f"(after {args.warmup} warm-up round), product and bare runs interleaved; predict "
        f"latency over {args.calls:,} single-request calls per recipe (calls interleaved). "
        "Registry, artifacts and logs in a temporary folder."
    )
    out.append("")

    rows = []
    for name in RECIPE_NAMES:
        slot, mem, pred = train[name], memory[name], predict[name]
        product, bare = median(slot["product"]), median(slot["bare"])
        best = min(slot["product"]) / min(slot["bare"])
        rows.append(
            [
                f"`{name}`",
                f"{seconds(product)} ({spread(slot['product'])})",
                f"{seconds(bare)} ({spread(slot['bare'])})",
                f"+{(product / bare - 1) * 100:.0f}% (best-of: +{(best - 1) * 100:.0f}%)",
                f"{pred['product_p50']:.2f} / {pred['product_p99']:.2f} ms",
                f"{pred['bare_p50']:.2f} / {pred['bare_p99']:.2f} ms",
                f"{pred['product_p99'] / pred['bare_p99']:.2f}×",
                megabytes(mem["worker_hwm_kib"]),
                megabytes(mem["children_maxrss_kib"]),
                f"{mem['artifact_size'] / 1024:.0f} KiB",
            ]
        )
    out.append(
        table(
            [
                "recipe",
                "`train` end to end (min–max)",
                "bare fit + predict_proba (min–max)",
                "overhead (medians; best-of = min/min)",
                "predict p50 / p99",
                "bare p50 / p99",
                "p99 ratio",
                "worker peak RSS (VmHWM)",
                "RUSAGE_CHILDREN maxrss",
                "artifact",
            ],
            rows,
        )
    )
    out.append("")

    # Targets.
    target = train[TRAIN_TARGET_RECIPE]
    overhead = median(target["product"]) / median(target["bare"]) - 1
    best_overhead = min(target["product"]) / min(target["bare"]) - 1
    robust = {name: best_case(train[name]) for name in RECIPE_NAMES}
    estimate = robust[TRAIN_TARGET_RECIPE]
    reasons = noise_reasons(train, noise)
    out.append("Targets:")
    out.append("")
    if reasons:
        verdict = estimate["overhead"] <= TRAIN_TARGET_OVERHEAD
        out.append(
            f"- `train` overhead for `{TRAIN_TARGET_RECIPE}` ≤ +{TRAIN_TARGET_OVERHEAD:.0%}: "
            f"{pct(overhead)} on medians and {pct(best_overhead)} on the fastest runs, but "
            f"these are unreliable in this run ({'; '.join(reasons)}). Noise-robust "
            f"estimate: the smallest per-build cost outside fit + evaluation "
            f"({seconds(estimate['fixed'])}) over the fastest bare fit seen, default or one "
            f"BLAS thread ({seconds(estimate['bare'])}) = {pct(estimate['overhead'])} → "
            f"{'met' if verdict else '**MISSED**'}."
        )
    else:
        verdict = overhead <= TRAIN_TARGET_OVERHEAD
        out.append(
            f"- `train` overhead for `{TRAIN_TARGET_RECIPE}` ≤ +{TRAIN_TARGET_OVERHEAD:.0%}: "
            f"{pct(overhead)} on medians ({pct(best_overhead)} on the fastest runs; "
            f"noise-robust estimate {pct(estimate['overhead'])}) → "
            f"{'met' if verdict else '**MISSED**'}."
        )
    p99_worst = max(p["product_p99"] for p in predict.values())
    ratio_worst = max(p["product_p99"] / p["bare_p99"] for p in predict.values())
    p50_ratio_worst = max(p["product_p50"] / p["bare_p50"] for p in predict.values())
    p50_worst = max(p["product_p50"] for p in predict.values())
    out.append(
        f"- predict p99 ≤ {P99_TARGET_MS:g} ms: worst {p99_worst:.2f} ms (worst p50 "
        f"{p50_worst:.2f} ms) → {'met' if p99_worst <= P99_TARGET_MS else '**MISSED**'}"
        + (" (p99 includes scheduler delays from the other load)." if reasons else ".")
    )
    ratio_ok = max(ratio_worst, p50_ratio_worst) <= PREDICT_RATIO_TARGET
    out.append(
        f"- predict ≤ {PREDICT_RATIO_TARGET:g}× bare: worst p99 ratio {ratio_worst:.2f}×, "
        f"worst p50 ratio {p50_ratio_worst:.2f}× → {'met' if ratio_ok else '**MISSED**'}."
    )
    out.append("")

    # Breakdown.
    out.append(
        "Where `train` time goes (median per phase over the repeats; phases come from "
        "timing-only wrappers around core functions and the worker's log lines):"
    )
    out.append("")
    phase_rows = []
    medians = {
        name: {key: median([p[key] for p in train[name]["phases"]]) for key, _ in PHASES}
        for name in RECIPE_NAMES
    }
    for key, label in PHASES:
        phase_rows.append([label, *(seconds(medians[name][key]) for name in RECIPE_NAMES)])
    phase_rows.append(
        [
            "**`train` end to end**",
            *(f"**{seconds(median(train[n]['product']))}**" for n in RECIPE_NAMES),
        ]
    )
    phase_rows.append(
        ["bare fit + predict_proba (in-process)"]
        + [seconds(median(train[n]["bare"])) for n in RECIPE_NAMES]
    )
    phase_rows.append(
        ["same, limited to 1 BLAS thread (diagnostic only)"]
        + [seconds(median(train[n]["bare_1"])) for n in RECIPE_NAMES]
    )
    out.append(table(["phase", *(f"`{n}`" for n in RECIPE_NAMES)], phase_rows))
    out.append("")
    out.append(
        f"Fresh interpreter with the worker's environment (median of {max(1, args.repeats)}): "
        f"`python -c pass` {seconds(imports['python_start'])}, importing only the libraries the "
        f"pipelines, metrics and split need {seconds(imports['pipeline_libraries'])}, "
        f"`import core.worker` {seconds(imports['core_worker'])}."
    )
    out.append("")

    # Findings.
    out.append("Findings:")
    out.append("")
    meta = estimate["phases"]
    labels = dict(PHASES)
    fixed_keys = [k for k, _ in PHASES if k not in ("worker_fit", "worker_evaluate")]
    biggest = sorted(fixed_keys, key=lambda k: meta[k], reverse=True)[:4]
    out.append(
        "- Fixed cost per build (everything but the worker's fit and evaluation; fastest run / "
        "median): "
        + ", ".join(
            f"`{n}` {seconds(robust[n]['fixed'])} / {seconds(median(robust[n]['all_fixed']))}"
            for n in RECIPE_NAMES
        )
        + ". It does not grow with the fit, so the ratio is worst for the fastest recipe. "
        f"In `{TRAIN_TARGET_RECIPE}`'s fastest build it is dominated by: "
        + "; ".join(f"{labels[k]} {seconds(meta[k])}" for k in biggest)
        + "."
    )
    removable = meta["worker_start"] + meta["worker_exit"] + meta["builder_poll"]
    after_start = estimate["fixed"] - removable
    after_parse = after_start - meta["worker_load"]
    out.append(
        f"- What it would take for `{TRAIN_TARGET_RECIPE}` (estimates by subtracting measured "
        f"phases of its fastest build, not measurements of a changed product): a pre-started "
        f"worker (no interpreter start + imports, no teardown, no 0.25 s poll) would remove "
        f"{seconds(removable)}, leaving {seconds(after_start)} of fixed cost = "
        f"{pct(after_start / estimate['bare'])} over the fastest bare fit; also not parsing "
        f"the dataset a second time in the worker would leave {seconds(after_parse)} = "
        f"{pct(after_parse / estimate['bare'])}, of which the artifact dump is "
        f"{seconds(meta['worker_dump'])} and the parent's own dataset check "
        f"{seconds(meta['submit_load'])}."
    )
    bare_default, bare_1 = median(target["bare"]), median(target["bare_1"])
    out.append(
        f"- BLAS threads ({info['blas']}): the bare `{TRAIN_TARGET_RECIPE}` fit + "
        f"predict_proba took {seconds(bare_default)} ({spread(target['bare'])}) with the "
        f"default thread pools and {seconds(bare_1)} ({spread(target['bare_1'])}) limited "
        "to one thread by threadpoolctl, measured back to back (diagnostic only; the product "
        "and the bare runs above both use the defaults)."
        + (
            " Under CPU contention the multi-threaded BLAS pools slow this fit down "
            f"{bare_default / bare_1:.1f}×: limiting the worker to one BLAS thread would make "
            "builds far more predictable on a busy machine."
            if bare_default > 1.5 * bare_1
            else ""
        )
    )
    out.append(
        "- predict: the product path adds `make_request` (validation) and `to_frame` "
        "(one-row DataFrame) to the bare call; medians per call: "
        + ", ".join(
            f"`{n}` {predict[n]['make_request_us']:.0f} µs + {predict[n]['to_frame_us']:.0f} µs"
            for n in RECIPE_NAMES
        )
        + "; model load (sha256 check + joblib.load): "
        + ", ".join(f"`{n}` {seconds(predict[n]['load_s'])}" for n in RECIPE_NAMES)
        + "."
    )
    out.append(
        "- Peak memory: `getrusage(RUSAGE_CHILDREN).ru_maxrss` in a fresh process that runs "
        "one `train` reports max(worker peak, that parent's RSS when it spawned the worker), "
        "because Linux charges the pre-exec address space to the child; VmHWM polled from "
        "`/proc/<worker pid>/status` every 5 ms is the worker's own peak. Parent orchestrator "
        "peak: "
        + ", ".join(f"`{n}` {megabytes(memory[n]['parent_maxrss_kib'])}" for n in RECIPE_NAMES)
        + "."
    )
    out.append("")

    # Noise.
    others = noise["others"]
    out.append(
        f"Noise: other processes used {noise['other_cpu_s']:.0f} CPU-seconds "
        f"({noise['other_cores']:.2f} of {noise['cores']} cores on average) during the "
        f"{noise['wall_s']:.0f} s run; load average {noise['load_start']} at start, "
        f"{noise['load_end']} at end"
        + (
            f"; {len(others)} other pytest/worker/dashboard processes seen at the end"
            if others
            else ""
        )
        + "."
        + (
            " Absolute times and the median ratios are distorted by that contention (the "
            "min–max spreads show it; BLAS-threaded fits slow down the most, so a slowed bare "
            "fit can even make the product look cheap); compare the noise-robust estimate, "
            "which sets the smallest fixed cost against the fastest bare fit (default or one "
            "BLAS thread)."
            if reasons
            else " The machine was otherwise quiet."
        )
    )
    out.append("")
    return "\n".join(out)


# --- main --------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, help=f"dataset (default {DEFAULT_DATA}, else data/sample.json)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="train repeats (median)")
    parser.add_argument("--calls", type=int, default=1000, help="predict calls per recipe")
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up train rounds")
    parser.add_argument("--no-write", action="store_true", help="do not touch docs/")
    parser.add_argument("--doc", type=Path, default=DOC, help=argparse.SUPPRESS)
    parser.add_argument(
        "--memory-probe", nargs=2, metavar=("RECIPE", "DATA"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.calls < 2 or args.warmup < 0:
        parser.error("--repeats must be ≥ 1, --calls ≥ 2, --warmup ≥ 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.memory_probe:
        return memory_probe(*args.memory_probe)

    if args.data is not None:
        data = args.data.expanduser().resolve()
        if not data.is_file():
            print(f"error: --data {data} not found", file=sys.stderr)
            return 2
        data_note = f"`{args.data}`"
    elif DEFAULT_DATA.is_file():
        data = DEFAULT_DATA
        data_note = "`../shared/data/raop/train.json.zip`"
    else:
        data = SAMPLE_DATA
        print(
            f"note: {DEFAULT_DATA} not found; falling back to data/sample.json "
            "(synthetic, 400 requests)"
        )
        data_note = "`data/sample.json` (fallback: the shared RAOP data was not found)"

    home = Path(tempfile.mkdtemp(prefix="altruism-core-bench-"))
    os.environ["REGISTRY_URL"] = f"sqlite:///{home / 'registry.db'}"
    os.environ["ARTIFACT_ROOT"] = str(home / "artifacts")
    os.environ["LOG_ROOT"] = str(home / "logs")
    try:
        from core.config import settings
        from core.registry import Registry

        assert str(home) in settings().registry_url, "refusing to use the checkout's registry"
        noise = CpuMonitor()
        info = machine()
        prepared = Prepared(data)
        data_note += f", {prepared.dataset.rows:,} requests ({len(prepared.split.test_index)} test)"
        print(f"benchmarking on {data} in {home}", file=sys.stderr, flush=True)
        registry = Registry()
        train = measure_train(prepared, data, registry, args.repeats, args.warmup)
        predict = {}
        for name in RECIPE_NAMES:
            predict[name] = measure_predict(prepared, train[name]["version"], args.calls)
            print(f"  predict {name}: done", file=sys.stderr, flush=True)
        memory = {}
        for name in RECIPE_NAMES:
            memory[name] = measure_memory(data, name)
            print(f"  memory {name}: done", file=sys.stderr, flush=True)
        imports = measure_imports(args.repeats)
        section = render(info, data_note, args, train, predict, memory, imports, noise.report())
    finally:
        shutil.rmtree(home, ignore_errors=True)

    print(section)
    if not args.no_write:
        write_section(SECTION, section, args.doc)
        print(f"wrote the section '{SECTION}' of {args.doc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
