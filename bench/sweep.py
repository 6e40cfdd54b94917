"""Sweep benchmark (`bench/build_bench.py --sweep`): one 12-build sweep on each builder.

For `local`, `docker` (the engine DOCKER_HOST names) and `swarm` (a single-node swarm on a
private second engine with Debian's docker-registry, started and stopped here as the tests
do: tests/servers.py), the same grid of `tfidf-meta-logreg` builds is queued with
`core.sweeps.submit_sweep` and run with `core.sweeps.run_versions`, which runs
MAX_PARALLEL_BUILDS at a time on local/docker and, on a swarm, as many as its nodes have
CPUs (the cluster places them). Measured per builder: the sweep's wall time, the workers'
own fit+evaluate seconds (from each version's provenance), and per build the span from start
to registered minus that fit time: what the builder adds around the worker.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import common

SECTION = "## Sweeps (bench/build_bench.py --sweep)"
RECIPE = "tfidf-meta-logreg"
GRID = {"C": ["0.25", "0.5", "1", "2", "4", "8"], "class_weight": ["balanced", "none"]}
BACKENDS = ("local", "docker", "swarm")


def _span(row: Any) -> float:
    return (
        datetime.fromisoformat(str(row.finished_at)) - datetime.fromisoformat(str(row.started_at))
    ).total_seconds()


def run_sweep(backend: str, data: Path, registry: Any, grid: dict[str, list[str]]) -> dict:
    """Queue and run one sweep; its timings (raises when a build fails)."""
    from core import builds, sweeps

    request = builds.TrainRequest(recipe=RECIPE, data_path=data, backend=backend, force=True)
    started = time.perf_counter()
    sweep = sweeps.submit_sweep(request, grid, registry)
    rows = sweeps.run_versions(sweep.version_ids, registry)
    wall = time.perf_counter() - started
    failed = [r for r in rows if r.status != "ready"]
    if failed:
        raise RuntimeError(f"{backend}: {failed[0].error}\n{failed[0].log_tail}")
    fits = [r.provenance["fit_seconds"] + r.provenance["evaluate_seconds"] for r in rows]
    spans = [_span(r) for r in rows]
    return {
        "backend": backend,
        "builds": len(rows),
        "parallel": sweeps.parallel_for(backend, len(rows)),
        "wall": wall,
        "fit_total": sum(fits),
        "span_median": statistics.median(spans),
        "overhead_median": statistics.median(s - f for s, f in zip(spans, fits, strict=True)),
        "fit_median": statistics.median(fits),
    }


@contextlib.contextmanager
def swarm_engine() -> Iterator[dict[str, str]]:
    """A single-node swarm on a private engine plus a registry; the settings that use them."""
    from core.builders.base import BuildLog
    from core.builders.docker import DockerBuilder
    from core.config import PROJECT_ROOT, settings
    from tests import servers

    image, _, _ = DockerBuilder().ensure_image(BuildLog(echo=lambda _: None))
    engine = servers.start_private_dockerd([PROJECT_ROOT, Path(tempfile.gettempdir())])
    image_registry = None
    try:
        engine.copy_image(settings().docker_base_image)
        engine.copy_image(image.tags[0])
        servers.init_swarm(engine)
        image_registry = servers.start_registry()
        yield {"DOCKER_HOST": engine.host, "SWARM_IMAGE_REGISTRY": image_registry.address}
    finally:
        engine.docker("swarm", "leave", "--force", timeout=120)
        if image_registry is not None:
            image_registry.stop()
        engine.stop()


def measure(data: Path, registry: Any, backends: tuple[str, ...], say: Any) -> list[dict]:
    """One warm-up build per builder (images built and pushed), then one sweep each."""
    from core import builds

    results = []
    for backend in backends:
        context = swarm_engine() if backend == "swarm" else contextlib.nullcontext({})
        with context as settings_for, common.environment(settings_for):
            say(f"{backend}: warm-up build ...")
            request = builds.TrainRequest(recipe=RECIPE, data_path=data, backend=backend)
            warm = builds.execute(builds.submit(request, registry).version.id, registry)
            if warm.status != "ready":
                raise RuntimeError(f"{backend} warm-up failed: {warm.error}")
            say(f"{backend}: sweep of {len(list(_combos()))} builds ...")
            results.append(run_sweep(backend, data, registry, GRID))
            say(f"  {results[-1]['wall']:.1f} s")
    return results


def _combos() -> Iterator[tuple[str, str]]:
    return ((c, w) for c in GRID["C"] for w in GRID["class_weight"])


def report(results: list[dict], info: dict[str, Any], data_note: str) -> str:
    header = [
        "builder",
        "builds",
        "at once",
        "sweep wall",
        "per build (wall / builds)",
        "workers' fit+evaluate, sum",
        "per build: span, median",
        "per build: span − fit, median",
    ]
    rows = [
        [
            f"`{r['backend']}`",
            str(r["builds"]),
            str(r["parallel"]),
            f"{r['wall']:.1f} s",
            f"{r['wall'] / r['builds']:.2f} s",
            f"{r['fit_total']:.1f} s",
            f"{r['span_median']:.2f} s",
            f"{r['overhead_median']:.2f} s",
        ]
        for r in results
    ]
    grid = "; ".join(f"{k}={','.join(v)}" for k, v in GRID.items())
    return (
        f"{SECTION}\n\n"
        f"`{RECIPE}` on {data_note}, grid `{grid}` (12 builds), measured {info['date']} on "
        f"{info['nproc']} CPUs ({info['cpu']}), {info['memory_gib']:.1f} GiB RAM, Python "
        f"{info['python']}; 1-minute load {info['load']} at the start. One warm-up build per "
        "builder first (trainer image built, and for the swarm pushed to its registry). "
        "`local` and `docker` run MAX_PARALLEL_BUILDS (default: the CPUs) at a time; a "
        "swarm sweep keeps as many in flight as the cluster's nodes have CPUs (one node here, "
        "the same 2 CPUs) and its scheduler places them. The span of a build runs from its "
        "start to its artifact being registered; span − fit is what the builder adds around "
        "the worker's own fit and evaluation (process or container start, imports, dataset "
        "transfer; for the swarm also the per-build image build and push, service scheduling "
        "and removal), and it grows with the number of builds sharing the CPUs.\n\n"
        + common.table(header, rows)
        + "\n"
    )
