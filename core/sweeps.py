"""Sweeps: one build per combination of parameter values, tagged with one sweep id.

`train --grid C=0.1,1,10 --grid min_df=1,3` (or the Build form) checks every combination with
the recipe's parameter declarations first, refuses more than `MAX_SWEEP`, then queues one
version per combination (an identical ready version is reused, as for one build) and tags each
`sweep-<id>`. The builds run at most `MAX_PARALLEL_BUILDS` at a time (default: the CPUs of
this machine), in this process or in one detached runner (`run-sweep`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from core import builds
from core.artifacts import ArtifactStore, open_store
from core.config import settings
from core.errors import BadInput
from core.operating_point import SINGLE_CLASS
from core.registry import Registry
from core.schema import ACTIVE_STATUSES, READY, ModelVersion

MAX_SWEEP = 50
SWEEP_TAG = re.compile(r"^sweep-[0-9a-f]{8}$")


@dataclass
class Sweep:
    """The versions one sweep asked for, in combination order."""

    sweep_id: str
    submissions: list[builds.Submission]

    @property
    def version_ids(self) -> list[int]:
        return [s.version.id for s in self.submissions]


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """['C=0.1,1', 'min_df=2,3'] -> {'C': ['0.1', '1'], ...}; BadInput when malformed."""
    grid: dict[str, list[str]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip()
        chosen = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not name or not chosen:
            raise BadInput(f"--grid {item[:80]!r}: expected NAME=V1,V2,...")
        if name in grid:
            raise BadInput(f"--grid: parameter '{name}' is given twice")
        grid[name] = list(dict.fromkeys(chosen))
    return grid


def combinations(
    recipe_name: str, grid: dict[str, list[Any]], base: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Every combination's resolved parameters, each checked by the recipe; BadInput for
    an unknown or list-valued parameter, a bad value, or more than MAX_SWEEP builds."""
    from core.recipes import get_recipe

    recipe = get_recipe(recipe_name)
    for name in grid:
        if recipe.param(name).many is not None:
            raise BadInput(f"parameter '{name}' holds a list of names and cannot be swept")
    count = 1
    for values in grid.values():
        count *= len(values)
    if count > MAX_SWEEP:
        raise BadInput(f"the grid makes {count} builds; a sweep may have at most {MAX_SWEEP}")
    names = list(grid)
    found = []
    for values in itertools.product(*(grid[n] for n in names)):
        params = recipe.resolve({**(base or {}), **dict(zip(names, values, strict=True))})
        if params not in found:  # "1" and "1.0" are the same build
            found.append(params)
    return found


def parallel_builds() -> int:
    """MAX_PARALLEL_BUILDS, else the CPUs this process may use."""
    raw = os.environ.get("MAX_PARALLEL_BUILDS", "").strip()
    if not raw:
        return max(1, len(os.sched_getaffinity(0)))
    if not raw.isdigit() or not 1 <= int(raw) <= 64:
        raise BadInput(f"MAX_PARALLEL_BUILDS must be an integer in [1, 64], got {raw[:20]!r}")
    return int(raw)


def parallel_for(builder: str, builds_count: int) -> int:
    """How many builds of a sweep run at once: on a swarm, as many as the cluster has CPUs
    (its scheduler places them; here each one only waits), else `parallel_builds()`."""
    if builder != "swarm":
        return parallel_builds()
    from core.builders.swarm import cluster_cpus

    return max(1, min(builds_count, cluster_cpus() or parallel_builds()))


def submit_sweep(
    request: builds.TrainRequest,
    grid: dict[str, list[Any]],
    registry: Registry,
    store: ArtifactStore | None = None,
) -> Sweep:
    """Check every combination, then queue (or reuse) and tag one version each."""
    combos = combinations(request.recipe, grid, request.params)
    parallel_builds()  # a bad setting is refused before anything is queued
    store = store or open_store()
    sweep = Sweep(f"sweep-{secrets.token_hex(4)}", [])
    try:
        for params in combos:
            submission = builds.submit(replace(request, params=params), registry, store)
            sweep.submissions.append(submission)
            registry.add_tag(submission.version.id, sweep.sweep_id, actor=request.actor)
    except BaseException:  # Ctrl-C or an error half-way: leave no queued row behind
        _end_queued(sweep, registry, "the sweep was interrupted before it ran this build")
        raise
    return sweep


def _end_queued(sweep: Sweep, registry: Registry, why: str) -> None:
    """Cancel the versions this sweep queued itself that no worker has started."""
    for submission in sweep.submissions:
        if not submission.reused:
            with contextlib.suppress(Exception):
                registry.fail_if_queued(submission.version.id, why, status="cancelled")


def run_versions(
    version_ids: list[int],
    registry: Registry,
    store: ArtifactStore | None = None,
    parallel: int | None = None,
    echo: Callable[[str], None] | None = None,
) -> list[ModelVersion]:
    """Run the queued ones of these versions, `parallel` at a time; wait for any running
    elsewhere; return them all, finished, in the same order."""
    store = store or open_store()
    rows = [registry.get_by_id(i) for i in version_ids]
    queued = [r for r in rows if r.status == "queued"]
    lease_s = settings().build_lease_s
    for row in queued:  # ours while they wait for a free slot: never taken for abandoned
        registry.claim_for(row.id, os.getpid(), lease_s=lease_s)
    waiting = builds.LeaseKeeper(registry, [r.id for r in queued], lease_s)  # until they run
    try:
        return _run_claimed(rows, queued, registry, store, parallel, echo)
    finally:
        waiting.stop()


def _run_claimed(
    rows: list[ModelVersion],
    queued: list[ModelVersion],
    registry: Registry,
    store: ArtifactStore,
    parallel: int | None,
    echo: Callable[[str], None] | None,
) -> list[ModelVersion]:
    """`run_versions` once the queued versions are claimed (and their leases renewed)."""
    if any(r.builder in ("docker", "swarm") for r in queued):  # the image once, not per thread
        from core.builders.base import BuildLog
        from core.builders.docker import DockerBuilder

        DockerBuilder().ensure_image(BuildLog(echo=echo))

    def run(row: ModelVersion) -> ModelVersion:
        done = builds.execute(row.id, registry, store)
        if echo:
            auc = (done.metrics or {}).get("roc_auc")
            echo(f"v{done.version} {done.status}" + (f", ROC AUC {auc:.4f}" if auc else ""))
        return done

    if parallel is None:
        swarm = bool(queued) and all(r.builder == "swarm" for r in queued)
        parallel = parallel_for("swarm" if swarm else "", len(queued))
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        finished = dict(zip([r.id for r in queued], pool.map(run, queued), strict=True))
    out = []
    for row in rows:
        if row.id in finished:
            out.append(finished[row.id])
        elif row.status in ACTIVE_STATUSES:
            out.append(builds.wait_for(row.id, registry, timeout_s=24 * 3600))
        else:
            out.append(row)
    return out


def launch_sweep(sweep: Sweep, registry: Registry) -> int:
    """Run a sweep's queued builds in one detached process (`run-sweep`); returns its pid."""
    log_file = settings().log_root / f"sweep-{registry.identity}-{sweep.sweep_id}.log"
    ids = [s.version.id for s in sweep.submissions if not s.reused]
    return builds.detach(["run-sweep", *map(str, ids)], ids, registry, log_file)


def sweeps_of(rows: list[Any]) -> list[str]:
    """The sweep ids among these versions (anything with `.tags` names and `.version`),
    newest sweep first."""
    newest: dict[str, int] = {}
    for row in rows:
        for tag in row.tags:
            name = getattr(tag, "name", tag)
            if SWEEP_TAG.match(name):
                newest[name] = max(newest.get(name, 0), row.version)
    return sorted(newest, key=lambda name: -newest[name])


RANKING_METRIC = "roc_auc"  # what "best of a sweep" means (declared wherever it is shown)
RANKING_WORDS = (
    "the highest ROC AUC, leaving out versions whose decisions are all one class "
    "(flag single-class)"
)


def best_of_sweep(rows: list[Any], sweep_id: str, like: Any | None = None) -> Any | None:
    """The ready version of a sweep ranked first by `RANKING_METRIC`, among those evaluated
    like `like` (same split or fold hash, so that the two compare), never a single-class
    one (its decisions say nothing), or None."""
    candidates = [
        row
        for row in rows
        if row.status == READY
        and sweep_id in [getattr(t, "name", t) for t in row.tags]
        and (row.metrics or {}).get(RANKING_METRIC) is not None
        and SINGLE_CLASS not in (getattr(row, "flags", None) or [])
        and (like is None or (row.split_hash == like.split_hash and row.id != like.id))
    ]
    return max(candidates, key=lambda r: r.metrics[RANKING_METRIC], default=None)


def swept_values(rows: list[Any]) -> dict[int, dict[str, Any]]:
    """Each version's values of the parameters that vary among `rows` (a sweep's
    versions, anything with `.id` and `.params`): {version id: {param: value}}."""
    keys = sorted({k for r in rows for k in (r.params or {})})
    varying = [k for k in keys if len({repr((r.params or {}).get(k)) for r in rows}) > 1]
    return {r.id: {k: (r.params or {}).get(k) for k in varying} for r in rows}


def swept_words(values: dict[str, Any]) -> str:
    """`C=0.1, min_df=3`."""
    return ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
    )
