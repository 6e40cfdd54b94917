"""Explanation benchmark: how long Try a request waits for "What moved the score".

Run from the repository root:

    .venv/bin/python bench/explain_bench.py [--data PATH] [--calls 100] [--cold-runs 3]
                                            [--no-write]

Versions are fitted in this process (`core.train.fit_and_evaluate`, seed 42, 80/20 split),
exactly as a build fits them, so each carries its background rows. Results are printed as
markdown and, unless --no-write, stored in docs/benchmarks.md under
"## Explanations (bench/explain_bench.py)" (other sections are left alone).

What is measured (wall time of `core.explain.explain(pipeline, record)` plus the
`core.predict.score` Try runs beside it; a new request text on every call):

* baseline: `predict_proba` of the same request with every field given (one row, no
  explanation): what Try cost before explanations. Every ratio divides by its p50, measured in
  this run on this machine.
* narrative-vote, warm: the version's explainer prepared and shap imported (Try after its
  first explanation of that version); requester fields blank (Try's default: 12 groups,
  unknown fields averaged), and all given (21 groups). p50 / p99 over `--calls`.
* narrative-vote, first for the version: a freshly fitted pipeline in a process that has
  already explained another one (the explainer is prepared: background through the cue
  step, text transformers memoised). Median of `--cold-runs`.
* narrative-vote, first in a new process: a fresh Python process fits, then explains once
  (the import of shap included). Median of `--cold-runs`.
* four versions, warm: Try's "All ready versions" with the four recipes (nb-bow,
  tfidf-logreg, tfidf-meta-logreg, narrative-vote), and with four narrative-vote versions
  (linear weights 0.3 to 0.6: the worst case), every version explained.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import installed_env, machine, quantile, table, write_section  # noqa: E402

DEFAULT_DATA = (ROOT / ".." / "shared" / "data" / "raop" / "train.json.zip").resolve()
SECTION = "## Explanations (bench/explain_bench.py)"
ONE_TARGET_MS = 300.0
FOUR_TARGET_MS = 1000.0
TITLE = "[Request] Broke student in Ohio, payday is Friday"
TEXT = (
    "Lost my job last week and the fridge is empty. My kids would love a pizza tonight; "
    "I will pay it forward when I am back on my feet. Thank you all!"
)
WHEN = 1_370_000_000.0
COLD = """
import sys, time
sys.path.insert(0, {root!r})
from core.dataset import load_dataset
from core.predict import make_request, request_meta, score
from core.train import fit_and_evaluate
data = load_dataset({data!r})
quiet = {{"log": lambda _: None}}
fitted = fit_and_evaluate(data, "narrative-vote", {{}}, 42, 0.2, "fixed:0.5", **quiet)
pipeline = fitted.pipeline
record = make_request({title!r}, {text!r}, **request_meta({when!r}, {{}}))
started = time.perf_counter()
from core.explain import explain
score(pipeline, [record]); explain(pipeline, record)
print((time.perf_counter() - started) * 1000)
"""


def fit(data: Any, recipe: str, params: dict[str, Any] | None = None) -> Any:
    from core.train import fit_and_evaluate

    quiet = {"log": lambda _: None}
    return fit_and_evaluate(data, recipe, params or {}, 42, 0.2, "fixed:0.5", **quiet).pipeline


def request(call: int, given: bool) -> dict[str, Any]:
    from core.dataset import REQUESTER_COUNTS
    from core.predict import make_request, request_meta

    fields = {f: 10.0 + call for f in REQUESTER_COUNTS} if given else {}
    return make_request(TITLE, f"{TEXT} ({call})", **request_meta(WHEN, fields))


def timed(calls: int, step: Callable[[int], Any]) -> list[float]:
    """Milliseconds of `step(call)` for each call."""
    times = []
    for call in range(calls):
        started = time.perf_counter()
        step(call)
        times.append((time.perf_counter() - started) * 1000)
    return times


def try_step(pipelines: list[Any], given: bool) -> Callable[[int], None]:
    """What Try runs per version after Predict: the score, then the explanation."""
    from core.explain import explain
    from core.predict import score

    def step(call: int) -> None:
        record = request(call, given)
        for pipeline in pipelines:
            score(pipeline, [record])
            explain(pipeline, record)

    return step


def cold_process(data: Path, runs: int) -> list[float]:
    code = COLD.format(root=str(ROOT), data=str(data), title=TITLE, text=TEXT, when=WHEN)
    times = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env=installed_env(dict(__import__("os").environ)),
        )
        times.append(float(done.stdout.strip().splitlines()[-1]))
    return times


def measure(data_path: Path, calls: int, cold_runs: int) -> list[dict[str, Any]]:
    from core.dataset import load_dataset
    from core.predict import predict_proba

    data = load_dataset(data_path)
    vote = fit(data, "narrative-vote")
    others = [fit(data, name) for name in ("nb-bow", "tfidf-logreg", "tfidf-meta-logreg")]
    votes = [vote, *(fit(data, "narrative-vote", {"linear_weight": w}) for w in (0.3, 0.4, 0.6))]
    try_step([others[0]], False)(0)  # shap imported and compiled before anything is timed
    rows = [
        (
            "baseline: predict_proba, one request",
            timed(calls, lambda c: predict_proba(vote, [request(c, True)])),
        )
    ]
    firsts = []
    for run in range(cold_runs):
        fresh = fit(data, "narrative-vote", {"trees_max_iter": 200 + run})
        firsts += timed(1, try_step([fresh], False))
    rows.append(("narrative-vote, first for the version (fields blank)", firsts))
    rows.append(
        (
            "narrative-vote, first in a new process (fields blank)",
            cold_process(data_path, cold_runs),
        )
    )
    rows.append(("narrative-vote, warm, fields blank", timed(calls, try_step([vote], False))))
    rows.append(("narrative-vote, warm, all fields given", timed(calls, try_step([vote], True))))
    rows.append(
        (
            "4 versions (the four recipes), warm, fields blank",
            timed(calls, try_step([*others, vote], False)),
        )
    )
    rows.append(
        ("4 narrative-vote versions, warm, fields blank", timed(calls, try_step(votes, False)))
    )
    return [{"case": name, "times": times} for name, times in rows]


def target(case: str) -> float | None:
    if "warm" not in case:
        return None
    return FOUR_TARGET_MS if case.startswith("4 ") else ONE_TARGET_MS


def render(results: list[dict[str, Any]], data: Path, calls: int) -> str:
    base = statistics.median(results[0]["times"])
    header = ["case", "runs", "p50 ms", "p99 ms", "× baseline p50", "target (p99)", "verdict"]
    rows = []
    for r in results:
        times, goal = r["times"], target(r["case"])
        p99 = quantile(times, 0.99)
        rows.append(
            [
                r["case"],
                str(len(times)),
                f"{statistics.median(times):.1f}",
                f"{p99:.1f}",
                f"{statistics.median(times) / base:.1f}×",
                f"≤ {goal:.0f} ms" if goal else "—",
                ("met" if p99 <= goal else "missed") if goal else "—",
            ]
        )
    m = machine()
    return "\n".join(
        [
            SECTION,
            "",
            f"{m['date']}, {m['nproc']} CPUs {m['cpu']}, {m['memory_gib']:.1f} GiB, Python "
            f"{m['python']}; data `{data.name}`, {calls} calls per warm case. Each call scores "
            "the request (unknown fields averaged over 100 background rows) and explains it "
            "(shap permutation explainer over feature groups, one forward and one backward "
            "pass). Warm cases include everything Try does per version after Predict but "
            "drawing the charts.",
            "",
            table(header, rows),
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    results = measure(args.data, args.calls, args.cold_runs)
    section = render(results, args.data, args.calls)
    print(section)
    if not args.no_write:
        write_section(SECTION, section)


if __name__ == "__main__":
    main()
