"""Core benchmark: what `train` adds to a bare sklearn fit, predict latency, memory, size.

Run from the repository root:

    .venv/bin/python bench/core_bench.py [--data PATH] [--repeats 5] [--calls 1000] [--no-write]

Everything runs against a temporary REGISTRY_URL / ARTIFACT_ROOT / LOG_ROOT (never the
checkout's registry.db). Results are printed as markdown and, unless --no-write, stored in
docs/benchmarks.md under "## Core (bench/core_bench.py)" (other sections are left alone).

What is measured, per recipe (median of --repeats; in each repeat the three `train`
measurements run back to back in a rotating order, so machine noise hits all of them):

* bare: `recipe.pipeline(params).fit` on the train rows + `predict_proba` on the test rows of
  the split `train` makes, in this process, on a frame prepared beforehand.
* (A) "registry, provenance and evaluation": `builds.submit` + `builds.execute` with
  `InProcessBuilder`, which runs `core.worker.run_job` in this process instead of a fresh
  subprocess. Everything else is the product's own code (request validation, dataset load and
  hash, fingerprint, registry rows, the worker's load/validate/split/fit/evaluate/dump, artifact
  store, provenance, registry completion). Target: A ≤ 1.25 × bare for tfidf-meta-logreg.
* (B) the local builder end to end: `builds.train(backend="local")`, i.e. (A) plus a fresh
  worker subprocess (spawn, interpreter start, imports, exit). Target: B ≤ bare + 2 s.

The bare fit and (A) run with BLAS/OpenMP limited to one thread (threadpoolctl), because every
worker, including (B)'s, runs single-threaded (`core.builders.base.WORKER_ENV`).

* predict: `core.predict.predict_proba(model, [make_request(title, text)])` vs bare
  `pipeline.predict_proba(one_row_frame)` with the frame prepared beforehand; calls are
  interleaved one by one (default thread pools on both sides).
* memory: one `train` in a fresh subprocess; `getrusage(RUSAGE_CHILDREN).ru_maxrss` there, and
  the worker's own VmHWM polled from /proc.

With `--scale smoke|full|huge` it measures the Scale section instead (bench/scale.py): the
CLI and `train` as whole processes at 2 to 50,000 versions and 1× to 30× the data, stored
under "## Scale (bench/core_bench.py --scale full)".
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import machine as shared_machine  # noqa: E402
from bench.common import quantile, read_text, table, write_section  # noqa: E402
from core.builders.base import (  # noqa: E402
    Builder,
    BuildJob,
    BuildLog,
    BuildOutcome,
    collect,
    read_outputs,
    write_job,
)

DEFAULT_DATA = (ROOT / ".." / "shared" / "data" / "raop" / "train.json.zip").resolve()
SAMPLE_DATA = ROOT / "data" / "sample.json"
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Core (bench/core_bench.py)"
RECIPE_NAMES = ("nb-bow", "tfidf-logreg", "tfidf-meta-logreg")
TARGET_RECIPE = "tfidf-meta-logreg"
TARGET_IN_PROCESS_RATIO = 1.25  # (A) ≤ 1.25 × bare fit + predict_proba
TARGET_LOCAL_OVER_BARE_S = 2.0  # (B) ≤ bare fit + predict_proba + 2 s
P99_TARGET_MS = 5.0
PREDICT_RATIO_TARGET = 1.5
PREDICT_WARMUP = 20
KINDS = ("bare", "in_process", "local")

# (key, label) of (A)'s breakdown rows, in the order the product path runs them.
PHASES = (
    ("submit", "submit: validate request, load + validate + hash dataset, fingerprint, queue"),
    (
        "worker_prepare",
        "worker: load + validate + hash dataset again, frame, split, environment, result.json",
    ),
    ("fit", "worker: fit"),
    ("evaluate", "worker: predict_proba + metrics + curves"),
    ("dump", "worker: joblib.dump(compress=3)"),
    ("around", "execute around the worker: registry rows, log, artifact store, provenance"),
)


# --- small helpers -----------------------------------------------------------------------
def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def seconds(value: float) -> str:
    return f"{value:.2f} s" if abs(value) >= 1 else f"{value * 1000:.0f} ms"


def with_spread(values: list[float]) -> str:
    if len(values) < 2:
        return seconds(median(values))
    return f"{seconds(median(values))} ({seconds(min(values))}–{seconds(max(values))})"


def megabytes(kib: float | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:.0f} MB"


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def blas_pools() -> str:
    """The BLAS/OpenMP thread pools loaded in this process and their sizes."""
    from threadpoolctl import threadpool_info

    pools = [
        f"{p['internal_api']} ({Path(p['filepath']).parent.name.removesuffix('.libs')}) "
        f"{p['num_threads']}"
        for p in threadpool_info()
    ]
    return ", ".join(pools) or "none"


def machine() -> dict[str, Any]:
    import scipy.linalg  # noqa: F401  (load the BLAS/OpenMP pools the recipes use)
    import sklearn.linear_model  # noqa: F401

    from core.provenance import package_versions

    packages = package_versions()
    return shared_machine() | {
        "blas": blas_pools(),
        "packages": ", ".join(
            f"{n} {packages[n]}" for n in ("scikit-learn", "numpy", "scipy", "pandas")
        ),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


# --- the product path with the worker in this process -----------------------------------
class InProcessBuilder(Builder):
    """The local builder without the subprocess: `core.worker.run_job` runs in this process.

    Records the worker's own timings of its last run in `last` (for the breakdown).
    """

    name = "in-process"

    def __init__(self) -> None:
        self.last: dict[str, float] = {}

    def run(
        self, job: BuildJob, work_dir: Path, log: BuildLog, should_cancel: Callable[[], bool]
    ) -> BuildOutcome:
        from core.worker import run_job

        _, out = write_job(job, work_dir)
        spec = job.spec(str(job.data_file))
        lines = io.StringIO()
        started = time.perf_counter()
        try:
            with contextlib.redirect_stdout(lines):  # the worker logs to stdout
                result = run_job(spec, out)
        finally:
            for line in lines.getvalue().splitlines():
                log(line)
        self.last = {
            "worker": time.perf_counter() - started,
            "fit": result["fit_seconds"],
            "evaluate": result["evaluate_seconds"],
            "dump": result["dump_seconds"],
        }
        return collect(read_outputs(out), 0, {"in_process": True})


# --- measurements ------------------------------------------------------------------------
class Prepared:
    """The dataset as model input, and the split `fit_and_evaluate` would make."""

    def __init__(self, data: Path) -> None:
        import numpy as np

        from core.builds import TrainRequest
        from core.dataset import LABEL, REQUEST_ID, load_dataset
        from core.evaluate import make_split
        from core.features import to_frame

        self.dataset = load_dataset(data)
        frame = to_frame(self.dataset.records)
        labels = np.array([bool(r[LABEL]) for r in self.dataset.records])
        ids = [r[REQUEST_ID] for r in self.dataset.records]
        defaults = TrainRequest(recipe=RECIPE_NAMES[0])  # the split `train` will make
        self.split = make_split(ids, labels.tolist(), defaults.seed, defaults.test_size)
        self.train_x = frame.iloc[self.split.train_index]
        self.train_y = labels[self.split.train_index]
        self.test_x = frame.iloc[self.split.test_index]
        self.test_records = [self.dataset.records[i] for i in self.split.test_index]


def bare_fit(prepared: Prepared, recipe_name: str) -> float:
    """Seconds for pipeline(params).fit on the train rows + predict_proba on the test rows."""
    from core.recipes import get_recipe

    recipe = get_recipe(recipe_name)
    params = recipe.resolve({})
    started = time.perf_counter()
    pipeline = recipe.pipeline(params).fit(prepared.train_x, prepared.train_y)
    pipeline.predict_proba(prepared.test_x)
    return time.perf_counter() - started


def request_for(recipe_name: str, data: Path) -> Any:
    from core.builds import TrainRequest

    return TrainRequest(recipe=recipe_name, data_path=data, backend="local", force=True)


def checked(version: Any, what: str) -> Any:
    if version.status != "ready":
        raise RuntimeError(f"{what} ended {version.status}: {version.error}")
    return version


def in_process_train(data: Path, recipe_name: str, registry: Any) -> tuple[float, dict]:
    """(A): `train` with the worker in this process; seconds and the per-phase breakdown."""
    from core import builds

    builder = InProcessBuilder()
    started = time.perf_counter()
    submission = builds.submit(request_for(recipe_name, data), registry)
    submitted = time.perf_counter()
    version = builds.execute(submission.version.id, registry, builder=builder)
    elapsed = time.perf_counter() - started
    checked(version, f"in-process train {recipe_name}")
    worker = builder.last
    phases = {
        "submit": submitted - started,
        "worker_prepare": worker["worker"] - worker["fit"] - worker["evaluate"] - worker["dump"],
        "fit": worker["fit"],
        "evaluate": worker["evaluate"],
        "dump": worker["dump"],
        "around": (elapsed - (submitted - started)) - worker["worker"],
    }
    return elapsed, phases


def local_train(data: Path, recipe_name: str, registry: Any) -> tuple[float, Any]:
    """(B): `builds.train` with the local builder (a fresh worker subprocess)."""
    from core import builds

    started = time.perf_counter()
    version, _ = builds.train(request_for(recipe_name, data), registry)
    elapsed = time.perf_counter() - started
    return elapsed, checked(version, f"local train {recipe_name}")


def measure_train(
    prepared: Prepared, data: Path, registry: Any, repeats: int, warmup: int
) -> tuple[dict[str, dict[str, Any]], str]:
    """Per recipe: lists of seconds per kind, (A)'s phases, the last (B) version; and the
    BLAS/OpenMP pools as they were during the runs."""
    from threadpoolctl import threadpool_limits

    results: dict[str, dict[str, Any]] = {
        name: {"bare": [], "in_process": [], "local": [], "phases": [], "version": None}
        for name in RECIPE_NAMES
    }
    with threadpool_limits(limits=1):  # the bare fit and (A); (B)'s worker has WORKER_ENV
        for round_ in range(warmup + repeats):
            timed = round_ >= warmup
            shift = round_ % len(KINDS)
            for name in RECIPE_NAMES:
                slot = results[name]
                for kind in KINDS[shift:] + KINDS[:shift]:
                    if kind == "bare":
                        elapsed = bare_fit(prepared, name)
                    elif kind == "in_process":
                        elapsed, phases = in_process_train(data, name, registry)
                        if timed:
                            slot["phases"].append(phases)
                    else:
                        elapsed, slot["version"] = local_train(data, name, registry)
                    if timed:
                        slot[kind].append(elapsed)
                label = f"repeat {round_ - warmup + 1}/{repeats}" if timed else "warm-up"
                print(
                    f"  train {name} {label}: bare {seconds(elapsed_of(slot, 'bare'))}, "
                    f"(A) {seconds(elapsed_of(slot, 'in_process'))}, "
                    f"(B) {seconds(elapsed_of(slot, 'local'))}",
                    file=sys.stderr,
                    flush=True,
                )
        pools = blas_pools()
    return results, pools


def elapsed_of(slot: dict[str, Any], kind: str) -> float:
    return slot[kind][-1] if slot[kind] else float("nan")


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
            t0 = clock()
            if kind == "product":
                predict_proba(model, [make_request(title, text)])
            else:
                model.predict_proba(frame)
            elapsed = clock() - t0
            if index >= PREDICT_WARMUP:
                (product_ns if kind == "product" else bare_ns).append(elapsed)
    product_ms = [v / 1e6 for v in product_ns]
    bare_ms = [v / 1e6 for v in bare_ns]
    return {
        "load_s": load_s,
        "product_p50": quantile(product_ms, 0.5),
        "product_p99": quantile(product_ms, 0.99),
        "bare_p50": quantile(bare_ms, 0.5),
        "bare_p99": quantile(bare_ms, 0.99),
    }


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
    """Child mode: run one local `train`; print the worker's peak RSS two ways, as JSON."""
    from core.builds import train
    from core.registry import Registry

    peak: dict[str, int] = {}
    done = threading.Event()
    worker: list[int] = []

    def poll(pid: int) -> None:
        while not done.is_set() and (value := vm_hwm_kib(pid)) is not None:
            peak["hwm"] = max(peak.get("hwm", 0), value)
            time.sleep(0.005)

    def echo(line: str) -> None:
        found = re.search(r"worker pid (\d+)", line)
        if found and not worker:
            worker.append(int(found.group(1)))
            threading.Thread(target=poll, args=(worker[0],), daemon=True).start()
        if "wrote model.joblib" in line and worker:  # the worker is about to exit
            value = vm_hwm_kib(worker[0])
            if value is not None:
                peak["hwm"] = max(peak.get("hwm", 0), value)

    version, _ = train(request_for(recipe_name, Path(data)), Registry(), echo=echo)
    done.set()
    print(
        json.dumps(
            {
                "status": version.status,
                "children_maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                "worker_hwm_kib": peak.get("hwm"),
                "artifact_size": version.artifact_size,
            }
        )
    )
    return 0 if version.status == "ready" else 1


# --- report ------------------------------------------------------------------------------
def paired(slot: dict[str, Any], kind: str, combine: Callable[[float, float], float]) -> float:
    """Median over repeats of combine(kind, bare), both measured in the same repeat."""
    return median([combine(x, b) for x, b in zip(slot[kind], slot["bare"], strict=True)])


def render(
    info: dict[str, Any],
    data_note: str,
    args: argparse.Namespace,
    train: dict[str, dict[str, Any]],
    pools_during: str,
    predict: dict[str, dict[str, Any]],
    memory: dict[str, dict[str, Any]],
) -> str:
    ratio = {n: paired(train[n], "in_process", lambda x, b: x / b) for n in RECIPE_NAMES}
    extra = {n: paired(train[n], "local", lambda x, b: x - b) for n in RECIPE_NAMES}
    out = [SECTION, ""]
    out.append(
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory_gib']:.1f} GiB RAM, "
        f"Python {info['python']} ({info['platform']}); {info['packages']}; BLAS/OpenMP "
        f"thread pools by default: {info['blas']}. Measured {info['date']}; load average "
        f"{info['load']} at the start, {info['load_end']} at the end."
    )
    out.append("")
    out.append(
        f"Data: {data_note}. `train` timings: median of {args.repeats} repeat(s) (min–max in "
        f"brackets) after {args.warmup} warm-up round(s); in each repeat the bare fit, (A) and "
        "(B) run back to back in a rotating order. **The bare fit and (A) run with BLAS/OpenMP "
        "limited to one thread** (`threadpoolctl.threadpool_limits(1)`; pools during the runs: "
        f"{pools_during}), because the workers run single-threaded (`WORKER_ENV`: "
        "`OMP_NUM_THREADS`, `OPENBLAS_NUM_THREADS`, `MKL_NUM_THREADS` = 1), (B)'s included. "
        "Registry, artifacts and logs in a temporary folder."
    )
    out.append("")
    rows = [
        [
            f"`{name}`",
            with_spread(train[name]["bare"]),
            with_spread(train[name]["in_process"]),
            f"{ratio[name]:.2f}×",
            with_spread(train[name]["local"]),
            f"+{seconds(extra[name])}",
        ]
        for name in RECIPE_NAMES
    ]
    out.append(
        table(
            [
                "recipe",
                "bare fit + predict_proba",
                "(A) `train`, worker in-process",
                "A ÷ bare",
                "(B) `train`, local builder",
                "B − bare",
            ],
            rows,
        )
    )
    out.append("")
    rows = [
        [
            f"`{name}`",
            f"{predict[name]['product_p50']:.2f} / {predict[name]['product_p99']:.2f} ms",
            f"{predict[name]['bare_p50']:.2f} / {predict[name]['bare_p99']:.2f} ms",
            f"{predict[name]['product_p50'] / predict[name]['bare_p50']:.2f}× / "
            f"{predict[name]['product_p99'] / predict[name]['bare_p99']:.2f}×",
            seconds(predict[name]["load_s"]),
            megabytes(memory[name]["worker_hwm_kib"]),
            megabytes(memory[name]["children_maxrss_kib"]),
            f"{memory[name]['artifact_size'] / 1024:.0f} KiB",
        ]
        for name in RECIPE_NAMES
    ]
    out.append(
        table(
            [
                "recipe",
                "predict p50 / p99",
                "bare p50 / p99",
                "ratio p50 / p99",
                "model load",
                "worker peak RSS (VmHWM)",
                "RUSAGE_CHILDREN maxrss",
                "artifact",
            ],
            rows,
        )
    )
    out.append("")

    others = [n for n in RECIPE_NAMES if n != TARGET_RECIPE]
    p99_worst = max(RECIPE_NAMES, key=lambda n: predict[n]["product_p99"])
    ratio_worst = max(
        max(p["product_p50"] / p["bare_p50"], p["product_p99"] / p["bare_p99"])
        for p in predict.values()
    )
    out.append("Targets: (A) and (B) judged on the median of the per-repeat ratios / differences.")
    out.append("")
    out.append(
        f"- (A) registry, provenance and evaluation add at most "
        f"{TARGET_IN_PROCESS_RATIO - 1:.0%} for `{TARGET_RECIPE}`: "
        f"{ratio[TARGET_RECIPE]:.2f}× the bare fit → "
        f"{verdict(ratio[TARGET_RECIPE] <= TARGET_IN_PROCESS_RATIO)}. Other recipes, for "
        "information: " + ", ".join(f"`{n}` {ratio[n]:.2f}×" for n in others) + "."
    )
    out.append(
        f"- (B) local builder end to end ≤ bare fit + {TARGET_LOCAL_OVER_BARE_S:g} s for "
        f"`{TARGET_RECIPE}`: +{seconds(extra[TARGET_RECIPE])} → "
        f"{verdict(extra[TARGET_RECIPE] <= TARGET_LOCAL_OVER_BARE_S)}. Other recipes: "
        + ", ".join(f"`{n}` +{seconds(extra[n])}" for n in others)
        + "."
    )
    out.append(
        f"- predict p99 ≤ {P99_TARGET_MS:g} ms: worst "
        f"{predict[p99_worst]['product_p99']:.2f} ms (`{p99_worst}`) → "
        f"{verdict(predict[p99_worst]['product_p99'] <= P99_TARGET_MS)}."
    )
    out.append(
        f"- predict ≤ {PREDICT_RATIO_TARGET:g}× bare: worst ratio (p50 or p99) "
        f"{ratio_worst:.2f}× → {verdict(ratio_worst <= PREDICT_RATIO_TARGET)}."
    )
    out.append("")

    out.append("Where (A)'s time goes (median per phase):")
    out.append("")
    phase_rows = [
        [label, *(seconds(median([p[key] for p in train[n]["phases"]])) for n in RECIPE_NAMES)]
        for key, label in PHASES
    ]
    phase_rows.append(
        ["**(A) total**", *(f"**{seconds(median(train[n]['in_process']))}**" for n in RECIPE_NAMES)]
    )
    phase_rows.append(
        ["bare fit + predict_proba", *(seconds(median(train[n]["bare"])) for n in RECIPE_NAMES)]
    )
    out.append(table(["phase", *(f"`{n}`" for n in RECIPE_NAMES)], phase_rows))
    out.append("")
    worker_cost = {
        n: median([b - a for a, b in zip(train[n]["in_process"], train[n]["local"], strict=True)])
        for n in RECIPE_NAMES
    }
    out.append(
        "Notes: (B) − (A), the cost of the fresh worker process (spawn, interpreter start, "
        "imports, exit, the builder's poll): "
        + ", ".join(f"`{n}` {seconds(worker_cost[n])}" for n in RECIPE_NAMES)
        + f". Predict latency over {args.calls:,} single-request calls per recipe on the "
        "model (B) built; the product call adds `make_request` (validation) and `to_frame` "
        "(one-row DataFrame) to the bare `predict_proba`. Peak memory from one local `train` "
        "in a fresh process: VmHWM polled from `/proc/<worker pid>/status` is the worker's "
        "own peak; `RUSAGE_CHILDREN` maxrss cannot be lower than that process's RSS when it "
        "spawned the worker (Linux charges the pre-exec address space to the child)."
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
    parser.add_argument(
        "--scale",
        choices=("smoke", "full", "huge"),
        help="measure the Scale section instead (bench/scale.py): smoke < 90 s, full, huge = +30×",
    )
    parser.add_argument("--no-write", action="store_true", help="do not touch docs/")
    parser.add_argument("--doc", type=Path, default=DOC, help=argparse.SUPPRESS)
    parser.add_argument(
        "--memory-probe", nargs=2, metavar=("RECIPE", "DATA"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.calls < 2 or args.warmup < 0:
        parser.error("--repeats must be ≥ 1, --calls ≥ 2, --warmup ≥ 0")
    return args


def choose_data(given: Path | None) -> tuple[Path, str] | None:
    """The dataset and how the report names it; None (after saying why) if --data is missing."""
    if given is not None:
        data = given.expanduser().resolve()
        if not data.is_file():
            print(f"error: --data {data} not found", file=sys.stderr)
            return None
        return data, f"`{given}`"
    if DEFAULT_DATA.is_file():
        return DEFAULT_DATA, "`../shared/data/raop/train.json.zip`"
    print(
        f"note: {DEFAULT_DATA} not found; falling back to data/sample.json "
        "(synthetic, 400 requests)"
    )
    return SAMPLE_DATA, "`data/sample.json` (fallback: the shared RAOP data was not found)"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.memory_probe:
        return memory_probe(*args.memory_probe)
    chosen = choose_data(args.data)
    if chosen is None:
        return 2
    data, data_note = chosen
    if args.scale:
        from bench.scale import run as run_scale

        return run_scale(args.scale, machine(), data, data_note, not args.no_write, args.doc)

    home = Path(tempfile.mkdtemp(prefix="altruism-core-bench-"))
    os.environ["REGISTRY_URL"] = f"sqlite:///{home / 'registry.db'}"
    os.environ["ARTIFACT_ROOT"] = str(home / "artifacts")
    os.environ["LOG_ROOT"] = str(home / "logs")
    try:
        from core.config import settings
        from core.registry import Registry

        assert str(home) in settings().registry_url, "refusing to use the checkout's registry"
        info = machine()
        prepared = Prepared(data)
        data_note += f", {prepared.dataset.rows:,} requests ({len(prepared.split.test_index)} test)"
        print(f"benchmarking on {data} in {home}", file=sys.stderr, flush=True)
        registry = Registry()
        train, pools_during = measure_train(prepared, data, registry, args.repeats, args.warmup)
        predict = {}
        for name in RECIPE_NAMES:
            predict[name] = measure_predict(prepared, train[name]["version"], args.calls)
            print(f"  predict {name}: done", file=sys.stderr, flush=True)
        memory = {}
        for name in RECIPE_NAMES:
            memory[name] = measure_memory(data, name)
            print(f"  memory {name}: done", file=sys.stderr, flush=True)
        info["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        section = render(info, data_note, args, train, pools_during, predict, memory)
    finally:
        shutil.rmtree(home, ignore_errors=True)

    print(section)
    if not args.no_write:
        write_section(SECTION, section, args.doc)
        print(f"wrote the section '{SECTION}' of {args.doc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
