"""The local builder: the worker in a fresh Python subprocess of this environment.

The job and the worker's output live in the build's private work folder (mode 0700), so no
other local account can read the job or replace what the worker wrote.
"""

from __future__ import annotations

import contextlib
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


def worker_env() -> dict[str, str]:
    """Environment for a worker: deterministic hashing, project importable."""
    env = {**os.environ, **WORKER_ENV, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    return env


class LocalBuilder(Builder):
    """Runs `python -m core.worker` in a new process group; kills the group to stop it."""

    name = "local"

    def run(
        self, job: BuildJob, work_dir: Path, log: BuildLog, should_cancel: Callable[[], bool]
    ) -> BuildOutcome:
        job_file, out = write_job(job, work_dir)
        process = subprocess.Popen(
            [sys.executable, "-m", "core.worker", str(job_file), str(out)],
            cwd=PROJECT_ROOT,
            env=worker_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        reader = threading.Thread(
            target=lambda: [log(line) for line in process.stdout], daemon=True
        )
        reader.start()

        def stop() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

        try:
            wait_until(lambda: process.poll() is not None, job, should_cancel, stop)
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
