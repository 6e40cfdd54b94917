"""The local builder: the worker in a fresh Python subprocess of this environment.

The job and the worker's output live in the build's private work folder (mode 0700), so no
other local account can read the job or replace what the worker wrote.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from core.builders.base import (
    WORKER_ENV,
    Builder,
    BuildJob,
    BuildLog,
    BuildOutcome,
    collect,
    read_outputs,
    wait_until,
    write_job,
)
from core.config import PROJECT_ROOT
from core.worker import WAIT_FOR_JOB


def worker_env() -> dict[str, str]:
    """Environment for a worker: deterministic hashing, project importable."""
    env = {**os.environ, **WORKER_ENV, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    return env


def start_worker(*args: str, stdin: int | None = subprocess.DEVNULL) -> subprocess.Popen:
    """`python -m core.worker ARGS` in its own session, its output piped to the builder."""
    return subprocess.Popen(
        [sys.executable, "-m", "core.worker", *args],
        cwd=PROJECT_ROOT,
        env=worker_env(),
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )


class SpareWorker:
    """A worker started before its job is known: it imports the ML stack (about 1.5 s)
    while this process checks and hashes the dataset, then takes the job on stdin."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = start_worker(WAIT_FOR_JOB, stdin=subprocess.PIPE)

    def hand_over(self, job_file: Path, out: Path) -> subprocess.Popen | None:
        """Give it the job; None when it is gone (the builder then starts a new worker)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return None
        try:
            process.stdin.write(json.dumps([str(job_file), str(out)]) + "\n")
            process.stdin.close()
        except OSError:
            _kill(process)
            return None
        return process

    def discard(self) -> None:
        """Stop it when it was not needed (an identical version was reused, or the request
        was refused): it holds nothing yet, so it is killed rather than waited for."""
        process, self.process = self.process, None
        if process is not None:
            _kill(process)


def _kill(process: subprocess.Popen) -> None:
    """SIGKILL a worker's process group, reap it and close our ends of its pipes."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    for pipe in (process.stdin, process.stdout):
        with contextlib.suppress(OSError):
            pipe.close()


class LocalBuilder(Builder):
    """Runs `python -m core.worker` in a new process group; kills the group to stop it.
    With a `spare`, the job goes to that already started worker."""

    name = "local"

    def __init__(self, spare: SpareWorker | None = None) -> None:
        self.spare = spare

    def run(
        self, job: BuildJob, work_dir: Path, log: BuildLog, should_cancel: Callable[[], bool]
    ) -> BuildOutcome:
        job_file, out = write_job(job, work_dir)
        if job.recipe_requirements:
            log(
                "the local builder uses this environment as it is: install the recipe's "
                f"requirements ({', '.join(job.recipe_requirements)}) into it yourself"
            )
        process = self.spare.hand_over(job_file, out) if self.spare else None
        process = process or start_worker(str(job_file), str(out))
        reader = threading.Thread(
            target=lambda: [log(line) for line in process.stdout], daemon=True
        )
        reader.start()

        def stop() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

        try:
            wait_until(
                lambda: process.poll() is not None, job.limits.timeout_s, should_cancel, stop
            )
        finally:
            if process.poll() is None:
                stop()
            reader.join(timeout=5)
            process.stdout.close()
        if process.returncode < 0:
            log(f"worker killed by signal {-process.returncode}")
        return collect(
            read_outputs(out), process.returncode, {"worker_exit_code": process.returncode}
        )
