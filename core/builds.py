"""Build orchestration: validate a train request, queue a version, run it, record results.

`submit()` does every check before anything is stored (bad input changes nothing), keeps
the canonical dataset in the artifact store, and either returns an identical version
(ready, or still queued or running) or queues a new one. `execute()` runs a queued version
with its builder and leaves it ready (artifact stored) or failed/cancelled (no artifact).
`launch()` runs `execute()` in a detached process so callers never block.

The artifact's digest is recorded on the version (`pin_artifact`) before its file lands in
the store, and `gc` removes a file only under the same lock after checking that no version
records it, so maintenance never deletes what a build is about to register.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.actor import current_actor
from core.artifacts import ArtifactStore, open_store
from core.builders import (
    Builder,
    BuildJob,
    BuildLimits,
    BuildLog,
    BuildOutcome,
    get_builder,
    resolve_backend,
)
from core.config import DEFAULT_MODEL, PROJECT_ROOT, SAMPLE_DATA, settings
from core.dataset import Dataset, scan_dataset
from core.errors import AltruismError, BadInput, BuildCancelled, NotFound
from core.operating_point import DEFAULT_POLICY, parse_policy, policy_label
from core.provenance import code_fingerprint, environment, git_state
from core.registry import Registry, launcher_identity, lease_holder
from core.schema import ACTIVE_STATUSES, CANCELLED, READY, ModelVersion

Echo = Callable[[str], None]
WORK_PREFIX = "altruism-build-"
MEMORY = re.compile(r"^([1-9][0-9]{0,12})([kmg])$")
MEMORY_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
MIN_MEMORY, MAX_MEMORY = 64 << 20, 1 << 40  # Docker needs at least 6 MB; training far more
MAX_FOLDS, MAX_REPEATS = 20, 10
DATA_KINDS = ("sample", "folder", "upload", "file", "imported")


@dataclass
class TrainRequest:
    """Everything a user chooses for one build."""

    recipe: str
    params: dict[str, Any] = field(default_factory=dict)
    recipe_file: dict[str, Any] | None = None  # a team recipe's recorded source (refit)
    data_path: str | Path = SAMPLE_DATA
    seed: int = 42
    test_size: float = 0.2
    threshold_policy: str = DEFAULT_POLICY  # how the decision threshold is chosen
    model: str = DEFAULT_MODEL
    backend: str = "auto"
    force: bool = False
    timeout_s: float | None = None
    memory: str | None = None
    cpus: float | None = None
    data_name: str | None = None  # how the dataset is shown (default: the file name)
    data_kind: str | None = None  # sample, folder, upload or file (default: from the path)
    fault: str | None = None  # test hook, honoured only with ALTRUISM_ALLOW_FAULTS=1
    refit_of: int | None = None  # a ready version's id: fit on all its data, keep its scores
    cv_folds: int | None = None  # cross-validate with this many stratified folds ...
    cv_repeats: int = 1  # ... repeated this many times (instead of one held-out split)
    actor: str | None = None  # who asks (a dashboard login name); default `current_actor()`

    def cv(self) -> dict[str, int] | None:
        """{"folds": K, "repeats": R} of a cross-validated request, else None."""
        if self.cv_folds is None:
            return None
        return {"folds": self.cv_folds, "repeats": self.cv_repeats}


@dataclass
class Submission:
    """The version a request maps to, whether it was reused, and which builder runs it."""

    version: ModelVersion
    reused: bool
    builder: str
    builder_reason: str
    rows: int = 0
    positives: int | None = None


def parse_memory(value: str) -> int:
    """Bytes of a Docker memory limit such as 512m or 2g; BadInput when not sensible."""
    match = MEMORY.match(value.strip().lower()) if isinstance(value, str) else None
    if match is None:
        raise BadInput(
            f"memory must look like 512m or 2g (digits 0-9 and k, m or g), got {value!r}"
        )
    amount = int(match.group(1)) * MEMORY_UNITS[match.group(2)]
    if not MIN_MEMORY <= amount <= MAX_MEMORY:
        raise BadInput(f"memory must be between 64m and 1024g, got {value!r}")
    return amount


def check_folds(folds: Any, repeats: Any) -> None:
    """BadInput unless K and R are integers in range."""
    for name, value, low, high in (
        ("folds", folds, 2, MAX_FOLDS),
        ("repeats", repeats, 1, MAX_REPEATS),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise BadInput(f"cross-validation {name} must be an integer in [{low}, {high}]")


def _check_numbers(request: TrainRequest) -> None:
    if request.cv_folds is not None:
        check_folds(request.cv_folds, request.cv_repeats)
        if request.refit_of is not None:
            raise BadInput("a refit is scored by its parent: it cannot cross-validate")
    elif request.cv_repeats != 1:
        raise BadInput("cross-validation repeats need a number of folds (--cv K)")
    if (
        isinstance(request.seed, bool)
        or not isinstance(request.seed, int)
        or not (0 <= request.seed < 2**32)
    ):
        raise BadInput(f"seed must be an integer in [0, 2^32), got {request.seed!r}")
    checks = (
        ("test size", request.test_size, 0.05, 0.5),
        ("timeout (seconds)", request.timeout_s, 1, 86_400),
        ("cpus", request.cpus, 0.1, 64),
    )
    for name, value, low, high in checks:
        if value is None and name in ("timeout (seconds)", "cpus"):
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            raise BadInput(f"{name} must be a number, got {value!r}")
        if not low <= float(value) <= high:
            raise BadInput(f"{name} must be in [{low:g}, {high:g}], got {value!r}")
    if request.memory is not None:
        parse_memory(request.memory)


def operating_choice(request: TrainRequest, registry: Registry) -> tuple[float, str]:
    """(threshold until the build says, policy label) of a request. A refit keeps its
    parent's threshold and policy: it carries the parent's evaluation."""
    if request.refit_of is not None:
        parent = registry.get_by_id(request.refit_of)
        return parent.threshold, policy_label(parent.metrics, parent.threshold)
    policy = parse_policy(request.threshold_policy)
    return (policy.value if policy.kind == "fixed" else 0.5), policy.label


def fingerprint(
    request: TrainRequest,
    params: dict[str, Any],
    data_sha256: str,
    builder: str,
    operating: tuple[float, str] | None = None,
    recipe_sha256: str | None = None,
) -> str:
    """What makes two builds the same: recipe, params, data, split, code, packages, builder.

    "Code" is the content hash of the training code (`core/`, Dockerfile, requirements), not
    the git commit: a commit that only touches docs or tests does not change what a build
    produces, while uncommitted edits to `core/` do. The commit is kept in provenance.
    A team recipe's source counts by its sha256 (`recipe_sha256`).
    """
    team = {"recipe_sha256": recipe_sha256} if recipe_sha256 else {}
    threshold, label = operating or (0.5, parse_policy(request.threshold_policy).label)
    refit = {"refit": True, "threshold": threshold} if request.refit_of is not None else {}
    cv = {"cv": request.cv()} if request.cv() else {}
    return version_fingerprint(
        model=request.model,
        recipe=request.recipe,
        params=params,
        data_sha256=data_sha256,
        seed=request.seed,
        test_size=float(request.test_size),
        threshold_policy=label,
        code=code_fingerprint(),
        packages=environment()["packages"],
        builder=builder,
        **refit,
        **cv,
        **team,
    )


def version_fingerprint(**facts: Any) -> str:
    """sha256 of the facts that define a build (see `fingerprint`)."""
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def resolve_data_path(path: str | Path) -> Path:
    """The dataset's absolute path; BadInput for loops and unreadable paths."""
    try:
        resolved = Path(path).expanduser().resolve(strict=True)
    except (OSError, RuntimeError, ValueError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise BadInput(f"dataset {str(path)[:200]!r} not found") from None
        reason = "a symlink loop" if isinstance(exc, RuntimeError) else type(exc).__name__
        raise BadInput(f"dataset {str(path)[:200]!r} cannot be read ({reason})") from None
    return resolved


def data_kind_of(path: Path) -> str:
    """Where a dataset came from: the bundled sample, the data folder, an upload, a file."""
    from core.datafiles import UPLOADS

    if path == SAMPLE_DATA.resolve():
        return "sample"
    data_dir = settings().data_dir.resolve()
    if path.is_relative_to(data_dir / UPLOADS):
        return "upload"
    if path.is_relative_to(data_dir):
        return "sample" if path.name == SAMPLE_DATA.name else "folder"
    return "file"


@contextlib.contextmanager
def scanned(path: Path) -> Iterator[tuple[Dataset, Path]]:
    """Validate a dataset in one pass; yield its facts and its canonical file (temporary)."""
    with tempfile.TemporaryDirectory(prefix="altruism-data-") as tmp:
        canonical = Path(tmp) / "canonical.jsonl"
        with open(canonical, "wb") as out:
            dataset = scan_dataset(path, canonical=out)
        yield dataset, canonical


def keep_dataset(store: ArtifactStore, sha256: str, canonical: Path) -> None:
    """Put a canonical dataset into the store unless it is there already."""
    if not store.exists(sha256, "dataset"):
        store.put_file(canonical, "dataset", sha256=sha256)


def submit(
    request: TrainRequest, registry: Registry, store: ArtifactStore | None = None
) -> Submission:
    """Validate everything, then reuse an identical version or queue a new one."""
    with submitting(request, registry, store or open_store()) as (submission, _):
        return submission


@contextlib.contextmanager
def submitting(
    request: TrainRequest, registry: Registry, store: ArtifactStore, keep_dataset_now: bool = True
) -> Iterator[tuple[Submission, Path]]:
    """`submit`, yielding the submission and the canonical dataset file (until the block
    ends). Without `keep_dataset_now` the caller stores the dataset (`execute` does it
    while the worker trains)."""
    from core.recipe_files import resolve_request

    recipe, params, recipe_file = resolve_request(
        request.recipe, request.params, request.recipe_file
    )
    _check_numbers(request)
    operating = operating_choice(request, registry)
    if request.data_kind is not None and request.data_kind not in DATA_KINDS:
        raise BadInput(f"data kind must be one of {', '.join(DATA_KINDS)}")
    data_path = resolve_data_path(request.data_path)
    with scanned(data_path) as (dataset, canonical):
        _check_class_counts(request, dataset)
        builder, reason = resolve_backend(request.backend)
        key = fingerprint(
            request,
            params,
            dataset.sha256,
            builder,
            operating,
            recipe_sha256=recipe_file and recipe_file["sha256"],
        )
        version, reused = registry.create_or_reuse(  # joins only a live identical build
            request.model,
            in_flight_only=request.force,  # even a forced rebuild joins an identical one running
            recipe=recipe.name,
            params=params,
            threshold=operating[0],  # a tuned policy's threshold is set when the build ends
            threshold_policy=operating[1],
            builder=builder,
            fingerprint=key,
            data_path=str(data_path),
            data_sha256=dataset.sha256,
            data_name=(request.data_name or data_path.name)[:300],
            data_kind=request.data_kind or data_kind_of(data_path),
            split_seed=request.seed,
            split_test_size=float(request.test_size),
            created_by=current_actor(request.actor),
            provenance={
                "request": {
                    "timeout_s": request.timeout_s,
                    "memory": request.memory,
                    "cpus": request.cpus,
                    "fault": request.fault,
                    "builder_reason": reason,
                    "launcher": launcher_identity(),  # holds the row until a worker runs it
                    **({"refit_of": request.refit_of} if request.refit_of is not None else {}),
                    **({"cv": request.cv()} if request.cv() else {}),
                },
                **({"recipe_file": recipe_file} if recipe_file else {}),
            },
        )
        recover_orphans(registry)  # other builds that can never finish
        if not reused and keep_dataset_now:  # the version now pins the dataset's digest: store it
            try:
                keep_dataset(store, dataset.sha256, canonical)
            except Exception as exc:
                registry.fail(version.id, f"could not store the dataset: {exc}")
                raise AltruismError(
                    f"could not store the dataset in {store.location}: {exc}"
                ) from exc
        submission = Submission(version, reused, builder, reason, dataset.rows, dataset.positives)
        yield submission, canonical


def _check_class_counts(request: TrainRequest, dataset: Dataset) -> None:
    """Too few requests of a class for the split, the folds or the threshold's inner folds:
    refused before a version is written (a refit fits on everything and tunes nothing)."""
    from core.class_counts import check_class_counts

    if request.refit_of is not None or dataset.positives is None:
        return
    check_class_counts(
        dataset.rows,
        dataset.positives,
        request.seed,
        float(request.test_size),
        request.cv_folds,
        parse_policy(request.threshold_policy).tuned,
    )


def build_limits(row: ModelVersion) -> BuildLimits:
    """The limits a version was asked to build within (or the settings' defaults)."""
    asked = row.provenance.get("request", {})
    conf = settings()
    return BuildLimits(
        timeout_s=asked.get("timeout_s") or conf.build_timeout_s,
        memory=asked.get("memory") or conf.build_memory,
        cpus=asked.get("cpus") or conf.build_cpus,
    )


def _job(row: ModelVersion, registry: Registry, data_file: Path) -> BuildJob:
    return BuildJob(
        registry_id=registry.identity,
        version_id=row.id,
        version_label=f"{row.model.name} v{row.version}",
        version_number=row.version,
        recipe=row.recipe,
        params=row.params,
        data_file=data_file,
        data_name=row.data_name or "dataset",
        data_sha256=row.data_sha256,
        seed=row.split_seed,
        test_size=0.0 if refit_parent_id(row) else row.split_test_size,
        threshold_policy=row.threshold_policy or DEFAULT_POLICY,
        limits=build_limits(row),
        fault=row.provenance.get("request", {}).get("fault"),
        cv=cv_of(row),
        recipe_file=(row.provenance or {}).get("recipe_file"),
    )


def cv_of(row: ModelVersion) -> dict[str, int] | None:
    """{"folds": K, "repeats": R} when the version is evaluated by cross-validation."""
    cv = (row.provenance or {}).get("request", {}).get("cv")
    return cv if isinstance(cv, dict) else None


def dataset_file(row: ModelVersion, store: ArtifactStore, work_dir: Path) -> Path:
    """A local copy (or the local store's file) of the version's canonical dataset.

    Versions from before datasets were kept in the store are re-read from their recorded
    path, checked against their digest, and stored now.
    """
    sha = row.data_sha256
    local = store.local_path(sha, "dataset")
    if local is not None and local.is_file():
        return local
    if store.exists(sha, "dataset"):
        return store.fetch_verified(sha, "dataset", work_dir / "data.jsonl")
    if not row.data_path or not Path(row.data_path).is_file():
        raise NotFound(
            f"the dataset of version {row.version} ({sha[:12]}) is not in the artifact "
            f"store and its original file {row.data_path or '(unknown)'} is gone"
        )
    with scanned(Path(row.data_path)) as (dataset, canonical):
        if dataset.sha256 != sha:
            raise BadInput(
                f"{row.data_path} changed since version {row.version} was built "
                f"(sha256 {dataset.sha256[:12]}, recorded {sha[:12]})"
            )
        keep_dataset(store, sha, canonical)
    return dataset_file(row, store, work_dir)


def new_work_dir(registry: Registry, row: ModelVersion) -> Path:
    """A private (0700) folder for one build, named so recovery can find it."""
    root = settings().work_root
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{registry.identity}-{row.id}-", dir=root))


def work_dirs(registry: Registry) -> list[tuple[Path, int]]:
    """This registry's build work folders and the version id each belongs to."""
    root = settings().work_root
    prefix = f"{WORK_PREFIX}{registry.identity}-"
    found = []
    with contextlib.suppress(OSError):
        for path in root.iterdir():
            if not path.name.startswith(prefix) or path.is_symlink() or not path.is_dir():
                continue
            version_id = path.name[len(prefix) :].split("-", 1)[0]
            if version_id.isdigit():
                found.append((path, int(version_id)))
    return found


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _provenance(
    row: ModelVersion,
    result: dict[str, Any],
    extra: dict[str, Any],
    started: str,
    store: ArtifactStore,
) -> dict[str, Any]:
    env = result["environment"]
    data = result["data"]
    return {
        "builder": row.builder,
        "git": git_state(),
        "code_fingerprint": code_fingerprint(),
        "data_name": row.data_name,
        "data_kind": row.data_kind,
        "data_source": row.data_path,
        "data_rows": data["rows"],
        "data_positives": data["positives"],
        "data_sha256": data["sha256"],
        "data_store": store.location,
        "split": {
            "seed": row.split_seed,
            "test_size": None if cv_of(row) else row.split_test_size,
            "hash": result["split_hash"],
            **({"cv": cv_of(row)} if cv_of(row) else {}),
        },
        "recipe": row.recipe,
        "params": row.params,
        "threshold": result["metrics"].get("threshold", row.threshold),
        "threshold_policy": row.threshold_policy,
        "python": env["python"],
        "platform": env["platform"],
        "packages": env["packages"],
        "host_environment": environment(),
        "started_at": started,
        "finished_at": _now(),
        "fit_seconds": round(result["fit_seconds"], 4),
        "evaluate_seconds": round(result["evaluate_seconds"], 4),
        "artifact_store": store.location,
        "request": row.provenance.get("request", {}),
        **{k: v for k, v in row.provenance.items() if k == "recipe_file"},
        **({"worker": extra} if row.builder == "local" else {row.builder: extra}),
    }


def build_log(registry: Registry, row: ModelVersion, echo: Echo | None = None) -> BuildLog:
    return BuildLog(
        append=lambda text: registry.append_log(row.id, text),
        echo=echo,
        on_stage=lambda name: registry.set_stage(row.id, name),
    )


class LeaseKeeper:
    """Renew the leases of running (or claimed, waiting) builds from a background thread of
    the process that runs or watches them, every `lease_s / 6` seconds until `stop()`. A
    renewal the registry refuses (the version ended, or another process's recovery failed
    it) drops that version and sets `lost`; one that cannot reach the registry is retried
    at the next tick."""

    def __init__(self, registry: Registry, version_ids: list[int], lease_s: float) -> None:
        self.registry, self.lease_s = registry, lease_s
        self.version_ids = list(version_ids)
        self.holder = lease_holder()
        self.lost = False
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="build-lease", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.version_ids and not self._stop.wait(self.lease_s / 6):
            for version_id in list(self.version_ids):
                try:
                    if not self.registry.renew_lease(version_id, self.holder, self.lease_s):
                        self.lost = True
                        self.version_ids.remove(version_id)
                except Exception:  # the registry is unreachable now: try again next tick
                    continue

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=30)


class DatasetUpload:
    """Store a build's dataset in a background thread while its worker trains."""

    def __init__(self, store: ArtifactStore, sha256: str, canonical: Path) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(
            target=self._run, args=(store, sha256, canonical), name="dataset-upload", daemon=True
        )
        self.store = store
        self.thread.start()

    def _run(self, store: ArtifactStore, sha256: str, canonical: Path) -> None:
        try:
            keep_dataset(store, sha256, canonical)
        except BaseException as exc:  # reported by wait()
            self.error = exc

    def failed(self) -> bool:
        return not self.thread.is_alive() and self.error is not None

    def wait(self) -> None:
        """Block until stored; AltruismError when the upload failed."""
        self.thread.join()
        if self.error is not None:
            raise AltruismError(
                f"could not store the dataset in {self.store.location}: {self.error}"
            ) from self.error


def execute(
    version_id: int,
    registry: Registry,
    store: ArtifactStore | None = None,
    echo: Echo | None = None,
    builder: Builder | None = None,
    local_dataset: Path | None = None,
) -> ModelVersion:
    """Run a queued version to the end: ready with its artifact, or failed/cancelled.

    `builder` overrides the registered builder kind's default instance (tests use it to
    build from another context); it must be of the same kind. `local_dataset`, the
    version's canonical dataset still on this machine, is trained on directly and stored
    in the background meanwhile (a remote store's set-up and upload overlap the fit).

    While it runs, the registry waits out a database server that cannot be reached (a
    restart) for up to REGISTRY_RETRY_S before an operation fails.
    """
    with registry.db.patient(settings().registry_retry_s):
        return _execute(version_id, registry, store, echo, builder, local_dataset)


def _execute(
    version_id: int,
    registry: Registry,
    store: ArtifactStore | None,
    echo: Echo | None,
    builder: Builder | None,
    local_dataset: Path | None,
) -> ModelVersion:
    store = store or open_store()
    row = registry.get_by_id(version_id)
    if row.status not in ACTIVE_STATUSES:
        raise BadInput(f"version {row.version} is {row.status}; only queued builds run")
    log = build_log(registry, row, echo)
    started = _now()
    lease_s = settings().build_lease_s
    registry.mark_running(
        row.id, "building image" if row.builder != "local" else "training", lease_s=lease_s
    )
    lease = LeaseKeeper(registry, [row.id], lease_s)

    def run() -> BuildOutcome:
        work_dir = new_work_dir(registry, row)
        upload: DatasetUpload | None = None
        try:
            chosen = builder or get_builder(row.builder)
            if local_dataset is not None:
                upload = DatasetUpload(store, row.data_sha256, local_dataset)
            data_file = local_dataset or dataset_file(row, store, work_dir)
            outcome = chosen.run(
                _job(row, registry, data_file),
                work_dir,
                log,
                should_cancel=lambda: (
                    (upload is not None and upload.failed())
                    or lease.lost
                    or registry.cancel_requested(row.id)
                ),
            )
        except BuildCancelled:
            if upload is not None and upload.failed():
                upload.wait()  # raises the upload's error: the real reason
            raise
        finally:  # gone before the version leaves "running": never seen as a leftover
            shutil.rmtree(work_dir, ignore_errors=True)
        if upload is not None:
            upload.wait()
        return outcome

    return see_through(registry, store, row, log, lease, run, started)


def see_through(
    registry: Registry,
    store: ArtifactStore,
    row: ModelVersion,
    log: BuildLog,
    lease: LeaseKeeper,
    run: Callable[[], BuildOutcome],
    started: str,
) -> ModelVersion:
    """Get a running version's outcome from `run()` and register it ready, or end the
    version failed or cancelled with the reason; the lease is given up either way."""
    sha256: str | None = None
    try:
        outcome = run()
        sha256 = outcome.artifact_sha256
        return _register(registry, store, row, outcome, log, started)
    except BuildCancelled as exc:
        if lease.lost:  # another process's recovery ended it: keep its reason
            log("stopped: this launcher's lease was taken (the version was ended elsewhere)")
            log.close()
            return registry.get_by_id(row.id)
        log(f"cancelled: {exc}")
        return _finish_failed(registry, store, row, str(exc), log, sha256, CANCELLED)
    except Exception as exc:
        message = str(exc) if isinstance(exc, AltruismError) else f"{type(exc).__name__}: {exc}"
        log(f"failed: {message}")
        return _finish_failed(registry, store, row, message, log, sha256)
    except BaseException as exc:  # KeyboardInterrupt / SystemExit: still leave a record
        _finish_failed(registry, store, row, f"interrupted ({type(exc).__name__})", log, sha256)
        raise
    finally:
        lease.stop()
        log.close()


def _register(
    registry: Registry,
    store: ArtifactStore,
    row: ModelVersion,
    outcome: BuildOutcome,
    log: BuildLog,
    started: str,
) -> ModelVersion:
    """Store a verified outcome's artifact and mark the version ready with its results."""
    registry.pin_artifact(row.id, outcome.artifact_sha256)
    stored, size = store.put_bytes(outcome.artifact, "model")
    result = outcome.result
    provenance = _provenance(row, result, outcome.provenance, started, store)
    if refit_parent_id(row):
        result, provenance = _parents_evaluation(registry, row, result, provenance, log)
    log(f"registered artifact {stored[:12]} ({size:,} bytes) in {store.location}")
    log.close()
    return registry.complete(
        row.id,
        metrics=result["metrics"],
        split_hash=result["split_hash"],
        provenance=provenance,
        artifact_sha256=stored,
        artifact_size=size,
        log_tail=log.tail(),
        details={
            "curves": result["curves"],
            "test_ids": result["test_ids"],
            "test_labels": result["test_labels"],
            "test_probabilities": result["test_probabilities"],
        },
    )


def refit_parent_id(row: ModelVersion) -> int | None:
    """The id of the version this one refits on all data, if it is a refit."""
    parent = (row.provenance or {}).get("request", {}).get("refit_of")
    return parent if isinstance(parent, int) else None


def _parents_evaluation(
    registry: Registry, row: ModelVersion, result: dict[str, Any], provenance: dict, log: Echo
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A refit is scored by its parent: the parent's metrics, split and test predictions."""
    parent = registry.get_by_id(refit_parent_id(row))
    details = registry.details(parent.id)
    if parent.status != READY or details is None:
        raise AltruismError(f"v{parent.version}, the version refitted, is no longer ready")
    log(
        f"metrics are v{parent.version}'s, measured on its held-out split before this refit "
        f"on all {result['data']['rows']} requests"
    )
    result = {
        **result,
        "metrics": parent.metrics,
        "split_hash": parent.split_hash,
        "curves": details.curves,
        "test_ids": details.test_ids,
        "test_labels": details.test_labels,
        "test_probabilities": details.test_probabilities,
    }
    provenance = {
        **provenance,
        "split": {**provenance["split"], "hash": parent.split_hash},
        "refit_of": {"version": parent.version, "id": parent.id},
    }
    return result, provenance


def submit_refit(
    parent: ModelVersion,
    registry: Registry,
    store: ArtifactStore | None = None,
    backend: str = "auto",
    actor: str | None = None,
) -> Submission:
    """Queue (or reuse) the refit of a ready version on all of its data: same recipe,
    parameters and dataset (read from the artifact store), scored by the parent."""
    store = store or open_store()
    if parent.status != READY:
        raise BadInput(f"version {parent.version} is {parent.status}; only ready versions refit")
    if (parent.provenance or {}).get("refit_of"):  # every ready refit records its parent
        raise BadInput(f"version {parent.version} is already a refit on all of its data")
    if cv_of(parent):
        raise BadInput(
            f"version {parent.version} is cross-validated: its model is already fitted on all "
            "of its data"
        )
    registry.details(parent.id)  # its scores become the refit's: damaged ones refuse it now
    with tempfile.TemporaryDirectory(prefix="altruism-refit-") as tmp:
        request = TrainRequest(
            recipe=parent.recipe,
            params=dict(parent.params),
            recipe_file=(parent.provenance or {}).get("recipe_file"),
            data_path=dataset_file(parent, store, Path(tmp)),
            seed=parent.split_seed,
            test_size=parent.split_test_size,
            model=parent.model.name,
            backend=backend,
            data_name=parent.data_name,
            data_kind=parent.data_kind,
            refit_of=parent.id,
            actor=actor,
        )
        return submit(request, registry, store)


def _finish_failed(
    registry: Registry,
    store: ArtifactStore,
    row: ModelVersion,
    message: str,
    log: BuildLog,
    sha256: str | None,
    status: str = "failed",
) -> ModelVersion:
    log.close()
    failed = registry.fail(row.id, message, log.tail(), status=status)
    if sha256:
        discard_unreferenced(registry, store, "model", sha256)
    return failed


def discard_unreferenced(registry: Registry, store: ArtifactStore, kind: str, sha256: str) -> None:
    """Remove a blob no version references (after a failed registration)."""
    with contextlib.suppress(Exception):  # the registry itself may be the problem: `gc` later
        registry.remove_if_unreferenced(kind, sha256, lambda: store.remove(sha256, kind))


def train(
    request: TrainRequest,
    registry: Registry,
    store: ArtifactStore | None = None,
    echo: Echo | None = None,
) -> tuple[ModelVersion, Submission]:
    """Submit and run in this process; returns the final version and the submission."""
    store = store or open_store()
    if not store.remote:
        submission = submit(request, registry, store)
        return run_submission(submission, registry, store, echo, request.timeout_s), submission
    with submitting(request, registry, store, keep_dataset_now=False) as (submission, canonical):
        row = run_submission(submission, registry, store, echo, request.timeout_s, canonical)
        return row, submission


def run_submission(
    submission: Submission,
    registry: Registry,
    store: ArtifactStore,
    echo: Echo | None = None,
    timeout_s: float | None = None,
    local_dataset: Path | None = None,
) -> ModelVersion:
    """Run a new submission here, or wait for the identical build it joined."""
    row = submission.version
    if not submission.reused:
        return execute(row.id, registry, store, echo, local_dataset=local_dataset)
    if row.status in ACTIVE_STATUSES:  # an identical build is running: wait for it
        limit = (timeout_s or settings().build_timeout_s or 3600.0) + 600
        row = wait_for(row.id, registry, timeout_s=limit)
    return row


def lower_priority() -> int:
    """Run this detached build (and the local workers it starts, which inherit it) at
    BUILD_NICE (default 10): the dashboard that launched it shares the machine's CPUs and
    must keep answering. Returns the niceness now in effect."""
    current = os.nice(0)
    wanted = settings().build_nice
    if wanted > current:
        current = os.nice(wanted - current)
    return current


def launcher_log(registry: Registry, version_id: int) -> Path:
    """Where a detached build's own stdout and stderr go (only a crash writes there)."""
    return settings().log_root / f"launch-{registry.identity}-{version_id}.log"


def launch(version_id: int, registry: Registry) -> int:
    """Run `execute()` for a queued version in a detached process; returns its pid."""
    return detach(
        ["run-build", str(version_id)], [version_id], registry, launcher_log(registry, version_id)
    )


def detach(verb: list[str], version_ids: list[int], registry: Registry, log_file: Path) -> int:
    """Start `python -m core VERB --quiet` in its own session against this registry (output
    to `log_file`), claim `version_ids` for it, and return its pid."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ,
        REGISTRY_URL=registry.url,
        PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
    )
    with open(log_file, "a") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "core", *verb, "--quiet"],
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=handle,
            start_new_session=True,
        )
    for version_id in version_ids:
        registry.claim_for(version_id, process.pid, lease_s=settings().build_lease_s)
    return process.pid


def recover_orphans(registry: Registry) -> list[ModelVersion]:
    """Fail builds that can never finish, and remove their containers and work folders;
    a swarm build whose launcher died is adopted instead (core.reconcile)."""
    from core.reconcile import adopter

    return clean_after_orphans(registry, registry.mark_orphans(adopter(registry)))


def clean_after_orphans(registry: Registry, orphans: list[ModelVersion]) -> list[ModelVersion]:
    """Remove the containers and work folders of builds just marked failed as orphans."""
    for row in orphans:
        if row.builder == "docker":
            from core.builders.docker import remove_containers

            remove_containers(registry.identity, row.id)
        elif row.builder == "swarm":
            from core.builders.swarm import remove_services

            remove_services(registry.identity, row.id)
    if orphans:
        dirs = work_dirs(registry)
        active = {row.id for row in registry.active_versions()}
        for path, version_id in dirs:
            if version_id not in active:
                shutil.rmtree(path, ignore_errors=True)
    return orphans


STARTER_RECIPES = ("nb-bow", "tfidf-logreg", "tfidf-meta-logreg")


def launch_starters(
    registry: Registry, backend: str = "auto", actor: str | None = None
) -> list[Submission]:
    """Queue and launch the starter recipes on the bundled sample (empty-registry button)."""
    submissions = [
        submit(
            TrainRequest(recipe=name, backend=backend, data_kind="sample", actor=actor), registry
        )
        for name in STARTER_RECIPES
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
        if row.status not in ACTIVE_STATUSES:
            return row
        if time.monotonic() > deadline:
            raise AltruismError(f"version {row.version} still {row.status} after {timeout_s}s")
        time.sleep(poll_s)


def reproduce(
    row: ModelVersion,
    registry: Registry,
    echo: Echo | None = None,
    store: ArtifactStore | None = None,
) -> dict[str, Any]:
    """Rebuild a ready version from its provenance with the same builder and compare."""
    from core.evaluate import probability_digest

    if row.status != READY:
        raise BadInput(f"version {row.version} is {row.status}; only ready versions reproduce")
    containerised = row.builder in ("docker", "swarm")
    if row.imported and containerised:
        image = None  # an archive's image id is never run; rebuild from today's image
    else:
        image = ((row.provenance or {}).get(row.builder) or {}).get("image_id")
    store = store or open_store()
    details = registry.details(row.id)
    work_dir = new_work_dir(registry, row)
    log = BuildLog(echo=echo)
    try:
        job = _job(row, registry, dataset_file(row, store, work_dir))
        if containerised and image:
            job = replace(job, image_id=image)
        outcome = get_builder(row.builder).run(job, work_dir, log, should_cancel=lambda: False)
        new_sha = outcome.artifact_sha256
        original_digest = probability_digest(details.test_probabilities)
        new_digest = probability_digest(outcome.result["test_probabilities"])
        result = {
            "version": row.version,
            "builder": row.builder,
            "identical": new_digest == original_digest and new_sha == row.artifact_sha256,
            "probabilities_identical": new_digest == original_digest,
            "artifact_identical": new_sha == row.artifact_sha256,
            "split_identical": outcome.result["split_hash"] == row.split_hash,
            "original": {
                "probability_digest": original_digest,
                "artifact_sha256": row.artifact_sha256,
            },
            "rebuilt": {
                "probability_digest": new_digest,
                "artifact_sha256": new_sha,
                **({"image_id": outcome.provenance.get("image_id")} if containerised else {}),
            },
            "code_fingerprint_now": code_fingerprint(),
            "code_fingerprint_then": row.provenance.get("code_fingerprint"),
            "at": _now(),
        }
        result = _as_refit(row, result)
    finally:
        log.close()
        shutil.rmtree(work_dir, ignore_errors=True)
    registry.set_reproduction(row.id, result)
    return result


def _as_refit(row: ModelVersion, result: dict[str, Any]) -> dict[str, Any]:
    """A refit's stored predictions and split are its parent's, never its own rebuild's:
    only its artifact can be compared."""
    parent = (row.provenance or {}).get("refit_of")
    if not isinstance(parent, dict):
        return result
    return {
        **result,
        "identical": result["artifact_identical"],
        "probabilities_identical": None,
        "split_identical": None,
        "refit_of": parent.get("version"),
        "note": (
            f"a refit's stored predictions are its parent v{parent.get('version')}'s: only the "
            "artifact is compared"
        ),
    }
