"""Build orchestration: validate a train request, queue a version, run it, record results.

`submit()` does every check before anything is stored (bad input changes nothing), then
either returns an identical ready version or queues a new one. `execute()` runs a queued
version with its builder and leaves it ready (artifact stored) or failed/cancelled (no
artifact). `launch()` runs `execute()` in a detached process so callers never block.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.artifacts import ArtifactStore
from core.builders import (
    Builder,
    BuildJob,
    BuildLimits,
    BuildLog,
    get_builder,
    resolve_backend,
)
from core.config import DEFAULT_MODEL, PROJECT_ROOT, SAMPLE_DATA, settings
from core.dataset import Dataset, load_dataset
from core.errors import AltruismError, BadInput, BuildCancelled
from core.evaluate import probability_digest
from core.provenance import code_fingerprint, environment, git_state
from core.recipes import get_recipe
from core.registry import Registry
from core.schema import CANCELLED, ModelVersion

Echo = Callable[[str], None]


@dataclass
class TrainRequest:
    """Everything a user chooses for one build."""

    recipe: str
    params: dict[str, Any] = field(default_factory=dict)
    data_path: str | Path = SAMPLE_DATA
    seed: int = 42
    test_size: float = 0.2
    threshold: float = 0.5
    model: str = DEFAULT_MODEL
    backend: str = "auto"
    force: bool = False
    timeout_s: float | None = None
    memory: str | None = None
    cpus: float | None = None
    fault: str | None = None  # test hook, honoured only with ALTRUISM_ALLOW_FAULTS=1


@dataclass
class Submission:
    """The version a request maps to, whether it was reused, and which builder runs it."""

    version: ModelVersion
    reused: bool
    builder: str
    builder_reason: str
    dataset: Dataset | None = None


def _check_numbers(request: TrainRequest) -> None:
    if (
        isinstance(request.seed, bool)
        or not isinstance(request.seed, int)
        or not (0 <= request.seed < 2**32)
    ):
        raise BadInput(f"seed must be an integer in [0, 2^32), got {request.seed!r}")
    if not 0.05 <= float(request.test_size) <= 0.5:
        raise BadInput(f"test size must be in [0.05, 0.5], got {request.test_size}")
    if not 0.0 < float(request.threshold) < 1.0:
        raise BadInput(f"threshold must be in (0, 1), got {request.threshold}")
    if request.timeout_s is not None and not 1 <= request.timeout_s <= 86_400:
        raise BadInput(f"timeout must be 1-86400 seconds, got {request.timeout_s}")
    if request.cpus is not None and not 0.1 <= request.cpus <= 64:
        raise BadInput(f"cpus must be in [0.1, 64], got {request.cpus}")
    if request.memory is not None and not _valid_memory(request.memory):
        raise BadInput(f"memory must look like 512m or 2g, got {request.memory!r}")


def _valid_memory(value: str) -> bool:
    return (
        len(value) >= 2
        and value[:-1].isdigit()
        and value[-1].lower() in "kmg"
        and int(value[:-1]) > 0
    )


def fingerprint(
    request: TrainRequest, params: dict[str, Any], data_sha256: str, builder: str
) -> str:
    """What makes two builds the same: recipe, params, data, split, code, packages, builder.

    "Code" is the content hash of the training code (`core/`, Dockerfile, requirements), not
    the git commit: a commit that only touches docs or tests does not change what a build
    produces, while uncommitted edits to `core/` do. The commit is kept in provenance.
    """
    payload = {
        "model": request.model,
        "recipe": request.recipe,
        "params": params,
        "data_sha256": data_sha256,
        "seed": request.seed,
        "test_size": float(request.test_size),
        "threshold": float(request.threshold),
        "code": code_fingerprint(),
        "packages": environment()["packages"],
        "builder": builder,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def submit(request: TrainRequest, registry: Registry) -> Submission:
    """Validate everything, then reuse an identical ready version or queue a new one."""
    recipe = get_recipe(request.recipe)
    params = recipe.resolve(request.params)
    _check_numbers(request)
    data_path = Path(request.data_path).expanduser().resolve()
    dataset = load_dataset(data_path)
    builder, reason = resolve_backend(request.backend)
    key = fingerprint(request, params, dataset.sha256, builder)
    if not request.force:
        existing = registry.find_ready(request.model, key)
        if existing is not None:
            return Submission(existing, True, builder, reason, dataset)
    version = registry.create_version(
        request.model,
        recipe=recipe.name,
        params=params,
        threshold=float(request.threshold),
        builder=builder,
        fingerprint=key,
        data_path=str(data_path),
        data_sha256=dataset.sha256,
        split_seed=request.seed,
        split_test_size=float(request.test_size),
        provenance={
            "request": {
                "timeout_s": request.timeout_s,
                "memory": request.memory,
                "cpus": request.cpus,
                "fault": request.fault,
                "builder_reason": reason,
            }
        },
    )
    return Submission(version, False, builder, reason, dataset)


def _limits(row: ModelVersion) -> BuildLimits:
    asked = row.provenance.get("request", {})
    conf = settings()
    return BuildLimits(
        timeout_s=asked.get("timeout_s") or conf.build_timeout_s,
        memory=asked.get("memory") or conf.build_memory,
        cpus=asked.get("cpus") or conf.build_cpus,
    )


def _job(row: ModelVersion, registry: Registry) -> BuildJob:
    return BuildJob(
        registry_id=registry.identity,
        version_id=row.id,
        recipe=row.recipe,
        params=row.params,
        data_path=Path(row.data_path),
        data_sha256=row.data_sha256,
        seed=row.split_seed,
        test_size=row.split_test_size,
        threshold=row.threshold,
        limits=_limits(row),
        fault=row.provenance.get("request", {}).get("fault"),
    )


def log_path_for(row: ModelVersion) -> Path:
    return settings().log_root / f"{row.model.name}-v{row.version}-{row.id}.log"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _provenance(
    row: ModelVersion, result: dict[str, Any], extra: dict[str, Any], started: str, builder: str
) -> dict[str, Any]:
    env = result["environment"]
    data = result["data"]
    return {
        "builder": builder,
        "git": git_state(),
        "code_fingerprint": code_fingerprint(),
        "data_path": row.data_path,
        "data_rows": data["rows"],
        "data_positives": data["positives"],
        "data_sha256": data["sha256"],
        "split": {
            "seed": row.split_seed,
            "test_size": row.split_test_size,
            "hash": result["split_hash"],
        },
        "recipe": row.recipe,
        "params": row.params,
        "threshold": row.threshold,
        "python": env["python"],
        "platform": env["platform"],
        "packages": env["packages"],
        "host_environment": environment(),
        "started_at": started,
        "finished_at": _now(),
        "fit_seconds": round(result["fit_seconds"], 4),
        "evaluate_seconds": round(result["evaluate_seconds"], 4),
        "request": row.provenance.get("request", {}),
        **({"docker": extra} if builder == "docker" else {"worker": extra}),
    }


def execute(
    version_id: int,
    registry: Registry,
    store: ArtifactStore | None = None,
    echo: Echo | None = None,
    builder: Builder | None = None,
) -> ModelVersion:
    """Run a queued version to the end: ready with its artifact, or failed/cancelled.

    `builder` overrides the registered builder kind's default instance (tests use it to
    build from another context); it must be of the same kind.
    """
    store = store or ArtifactStore(settings().artifact_root)
    row = registry.get_by_id(version_id)
    log = BuildLog(log_path_for(row), echo, on_stage=lambda name: registry.set_stage(row.id, name))
    started = _now()
    registry.mark_running(
        row.id, "building image" if row.builder == "docker" else "training", str(log.path)
    )
    work_dir = Path(tempfile.mkdtemp(prefix=f"altruism-build-{row.id}-"))
    try:
        builder = builder or get_builder(row.builder)
        outcome = builder.run(
            _job(row, registry),
            work_dir,
            log,
            should_cancel=lambda: registry.cancel_requested(row.id),
        )
        registry.set_stage(row.id, "registering")
        sha256, size = store.put_file(outcome.artifact)
        result = outcome.result
        try:
            return registry.complete(
                row.id,
                metrics=result["metrics"],
                split_hash=result["split_hash"],
                provenance=_provenance(row, result, outcome.provenance, started, row.builder),
                artifact_sha256=sha256,
                artifact_size=size,
                log_tail=log.tail(),
                details={
                    "curves": result["curves"],
                    "test_ids": result["test_ids"],
                    "test_labels": result["test_labels"],
                    "test_probabilities": result["test_probabilities"],
                },
            )
        except BaseException:
            _discard_unreferenced(registry, store, sha256)
            raise
    except BuildCancelled as exc:
        log(f"cancelled: {exc}")
        return registry.fail(row.id, str(exc), log.tail(), status=CANCELLED)
    except Exception as exc:
        message = str(exc) if isinstance(exc, AltruismError) else f"{type(exc).__name__}: {exc}"
        log(f"failed: {message}")
        return registry.fail(row.id, message, log.tail())
    except BaseException as exc:  # KeyboardInterrupt / SystemExit: still leave a record
        registry.fail(row.id, f"interrupted ({type(exc).__name__})", log.tail())
        raise
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def _discard_unreferenced(registry: Registry, store: ArtifactStore, sha256: str) -> None:
    """Remove an artifact that no ready version references (after a failed registration)."""
    try:
        if not registry.artifact_in_use(sha256):
            store.remove(sha256)
    except Exception:  # the registry itself may be the problem; `check` will report it
        pass


def train(
    request: TrainRequest,
    registry: Registry,
    store: ArtifactStore | None = None,
    echo: Echo | None = None,
) -> tuple[ModelVersion, Submission]:
    """Submit and run in this process; returns the final version and the submission."""
    submission = submit(request, registry)
    if submission.reused:
        return submission.version, submission
    return execute(submission.version.id, registry, store, echo), submission


def launch(version_id: int, registry: Registry) -> int:
    """Run `execute()` for a queued version in a detached process; returns its pid."""
    row = registry.get_by_id(version_id)
    log_file = log_path_for(row)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ,
        REGISTRY_URL=registry.url,
        PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
    )
    with open(log_file, "a") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "core", "run-build", str(version_id)],
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=handle,
            start_new_session=True,
        )
    registry.claim_for(version_id, process.pid)
    return process.pid


def recover_orphans(registry: Registry) -> list[ModelVersion]:
    """Mark builds whose worker died as failed, and remove their Docker containers."""
    orphans = registry.mark_orphans()
    if any(row.builder == "docker" for row in orphans):
        from core.builders.docker import remove_containers

        for row in orphans:
            if row.builder == "docker":
                remove_containers(registry.identity, row.id)
    return orphans


STARTER_RECIPES = ("nb-bow", "tfidf-logreg", "tfidf-meta-logreg")


def launch_starters(registry: Registry, backend: str = "auto") -> list[Submission]:
    """Queue and launch the starter recipes on the bundled sample (empty-registry button)."""
    submissions = [
        submit(TrainRequest(recipe=name, backend=backend), registry) for name in STARTER_RECIPES
    ]
    for submission in submissions:
        if not submission.reused:
            launch(submission.version.id, registry)
    return submissions


def wait_for(
    version_id: int, registry: Registry, timeout_s: float = 600.0, poll_s: float = 0.5
) -> ModelVersion:
    """Block until a version leaves queued/running (for tests and `train --wait`)."""
    deadline = time.monotonic() + timeout_s
    while True:
        row = registry.get_by_id(version_id)
        if row.status not in ("queued", "running"):
            return row
        if time.monotonic() > deadline:
            raise AltruismError(f"version {row.version} still {row.status} after {timeout_s}s")
        time.sleep(poll_s)


def reproduce(row: ModelVersion, registry: Registry, echo: Echo | None = None) -> dict[str, Any]:
    """Rebuild a ready version from its provenance with the same builder and compare."""
    if row.status != "ready":
        raise BadInput(f"version {row.version} is {row.status}; only ready versions reproduce")
    details = registry.details(row.id)
    job = _job(row, registry)
    if row.builder == "docker":
        job = replace(job, image_id=row.provenance.get("docker", {}).get("image_id"))
    work_dir = Path(tempfile.mkdtemp(prefix=f"altruism-reproduce-{row.id}-"))
    log = BuildLog(settings().log_root / f"{row.model.name}-v{row.version}-reproduce.log", echo)
    try:
        load_dataset(job.data_path)  # clear error if the data moved or changed
        outcome = get_builder(row.builder).run(job, work_dir, log, should_cancel=lambda: False)
        from core.artifacts import sha256_of

        new_sha = sha256_of(outcome.artifact)
        original_digest = probability_digest(details.test_probabilities)
        new_digest = probability_digest(outcome.result["test_probabilities"])
        result = {
            "version": row.version,
            "builder": row.builder,
            "identical": new_digest == original_digest and new_sha == row.artifact_sha256,
            "probabilities_identical": new_digest == original_digest,
            "artifact_identical": new_sha == row.artifact_sha256,
            "original": {
                "probability_digest": original_digest,
                "artifact_sha256": row.artifact_sha256,
            },
            "rebuilt": {
                "probability_digest": new_digest,
                "artifact_sha256": new_sha,
                **(
                    {"image_id": outcome.provenance.get("image_id")}
                    if row.builder == "docker"
                    else {}
                ),
            },
            "split_identical": outcome.result["split_hash"] == row.split_hash,
            "code_fingerprint_now": code_fingerprint(),
            "code_fingerprint_then": row.provenance.get("code_fingerprint"),
            "at": _now(),
        }
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    registry.set_reproduction(row.id, result)
    return result
