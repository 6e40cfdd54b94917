"""Scale: the CLI and `train` measured as whole processes, at every registry and data size.

Run from the repository root (this is core_bench's `--scale` section):

    .venv/bin/python bench/core_bench.py --scale smoke|full|huge [--data PATH] [--no-write]

Every measurement is a fresh process started from here under GNU `/usr/bin/time`: wall
time from `Popen` to `wait4`, CPU time (user + sys) from `wait4`'s rusage, peak RSS from
time's `%M` (`ru_maxrss`: the largest single process of the tree); for `train` and the bare
script /proc is also polled every 10 ms for the summed RSS of the whole process tree (the
CLI parent + its worker). Each figure is the
median of N interleaved runs: in every round the commands of a group run back to back in a
rotating order, so machine noise hits all of them alike; ratios are paired per round.

* start-up (`--help`, `list --json` on 2 versions, `show 2`) against the floors
  `python -c pass` and `python -c "import sqlalchemy.orm"` (and MLflow, when installed).
* `list --json` at 5,000 and 50,000 versions, `check` at 50,000: one real nb-bow version is
  trained on data/sample.json with the CLI into a temporary registry; its `model_versions`
  row is cloned with SQL (a recursive CTE, 5,000 rows per INSERT ... SELECT).
* `train --recipe tfidf-meta-logreg --backend local --force --quiet` against a bare script
  (python start, imports, read the JSON, the same recipe pipeline fitted on the same 80%
  split, `predict_proba` on the 20%; single-threaded like the worker, `WORKER_ENV`) at 1×,
  10× (and 30× with `--scale huge`) the RAOP data, replicated with fresh `request_id`s.

Sizes: smoke = 100 / 500 versions, 1× data, 1 run, no warm-up (< 90 s; never writes docs);
full = 5,000 / 50,000 versions, 1× and 10×, 9 start-up and 5 heavy runs after a warm-up
round; huge = full + 30×. Everything lives in a temporary folder, never the checkout's
registry.db.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import ROOT, installed_env, read_text, table, write_section

SECTION = "## Scale (bench/core_bench.py --scale full)"
SAMPLE_DATA = ROOT / "data" / "sample.json"
RECIPE = "tfidf-meta-logreg"
SEED_RECIPE = "nb-bow"
CLONE_BATCH = 5_000
TIME = "/usr/bin/time"  # GNU time: the measured command's own ru_maxrss
POLL_S = 0.01
MB = 1024  # KiB per MB, as `ru_maxrss` and /proc report KiB
START_TARGET_S = 0.5
LIST_LARGE_TARGET_S = 2.0
LIST_MEDIUM_TARGET_S = 0.8
CHECK_TARGET_S = 5.0
# The issue set the time targets on a machine where `import sqlalchemy.orm` took 0.34 s; a
# target is judged here after scaling it by this run's own measurement of that floor.
TARGET_MACHINE_SQLALCHEMY_S = 0.34
RSS_TARGET_MB = 300
TRAIN_RATIO_TARGET = {1: 1.4, 10: 1.2}
TRAIN_MEMORY_RATIO_TARGET = 1.2
MEMORY_FACTOR = 10  # the data size the memory target is judged at

BARE_SCRIPT = """
import json, sys, zipfile
from pathlib import Path
import numpy as np
from core.evaluate import make_split
from core.features import to_frame
from core.recipes import get_recipe

recipe_name, data, seed, test_size = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4]
if data.suffix == ".zip":
    with zipfile.ZipFile(data) as archive:
        records = json.loads(archive.read(archive.namelist()[0]))
else:
    records = json.loads(data.read_bytes())
recipe = get_recipe(recipe_name)
pipeline = recipe.pipeline(recipe.resolve({}))
frame = to_frame(records)
labels = np.array([bool(r["requester_received_pizza"]) for r in records])
split = make_split([r["request_id"] for r in records], labels.tolist(), int(seed), float(test_size))
pipeline.fit(frame.iloc[split.train_index], labels[split.train_index])
pipeline.predict_proba(frame.iloc[split.test_index])
"""


@dataclass(frozen=True)
class Size:
    name: str
    versions: tuple[int, int]  # (medium, large) registry sizes
    factors: tuple[int, ...]  # data replication factors for `train`
    quick_repeats: int  # start-up group
    repeats: int  # listing, check and train groups
    warmup: int  # untimed rounds before each group (none for train above 1×)


SIZES = {
    "smoke": Size("smoke", (100, 500), (1,), 1, 1, 0),
    "full": Size("full", (5_000, 50_000), (1, 10), 9, 5, 1),
    "huge": Size("huge", (5_000, 50_000), (1, 10, 30), 9, 5, 1),
}


@dataclass(frozen=True)
class Command:
    argv: list[str]
    env: dict[str, str]
    poll: bool = False  # sample the process tree's summed RSS from /proc


@dataclass(frozen=True)
class Run:
    wall: float
    cpu: float
    maxrss_kib: int  # GNU time %M: the largest single process of the tree
    tree_kib: int | None  # /proc polling: peak of the tree's summed RSS


Results = dict[str, list[Run]]


# --- one process, measured ---------------------------------------------------------------
def status_kib(pid: int, key: str) -> int | None:
    found = re.search(rf"^{key}:\s*(\d+) kB", read_text(f"/proc/{pid}/status"), re.M)
    return int(found.group(1)) if found else None


def parents() -> dict[int, int]:
    """pid -> parent pid of every process (from /proc/PID/stat)."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = read_text(f"/proc/{entry}/stat")
            if stat:
                out[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def descendants(root: int) -> set[int]:
    by_parent: dict[int, list[int]] = {}
    for pid, ppid in parents().items():
        by_parent.setdefault(ppid, []).append(pid)
    found, stack = {root}, [root]
    while stack:
        for child in by_parent.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


class TreePoller:
    """Peak of the summed VmRSS of a process's descendants, sampled every POLL_S."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        tick, pids = 0, set()
        while not self._stop.is_set():
            if tick % 5 == 0:  # look for new children every 50 ms, read RSS every 10 ms
                pids = descendants(self.pid) - {self.pid}  # not /usr/bin/time itself
            total = sum(status_kib(pid, "VmRSS") or 0 for pid in pids)
            self.peak = max(self.peak, total)
            tick += 1
            self._stop.wait(POLL_S)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_once(command: Command, stdout: Any = subprocess.DEVNULL) -> Run:
    """Start under /usr/bin/time (a fork of this large process would charge its RSS to the
    child's ru_maxrss), wait (wait4), measure; RuntimeError with stderr's tail if it failed."""
    with tempfile.NamedTemporaryFile() as rss, tempfile.TemporaryFile() as errors:
        argv = [TIME, "-f", "%M", "-o", rss.name, *command.argv]
        started = time.perf_counter()
        process = subprocess.Popen(argv, cwd=ROOT, env=command.env, stdout=stdout, stderr=errors)
        poller = TreePoller(process.pid) if command.poll else None
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        tree = poller.stop() if poller else None
        if process.returncode != 0:
            errors.seek(0)
            tail = errors.read().decode(errors="replace")[-3000:]
            raise RuntimeError(f"{command.argv[1:]} exited {process.returncode}:\n{tail}")
        maxrss = int(Path(rss.name).read_text().split()[-1])
    return Run(wall, usage.ru_utime + usage.ru_stime, maxrss, tree)


def measure_group(commands: dict[str, Command], repeats: int, warmup: int) -> Results:
    """Every command `repeats` times (after `warmup` untimed rounds), in rotating order."""
    names = list(commands)
    results: Results = {name: [] for name in names}
    load = os.getloadavg()[0]
    for round_ in range(warmup + repeats):
        shift = round_ % len(names)
        this_round = {name: run_once(commands[name]) for name in names[shift:] + names[:shift]}
        if round_ >= warmup:
            for name, run in this_round.items():
                results[name].append(run)
        label = f"run {round_ - warmup + 1}/{repeats}" if round_ >= warmup else "warm-up"
        walls = ", ".join(f"{n} {this_round[n].wall:.2f}s" for n in names)
        print(f"  {label}: {walls}", file=sys.stderr, flush=True)
    print(f"  (1-min load {load:.2f} before, {os.getloadavg()[0]:.2f} after)", file=sys.stderr)
    return results


# --- fixtures: registries and data -------------------------------------------------------
def lab_env(home: Path, db: Path) -> dict[str, str]:
    return installed_env(dict(os.environ)) | {
        "REGISTRY_URL": f"sqlite:///{db}",
        "ARTIFACT_ROOT": str(home / "artifacts"),
        "LOG_ROOT": str(home / "logs"),
    }


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "core", *args]


def clone_versions(db: Path, last: int) -> None:
    """Versions 2..last as copies of the row with id 1 (SQL only, 5,000 rows per INSERT)."""
    with sqlite3.connect(db) as connection:
        columns = [
            row[1]
            for row in connection.execute("PRAGMA table_info(model_versions)")
            if row[1] not in ("id", "version")
        ]
        cols = ", ".join(columns)
        for start in range(2, last + 1, CLONE_BATCH):
            end = min(start + CLONE_BATCH - 1, last)
            connection.execute(
                f"WITH RECURSIVE s(k) AS (SELECT {start} UNION ALL SELECT k+1 FROM s "
                f"WHERE k < {end}) INSERT INTO model_versions (version, {cols}) "
                f"SELECT k, {cols} FROM s, model_versions WHERE model_versions.id = 1"
            )
            connection.commit()
    connection.close()


def copy_db(source: Path, target: Path) -> None:
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()


def make_registries(home: Path, sizes: tuple[int, ...]) -> dict[int, dict[str, str]]:
    """One real nb-bow version trained with the CLI, then a registry per size (cloned rows),
    all sharing the artifact store and log folder; size -> the env pointing at it."""
    seed = home / "seed.db"
    train = ["train", "--recipe", SEED_RECIPE, "--data", str(SAMPLE_DATA), "--backend", "local"]
    run_once(Command(cli(*train, "--quiet"), lab_env(home, seed)))
    envs = {}
    for size in sizes:
        db = home / f"registry-{size}.db"
        copy_db(seed, db)
        clone_versions(db, size)
        envs[size] = lab_env(home, db)
    return envs


def verify_listing(env: dict[str, str], expected: int) -> None:
    """`list --json` really lists every version (checked once, untimed)."""
    with tempfile.TemporaryFile() as out:
        run_once(Command(cli("list", "--json"), env), stdout=out)
        out.seek(0)
        count = len(json.load(out))
    if count != expected:
        raise RuntimeError(f"list --json printed {count} versions, expected {expected}")


def read_records(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read(archive.namelist()[0]))
    return json.loads(path.read_bytes())


def replicate(source: Path, factor: int, target: Path) -> int:
    """`factor` copies of every record (fresh unique request_ids) as one JSON list."""
    records = read_records(source)
    with open(target, "w") as out:
        out.write("[")
        for copy in range(factor):
            for index, record in enumerate(records):
                fresh = record | {"request_id": f"{record['request_id']}_x{copy}"}
                out.write(("," if copy or index else "") + json.dumps(fresh))
        out.write("]")
    return len(records) * factor


# --- the groups --------------------------------------------------------------------------
def mlflow_command(env: dict[str, str]) -> Command | None:
    if importlib.util.find_spec("mlflow") is None:
        return None
    return Command([sys.executable, "-c", "import mlflow"], env)


def startup_commands(env: dict[str, str]) -> dict[str, Command]:
    commands = {
        "pass": Command([sys.executable, "-c", "pass"], env),
        "sqlalchemy": Command([sys.executable, "-c", "import sqlalchemy.orm"], env),
        "help": Command(cli("--help"), env),
        "list2": Command(cli("list", "--json"), env),
        "show2": Command(cli("show", "2"), env),
    }
    mlflow = mlflow_command(env)
    return commands | ({"mlflow": mlflow} if mlflow else {})


def large_commands(envs: dict[int, dict[str, str]], size: Size) -> dict[str, Command]:
    medium, large = size.versions
    return {
        "list_medium": Command(cli("list", "--json"), envs[medium]),
        "list_large": Command(cli("list", "--json"), envs[large]),
        "check_large": Command(cli("check"), envs[large]),
    }


def train_commands(home: Path, data: Path) -> dict[str, Command]:
    from core.builders.base import WORKER_ENV
    from core.builds import TrainRequest

    defaults = TrainRequest(recipe=RECIPE)
    train = cli("train", "--recipe", RECIPE, "--backend", "local", "--force", "--quiet")
    bare = [sys.executable, "-c", BARE_SCRIPT, RECIPE, str(data)]
    env = lab_env(home, home / "train.db")
    return {
        "train": Command([*train, "--data", str(data)], env, poll=True),
        "bare": Command(
            [*bare, str(defaults.seed), str(defaults.test_size)], env | WORKER_ENV, True
        ),
    }


@dataclass
class Measured:
    startup: Results = field(default_factory=dict)
    large: Results = field(default_factory=dict)
    train: dict[int, Results] = field(default_factory=dict)
    rows: dict[int, int] = field(default_factory=dict)  # factor -> requests
    loads: list[float] = field(default_factory=list)


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def measure(home: Path, data: Path, size: Size) -> Measured:
    got = Measured()
    note(f"scale ({size.name}): registries with 2 / {size.versions[0]:,} / {size.versions[1]:,}")
    envs = make_registries(home, (2, *size.versions))
    for versions in (2, *size.versions):
        verify_listing(envs[versions], versions)
    got.loads.append(os.getloadavg()[0])
    note("start-up group")
    got.startup = measure_group(startup_commands(envs[2]), size.quick_repeats, size.warmup)
    got.loads.append(os.getloadavg()[0])
    note("listing / check group")
    got.large = measure_group(large_commands(envs, size), size.repeats, size.warmup)
    for factor in size.factors:
        got.loads.append(os.getloadavg()[0])
        path = data
        if factor > 1:
            path = home / f"train-x{factor}.json"
            got.rows[factor] = replicate(data, factor, path)
        else:
            got.rows[factor] = len(read_records(data))
        note(f"train group at {factor}× ({got.rows[factor]:,} requests)")
        warmup = size.warmup if factor == 1 else 0
        got.train[factor] = measure_group(train_commands(home, path), size.repeats, warmup)
        if factor > 1:
            path.unlink()
    got.loads.append(os.getloadavg()[0])
    return got


# --- report ------------------------------------------------------------------------------
def secs(value: float) -> str:
    return f"{value:.2f} s" if abs(value) >= 1 else f"{value * 1000:.0f} ms"


def walls(runs: list[Run]) -> list[float]:
    return [r.wall for r in runs]


def med_wall(runs: list[Run]) -> float:
    return statistics.median(walls(runs))


def spread(runs: list[Run]) -> str:
    median = secs(med_wall(runs))
    if len(runs) < 2:
        return median
    return f"{median} ({secs(min(walls(runs)))}–{secs(max(walls(runs)))})"


def cpu(runs: list[Run]) -> str:
    return secs(statistics.median([r.cpu for r in runs]))


def peak_rss(runs: list[Run]) -> int:
    return max(r.maxrss_kib for r in runs)


def tree_peak(runs: list[Run]) -> int:
    return max(r.tree_kib or 0 for r in runs)


def mb(kib: float) -> str:
    return f"{kib / MB:.0f} MB"


def paired(a: list[Run], b: list[Run], combine: Callable[[float, float], float]) -> float:
    return statistics.median([combine(x.wall, y.wall) for x, y in zip(a, b, strict=True)])


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def row(label: str, runs: list[Run], rss: str, peer: str, ratio: str, target: str, ok: Any) -> list:
    result = "—" if ok is None else verdict(bool(ok))
    return [label, spread(runs), cpu(runs), rss, peer, ratio, target, result]


def machine_scale(startup: Results) -> float:
    """How much slower this machine is than the one the targets were set on (same floor)."""
    return med_wall(startup["sqlalchemy"]) / TARGET_MACHINE_SQLALCHEMY_S


def timed_target(limit_s: float, scale: float) -> str:
    return (
        f"≤ {limit_s:g} s where `import sqlalchemy.orm` takes {TARGET_MACHINE_SQLALCHEMY_S} s: "
        f"≤ {secs(limit_s * scale)} here ({scale:.2f}×)"
    )


def startup_rows(results: Results) -> list[list[str]]:
    floor, sqla = results["pass"], results["sqlalchemy"]
    scale = machine_scale(results)
    peer = (
        f"`python -c pass` {secs(med_wall(floor))}; `import sqlalchemy.orm` {secs(med_wall(sqla))}"
    )
    out = [
        row("floor: `python -c pass`", floor, mb(peak_rss(floor)), "—", "1.00×", "—", None),
        row(
            'floor: `python -c "import sqlalchemy.orm"`',
            sqla,
            mb(peak_rss(sqla)),
            "`python -c pass`",
            f"{paired(sqla, floor, lambda x, b: x / b):.2f}×",
            "—",
            None,
        ),
    ]
    if "mlflow" in results:
        mlflow = results["mlflow"]
        ratio = f"{paired(mlflow, floor, lambda x, b: x / b):.2f}×"
        out.append(
            row("peer: `import mlflow`", mlflow, mb(peak_rss(mlflow)), "`pass`", ratio, "—", None)
        )
    else:
        out.append(["peer: MLflow", "not installed", "—", "—", "—", "—", "—", "—"])
    for key, label in (
        ("help", "`python -m core --help`"),
        ("list2", "`list --json`, 2 versions"),
        ("show2", "`show 2` (2 versions)"),
    ):
        runs = results[key]
        ratio = (
            f"{paired(runs, floor, lambda x, b: x / b):.2f}× pass; "
            f"{paired(runs, sqla, lambda x, b: x - b) * 1000:+.0f} ms vs sqlalchemy.orm"
        )
        ok = med_wall(runs) <= START_TARGET_S * scale
        out.append(row(label, runs, mb(peak_rss(runs)), peer, ratio, timed_target(0.5, scale), ok))
    return out


def large_rows(results: Results, size: Size, scale: float) -> list[list[str]]:
    medium, large = size.versions
    rows = []
    for key, label, limit_s, limit_mb in (
        ("list_large", f"`list --json`, {large:,} versions", LIST_LARGE_TARGET_S, RSS_TARGET_MB),
        ("list_medium", f"`list --json`, {medium:,} versions", LIST_MEDIUM_TARGET_S, None),
        ("check_large", f"`check`, {large:,} versions", CHECK_TARGET_S, RSS_TARGET_MB),
    ):
        runs = results[key]
        target = timed_target(limit_s, scale) + (f"; ≤ {limit_mb} MB" if limit_mb else "")
        fits = limit_mb is None or peak_rss(runs) <= limit_mb * MB
        ok = med_wall(runs) <= limit_s * scale and fits
        rows.append(row(label, runs, mb(peak_rss(runs)), "—", "—", target, ok))
    return rows


def train_rows(measured: Measured) -> list[list[str]]:
    rows = []
    for factor, results in measured.train.items():
        train, bare = results["train"], results["bare"]
        ratio = paired(train, bare, lambda x, b: x / b)
        per_round = [x.wall / b.wall for x, b in zip(train, bare, strict=True)]
        cpu_ratio = statistics.median([x.cpu / b.cpu for x, b in zip(train, bare, strict=True)])
        limit = TRAIN_RATIO_TARGET.get(factor)
        rows.append(
            row(
                f"`train {RECIPE}` local, {factor}× data ({measured.rows[factor]:,} requests)",
                train,
                f"{mb(tree_peak(train))} tree",
                f"bare script {spread(bare)}, CPU {cpu(bare)}",
                f"{ratio:.2f}× ({min(per_round):.2f}–{max(per_round):.2f}); CPU {cpu_ratio:.2f}×",
                f"≤ {limit:g}× bare" if limit else "— (information)",
                ratio <= limit if limit else None,
            )
        )
    factor = MEMORY_FACTOR if MEMORY_FACTOR in measured.train else max(measured.train)
    train, bare = measured.train[factor]["train"], measured.train[factor]["bare"]
    ratio = tree_peak(train) / peak_rss(bare)
    rows.append(
        row(
            f"peak memory of the `train` process tree (parent + worker), {factor}× data",
            train,
            f"{mb(tree_peak(train))} tree (largest process {mb(peak_rss(train))})",
            f"bare script peak RSS {mb(peak_rss(bare))}",
            f"{ratio:.2f}×",
            f"≤ {TRAIN_MEMORY_RATIO_TARGET:g}× bare",
            ratio <= TRAIN_MEMORY_RATIO_TARGET if factor == MEMORY_FACTOR else None,
        )
    )
    return rows


HEADER = [
    "measurement",
    "wall, median (min–max)",
    "CPU user+sys",
    "peak RSS",
    "peer / floor (same run)",
    "ratio",
    "target",
    "result",
]


def render(info: dict[str, Any], data_note: str, size: Size, measured: Measured) -> str:
    scale = machine_scale(measured.startup)
    rows = startup_rows(measured.startup) + large_rows(measured.large, size, scale)
    rows += train_rows(measured)
    missed = [r[0] for r in rows if r[-1].startswith("**")]
    out = [SECTION, ""]
    out.append(
        f"Size `{size.name}`. Machine: {info['nproc']} CPUs ({info['cpu']}), "
        f"{info['memory_gib']:.1f} GiB RAM, Python {info['python']} ({info['platform']}); "
        f"{info['packages']}. Measured {info['date']}. 1-minute load average "
        f"{info['load']} (1, 5, 15 min) at the start, "
        + " → ".join(f"{x:.2f}" for x in measured.loads)
        + f" before each group, {info['load_end']} at the end: the machine is shared, so "
        "absolute times carry its noise; interleaving spreads it over every command alike."
    )
    out.append("")
    out.append(
        f"Data: {data_note}. Start-up rows: median of {size.quick_repeats} rounds; the other "
        f"rows: median of {size.repeats} rounds; {size.warmup} untimed warm-up round(s) per "
        "group (none for `train` above 1×). Every row is a whole process started from the "
        "benchmark (`Popen` → `wait4`); ratios are medians of per-round ratios (for `train` "
        "also their min–max, and the median ratio of CPU times, which load disturbs less)."
    )
    out.append("")
    out.append(table(HEADER, rows))
    out.append("")
    out.append(
        "Result: every target met."
        if not missed
        else "Result: **not met**: " + "; ".join(missed) + "."
    )
    out.append("")
    out.append(
        "How: every command runs under GNU `/usr/bin/time`; peak RSS is its `%M` "
        "(`ru_maxrss`: the largest single process of the tree; max over the runs), except "
        "*tree*: the peak of the summed VmRSS of the process and "
        f"its descendants, polled from /proc every {POLL_S * 1000:.0f} ms (the `train` parent "
        "waits while its worker runs, so both count). The registries hold one real `nb-bow` "
        "version trained by the CLI on data/sample.json plus copies of its `model_versions` "
        "row made with SQL (no `version_details`, one artifact); `list --json` output goes to "
        "/dev/null (its row count is checked once beforehand). The bare script reads the "
        "JSON, builds the frame with `core.features.to_frame`, splits with "
        "`core.evaluate.make_split` (seed and test size of `train`), fits "
        f"`get_recipe('{RECIPE}').pipeline(resolve({{}}))` and calls `predict_proba` on the "
        "test rows, with `WORKER_ENV` (single-threaded BLAS/OpenMP, like the worker). "
        "Replicated data: every record copied with a fresh `request_id`, one JSON list in a "
        "temporary file."
    )
    out.append("")
    return "\n".join(out)


def run(
    size_name: str, info: dict[str, Any], data: Path, data_note: str, write: bool, doc: Path
) -> int:
    size = SIZES[size_name]
    if not os.access(TIME, os.X_OK):
        note(f"error: {TIME} (GNU time) is needed to measure each process's peak RSS")
        return 2
    home = Path(tempfile.mkdtemp(prefix="altruism-scale-bench-"))
    try:
        measured = measure(home, data, size)
        info["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        section = render(info, data_note, size, measured)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print(section)
    if write and size.name != "smoke":
        write_section(SECTION, section, doc)
        note(f"wrote the section '{SECTION}' of {doc}")
    elif write:
        note("--scale smoke never writes docs/ (its sizes are not the issue's)")
    return 0
