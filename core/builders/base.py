"""The builder interface and what every builder shares: job files, logs, result collection."""

from __future__ import annotations

import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import BadInput, BuildCancelled, BuildFailed
from core.logs import TAIL_CHARS, read_tail
from core.worker import ARTIFACT_NAME, ERROR_NAME, RESULT_NAME

POLL_SECONDS = 0.05  # how often a builder checks whether the worker finished
CANCEL_CHECK_SECONDS = 0.5  # how often it asks the registry whether to cancel
# Every worker, local or in a container: deterministic string hashing (byte-identical
# pickles) and single-threaded BLAS/OpenMP (reproducible sums, no oversubscription when
# several builds share the machine).
WORKER_ENV = {
    "PYTHONHASHSEED": "0",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


@dataclass(frozen=True)
class BuildLimits:
    """Per-build limits: wall-clock timeout, memory (e.g. "2g") and CPUs (Docker only)."""

    timeout_s: float | None = 3600.0
    memory: str | None = None
    cpus: float | None = None


@dataclass(frozen=True)
class BuildJob:
    """What to train: everything the worker needs, nothing about where it runs."""

    version_id: int
    recipe: str
    params: dict[str, Any]
    data_path: Path
    data_sha256: str
    seed: int
    test_size: float
    threshold: float
    limits: BuildLimits = field(default_factory=BuildLimits)
    fault: str | None = None
    image_id: str | None = None  # Docker: reuse exactly this image (reproduce)
    registry_id: str = ""  # which registry the version lives in (labels its container)

    def spec(self, data_path: str) -> dict[str, Any]:
        """The worker's job.json, with the dataset path as the worker will see it."""
        return {
            "recipe": self.recipe,
            "params": self.params,
            "data_path": data_path,
            "data_sha256": self.data_sha256,
            "seed": self.seed,
            "test_size": self.test_size,
            "threshold": self.threshold,
            "fault": self.fault,
        }


@dataclass
class BuildOutcome:
    """A finished worker's results, its artifact file and builder-specific provenance."""

    result: dict[str, Any]
    artifact: Path
    provenance: dict[str, Any]


class BuildLog:
    """Appends build log lines to a file (tailed by the dashboard) and an optional echo."""

    def __init__(
        self,
        path: Path,
        echo: Callable[[str], None] | None = None,
        on_stage: Callable[[str], None] | None = None,
    ) -> None:
        self.path = path
        self.echo = echo
        self.on_stage = on_stage
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, line: str) -> None:
        line = line.rstrip("\n")
        with self._lock, open(self.path, "a", encoding="utf-8", errors="replace") as handle:
            handle.write(line + "\n")
        if self.echo:
            self.echo(line)

    def stage(self, name: str) -> None:
        """Record that the build entered stage `name` (shown as the version's stage)."""
        self(f"== {name}")
        if self.on_stage:
            self.on_stage(name)

    def tail(self, chars: int = TAIL_CHARS) -> str:
        return read_tail(self.path, chars)


class Builder(ABC):
    """Runs `core.worker` for a job and returns its outcome or raises BuildFailed."""

    name: str

    @abstractmethod
    def run(
        self, job: BuildJob, work_dir: Path, log: BuildLog, should_cancel: Callable[[], bool]
    ) -> BuildOutcome:
        """Train `job`, writing into `work_dir`; poll `should_cancel` while waiting."""


def write_job(job: BuildJob, work_dir: Path, data_path: str) -> tuple[Path, Path]:
    """Create `work_dir/job.json` and the empty `work_dir/out`; return both paths."""
    out = work_dir / "out"
    out.mkdir(parents=True, exist_ok=True)
    job_file = work_dir / "job.json"
    job_file.write_text(json.dumps(job.spec(data_path)))
    return job_file, out


def wait_until(
    done: Callable[[], bool],
    job: BuildJob,
    should_cancel: Callable[[], bool],
    stop: Callable[[], None],
) -> None:
    """Poll until `done()`; on cancel or timeout call `stop()` and raise."""
    started = last_cancel_check = time.monotonic()
    while not done():
        if time.monotonic() - last_cancel_check >= CANCEL_CHECK_SECONDS:
            last_cancel_check = time.monotonic()
            if should_cancel():
                stop()
                raise BuildCancelled("cancelled by a user")
        timeout = job.limits.timeout_s
        if timeout and time.monotonic() - started > timeout:
            stop()
            raise BuildFailed(f"timed out after {timeout:g}s")
        time.sleep(POLL_SECONDS)


def collect(
    out: Path, exit_code: int | None, log: BuildLog, provenance: dict[str, Any]
) -> BuildOutcome:
    """Read the worker's result, or raise its error (BadInput for bad data)."""
    error_file = out / ERROR_NAME
    if error_file.is_file():
        error = json.loads(error_file.read_text())
        cls = BadInput if error.get("exit_code") == 2 else BuildFailed
        raise cls(error["error"])
    result_file, artifact = out / RESULT_NAME, out / ARTIFACT_NAME
    if exit_code != 0 or not result_file.is_file() or not artifact.is_file():
        raise BuildFailed(f"the worker exited with code {exit_code} without a result")
    return BuildOutcome(json.loads(result_file.read_text()), artifact, provenance)
