"""The builder interface and what every builder shares: the job, logs, result collection.

A builder gets a job (what to train, the canonical dataset as a local file, limits) and a
private work folder; it runs `core.worker` somewhere and returns the worker's result and
the artifact's bytes, which must hash to the sha256 the worker reported.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import BadInput, BuildCancelled, BuildFailed
from core.workfiles import ARTIFACT_NAME, ERROR_NAME, JOB_NAME, OUT_DIR, RESULT_NAME

POLL_SECONDS = 0.05  # how often a builder checks whether the worker finished
CANCEL_CHECK_SECONDS = 0.5  # how often it asks the registry whether to cancel
LOG_FLUSH_SECONDS = 0.5  # how often buffered log lines reach the registry
MAX_RESULT_BYTES = 256 << 20  # result.json (metrics, test predictions)
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
    data_file: Path  # the canonical dataset (verified by the worker against data_sha256)
    data_sha256: str
    seed: int
    test_size: float
    threshold_policy: str
    data_name: str = "dataset"
    limits: BuildLimits = field(default_factory=BuildLimits)
    fault: str | None = None
    image_id: str | None = None  # Docker: reuse exactly this image (reproduce)
    registry_id: str = ""  # which registry the version lives in (labels its container)
    version_label: str = ""  # e.g. "raop v3" (labels, service names)
    version_number: int | None = None  # the number people see (v3); version_id is internal
    cv: dict[str, int] | None = None  # {"folds": K, "repeats": R}: cross-validate instead
    recipe_file: dict[str, Any] | None = None  # a team recipe's recorded source (recipe_files)

    @property
    def recipe_requirements(self) -> list[str]:
        """A team recipe's extra pip requirements (part of the Docker image key)."""
        return list((self.recipe_file or {}).get("requirements") or [])

    def spec(self, data_file: str) -> dict[str, Any]:
        """The worker's job.json, with the dataset path as the worker will see it."""
        return {
            "recipe": self.recipe,
            "params": self.params,
            "data_file": data_file,
            "data_name": self.data_name,
            "data_sha256": self.data_sha256,
            "seed": self.seed,
            "test_size": self.test_size,
            "threshold_policy": self.threshold_policy,
            "fault": self.fault,
            "cpus": self.limits.cpus,
            **({"cv": self.cv} if self.cv else {}),
            **({"recipe_file": self.recipe_file} if self.recipe_file else {}),
        }


@dataclass
class BuildOutcome:
    """A finished worker's results, its verified artifact bytes and builder provenance."""

    result: dict[str, Any]
    artifact: bytes
    artifact_sha256: str
    provenance: dict[str, Any]


PROGRESS_LINE = re.compile(r"progress: (\d{1,6})/(\d{1,6}) fits$")


class BuildLog:
    """Build log lines: buffered, then appended to the registry (readable from every
    machine), echoed to an optional callback; stage changes are recorded on the version."""

    def __init__(
        self,
        append: Callable[[str], None] | None = None,
        echo: Callable[[str], None] | None = None,
        on_stage: Callable[[str], None] | None = None,
    ) -> None:
        self.append = append
        self.echo = echo
        self.on_stage = on_stage
        self.lines: list[str] = []  # everything logged, for the tail kept on the version
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        if append is not None:
            self._flusher = threading.Thread(target=self._flush_loop, daemon=True)
            self._flusher.start()

    def __call__(self, line: str) -> None:
        line = line.rstrip("\n")
        with self._lock:
            self.lines.append(line)
            self._pending.append(line)
        if self.echo:
            self.echo(line)
        progress = PROGRESS_LINE.search(line)
        if progress and self.on_stage:  # the worker's fits so far: the stage shows them
            with contextlib.suppress(Exception):  # a nicety: never fail a build over it
                self.on_stage(f"training · {progress.group(1)}/{progress.group(2)} fits")

    def stage(self, name: str) -> None:
        """Record that the build entered stage `name` (shown as the version's stage)."""
        self(f"== {name}")
        self.flush()
        if self.on_stage:
            self.on_stage(name)

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        if pending and self.append is not None:
            try:
                self.append("\n".join(pending) + "\n")
            except Exception:  # a log write must never fail the build; keep the lines
                with self._lock:
                    self._pending[:0] = pending

    def _flush_loop(self) -> None:
        while not self._stop.wait(LOG_FLUSH_SECONDS):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(timeout=5)
        self.flush()

    def tail(self, chars: int = 4000) -> str:
        with self._lock:
            text = "\n".join(self.lines[-400:])
        if len(text) <= chars:
            return text
        cut = text[-chars:]
        return cut[cut.find("\n") + 1 :] if "\n" in cut else cut


class Builder(ABC):
    """Runs `core.worker` for a job and returns its outcome or raises BuildFailed."""

    name: str

    @abstractmethod
    def run(
        self, job: BuildJob, work_dir: Path, log: BuildLog, should_cancel: Callable[[], bool]
    ) -> BuildOutcome:
        """Train `job`, using the private `work_dir`; poll `should_cancel` while waiting."""


def job_json(job: BuildJob, data_file: str) -> bytes:
    return json.dumps(job.spec(data_file)).encode()


def write_job(job: BuildJob, work_dir: Path) -> tuple[Path, Path]:
    """Create `work_dir/job.json` and the empty `work_dir/out` (both private, like
    `work_dir`); return both paths."""
    out = work_dir / OUT_DIR
    out.mkdir(mode=0o700)
    job_file = work_dir / JOB_NAME
    job_file.write_bytes(job_json(job, str(job.data_file)))
    return job_file, out


def wait_until(
    done: Callable[[], bool],
    timeout_s: float | None,
    should_cancel: Callable[[], bool],
    stop: Callable[[], None],
    elapsed_s: float = 0.0,
) -> None:
    """Poll until `done()`; on cancel, or once `timeout_s` have passed since the build
    started (`elapsed_s` ago), call `stop()` and raise."""
    last_cancel_check = time.monotonic()
    started = last_cancel_check - elapsed_s
    while not done():
        if time.monotonic() - last_cancel_check >= CANCEL_CHECK_SECONDS:
            last_cancel_check = time.monotonic()
            if should_cancel():
                stop()
                raise BuildCancelled("cancelled by a user")
        if timeout_s and time.monotonic() - started > timeout_s:
            stop()
            raise BuildFailed(f"timed out after {timeout_s:g}s")
        time.sleep(POLL_SECONDS)


def read_outputs(out: Path) -> dict[str, bytes]:
    """The worker's output files in a local folder (only the known names)."""
    files = {}
    for name in (ARTIFACT_NAME, RESULT_NAME, ERROR_NAME):
        path = out / name
        if path.is_file() and not path.is_symlink():
            files[name] = path.read_bytes()
    return files


def collect(
    files: dict[str, bytes], exit_code: int | None, provenance: dict[str, Any]
) -> BuildOutcome:
    """The worker's result, or its error raised (BadInput for bad data). The artifact must
    hash to the sha256 the worker reported: anything else was changed after it wrote it."""
    if ERROR_NAME in files:
        try:
            error = json.loads(files[ERROR_NAME])
            message, code = str(error["error"]), error.get("exit_code")
        except (ValueError, KeyError, TypeError):
            raise BuildFailed(
                f"the worker exited with code {exit_code} and an unreadable error"
            ) from None
        raise (BadInput if code == 2 else BuildFailed)(message)
    if exit_code != 0 or RESULT_NAME not in files or ARTIFACT_NAME not in files:
        raise BuildFailed(f"the worker exited with code {exit_code} without a result")
    try:
        result = json.loads(files[RESULT_NAME])
        reported = result["artifact_sha256"]
    except (ValueError, KeyError, TypeError):
        raise BuildFailed("the worker's result is unreadable") from None
    artifact = files[ARTIFACT_NAME]
    actual = hashlib.sha256(artifact).hexdigest()
    if actual != reported:
        raise BuildFailed(
            f"the artifact changed after the worker wrote it (sha256 {actual[:12]}, the worker "
            f"reported {str(reported)[:12]}); refusing to register it"
        )
    return BuildOutcome(result, artifact, actual, provenance)
