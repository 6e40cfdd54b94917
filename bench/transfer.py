"""Archive API vs bind mounts (`bench/build_bench.py --sweep` also runs this): how the job,
the dataset and the results reach and leave the trainer container.

The Docker builder moves them with `put_archive` / `get_archive` so that any engine works
(issue 13). The builder it replaced bind-mounted host folders. That builder is gone from
`core/`; `BindMountBuilder` below re-creates its transfer for this comparison only (same
image, same limits, same worker, same result checks). Warm, interleaved pairs of whole
`submit` + `execute` builds of the same request, in the same run.
"""

from __future__ import annotations

import shutil
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.builders.base import (
    BuildJob,
    BuildLog,
    BuildOutcome,
    collect,
    job_json,
    read_outputs,
    wait_until,
)
from core.builders.docker import (
    WORK,
    DockerBuilder,
    docker_client,
    version_labels,
    worker_environment,
)
from core.workfiles import DATA_NAME, JOB_NAME, OUT_DIR, TRAINER_UID


class BindMountBuilder(DockerBuilder):
    """The pre-issue-13 transfer: job, dataset and output folder bind-mounted from here."""

    name = "docker"

    def _run(
        self, job: BuildJob, work_dir: Path, log: BuildLog, should_cancel: Callable[[], bool]
    ) -> BuildOutcome:
        client = docker_client()
        image, _, _ = self.ensure_image(log, should_cancel, job.image_id)
        shared = work_dir / "mounted"  # readable by the trainer user, as the old builder's
        (shared / OUT_DIR).mkdir(parents=True)
        shutil.chown(shared / OUT_DIR, TRAINER_UID, TRAINER_UID)
        (shared / JOB_NAME).write_bytes(job_json(job, f"{WORK}/{DATA_NAME}"))
        shutil.copyfile(job.data_file, shared / DATA_NAME)
        for path in (shared, shared / JOB_NAME, shared / DATA_NAME):
            path.chmod(0o755 if path.is_dir() else 0o644)
        container = client.containers.create(
            image.id,
            command=[f"{WORK}/{JOB_NAME}", f"{WORK}/{OUT_DIR}"],
            network_mode="none",
            labels=version_labels(job),
            mem_limit=job.limits.memory or None,
            environment=worker_environment(),
            volumes={
                str(shared / JOB_NAME): {"bind": f"{WORK}/{JOB_NAME}", "mode": "ro"},
                str(shared / DATA_NAME): {"bind": f"{WORK}/{DATA_NAME}", "mode": "ro"},
                str(shared / OUT_DIR): {"bind": f"{WORK}/{OUT_DIR}", "mode": "rw"},
            },
        )
        try:
            log.stage("training")
            container.start()
            wait_until(
                lambda: self._exited(container), job, should_cancel, lambda: self._stop(container)
            )
            exit_code = container.attrs["State"].get("ExitCode")
            files = read_outputs(shared / OUT_DIR)
        finally:
            self._remove(container)
        return collect(files, exit_code, {"transfer": "bind mount"})


def measure(data: Path, registry: Any, runs: int, end_to_end: Callable, say: Any) -> dict:
    """`runs` interleaved pairs (archive first, then bind mount), after one warm-up each."""
    builders = {"archive": DockerBuilder(), "bind mount": BindMountBuilder()}
    for builder in builders.values():
        end_to_end(data, "docker", registry, builder)
    seconds: dict[str, list[float]] = {name: [] for name in builders}
    for run in range(runs):
        for name, builder in builders.items():
            seconds[name].append(end_to_end(data, "docker", registry, builder)[0])
        say(f"  transfer pair {run + 1}/{runs}: " + ", ".join(
            f"{name} {values[-1]:.2f}s" for name, values in seconds.items()
        ))  # fmt: skip
    return seconds


def report(seconds: dict[str, list[float]]) -> str:
    archive, mounted = seconds["archive"], seconds["bind mount"]
    differences = [a - b for a, b in zip(archive, mounted, strict=True)]
    return (
        f"**Archive API vs bind mounts** (the same warm `docker` build, {len(archive)} "
        "interleaved pairs; `bench/transfer.py` re-creates the old bind-mount transfer for "
        "this comparison only): archive "
        f"{statistics.median(archive):.2f} s ({min(archive):.2f}–{max(archive):.2f}), bind "
        f"mount {statistics.median(mounted):.2f} s ({min(mounted):.2f}–{max(mounted):.2f}); "
        f"paired difference archive − bind mount: median {statistics.median(differences):+.2f} s "
        f"({min(differences):+.2f} to {max(differences):+.2f}).\n"
    )
