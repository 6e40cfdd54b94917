"""The build worker: `python -m core.worker JOB_JSON OUT_DIR`.

The same entrypoint runs in a fresh local subprocess and inside the trainer container. It
reads a job description and the canonical dataset it names, checks the dataset's sha256,
trains, and writes `model.joblib` and `result.json` (with the artifact's sha256) or
`error.json` into OUT_DIR. It never touches the registry or the artifact store.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from core.errors import AltruismError
from core.workfiles import ARTIFACT_NAME, ERROR_NAME, RESULT_NAME


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def _inject_fault(job: dict[str, Any]) -> None:
    """Test hook: faults only when the job asks for one AND the environment allows it."""
    fault = job.get("fault")
    if not fault or os.environ.get("ALTRUISM_ALLOW_FAULTS") != "1":
        return
    if fault == "raise":
        raise RuntimeError("injected training fault")
    if fault.startswith("sleep:"):
        log(f"injected fault: sleeping {fault[6:]}s")
        time.sleep(float(fault[6:]))
    if fault.startswith("allocate:"):
        log(f"injected fault: allocating {fault[9:]} MB")
        hog = bytearray(int(fault[9:]) * 1024 * 1024)
        hog[::4096] = b"x" * len(hog[::4096])


def load_job_data(job: dict[str, Any]) -> Any:
    """The job's dataset, verified against the sha256 it was queued with."""
    from core.dataset import Dataset, read_canonical

    records = read_canonical(Path(job["data_file"]), job["data_sha256"])
    positives = sum(1 for r in records if r["requester_received_pizza"])
    return Dataset(
        job.get("data_name") or "dataset", len(records), positives, job["data_sha256"], records
    )


ARTIFACT_COMPRESSION = 1


def dump_artifact(pipeline: Any) -> bytes:
    """The pipeline as joblib bytes (compressed; identical for identical pipelines).

    zlib level 1, by measurement (bench/core_bench.py, tfidf-meta-logreg on the RAOP data):
    level 3 saves 3% of the size and costs 30% more dump and 60% more load time.
    """
    import joblib

    buffer = io.BytesIO()
    joblib.dump(pipeline, buffer, compress=ARTIFACT_COMPRESSION)
    return buffer.getvalue()


def fold_jobs(job: dict[str, Any]) -> int:
    """How many fits to run at once (cross-validation folds, and the folds that choose the
    threshold): the build's CPU limit, else the CPUs this process may use."""
    budget = job.get("cpus") or len(os.sched_getaffinity(0))
    return max(1, int(budget))


def _evaluate(job: dict[str, Any], dataset: Any) -> Any:
    """Cross-validate when the job asks for it, else fit and score one held-out split."""
    from core.train import cross_validate, fit_and_evaluate

    seed, policy = int(job["seed"]), str(job["threshold_policy"])
    if job.get("cv"):
        cv = job["cv"]
        return cross_validate(
            dataset,
            job["recipe"],
            job["params"],
            seed,
            cv["folds"],
            cv["repeats"],
            policy,
            jobs=fold_jobs(job),
            log=log,
        )
    test_size = float(job["test_size"])
    return fit_and_evaluate(
        dataset, job["recipe"], job["params"], seed, test_size, policy, log=log, jobs=fold_jobs(job)
    )


def run_job(job: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Train as `job` says; write the artifact and the result summary to `out_dir`."""
    log(f"worker pid {os.getpid()}: recipe {job['recipe']}, data {job['data_sha256'][:12]}")
    if job.get("recipe_file"):  # a team recipe: its recorded source, not any file here
        from core.recipe_files import pin

        log(f"team recipe source sha256 {pin(job['recipe_file']).sha256[:12]}")
    dataset = load_job_data(job)
    log(
        f"loaded {dataset.rows} requests ({dataset.positives} received a pizza), "
        f"sha256 {dataset.sha256[:12]} verified"
    )
    _inject_fault(job)
    result = _evaluate(job, dataset)
    started = time.perf_counter()
    artifact = dump_artifact(result.pipeline)
    sha256 = hashlib.sha256(artifact).hexdigest()
    tmp = out_dir / f".{ARTIFACT_NAME}.tmp"
    tmp.write_bytes(artifact)
    os.replace(tmp, out_dir / ARTIFACT_NAME)
    summary = result.summary() | {
        "data": dataset.summary(),
        "dump_seconds": time.perf_counter() - started,
        "artifact_sha256": sha256,
        "artifact_size": len(artifact),
    }
    (out_dir / RESULT_NAME).write_text(json.dumps(summary))
    log(f"wrote {ARTIFACT_NAME} ({len(artifact):,} bytes, sha256 {sha256[:12]})")
    return summary


def _exit_with_parent(poll_s: float = 1.0) -> None:
    """Stop training when the builder that started us dies (e.g. SIGKILL): the local worker
    runs in its own session, so nothing else would stop it or collect its results. As the
    leader of its process group (the local builder starts it so) it takes the group with
    it: the fold processes it forked for cross-validation would otherwise go on training."""
    parent = os.getppid()
    if parent <= 1:  # PID 1 of a container (the engine stops it), or already orphaned
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        if os.getpgrp() == os.getpid():
            os.killpg(os.getpid(), signal.SIGKILL)
        os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _blame(exc: Exception) -> str:
    """`Type: message`, led by the team recipe file and line it came from, if any."""
    if not any(name.startswith("altruism_recipe_") for name in sys.modules):
        return f"{type(exc).__name__}: {exc}"
    from core.recipe_files import blame

    return blame(exc)


WAIT_FOR_JOB = "--wait-for-job"


def preload() -> None:
    """Import everything training needs (every recipe's sklearn modules included)."""
    import joblib  # noqa: F401

    from core.recipes import RECIPES
    from core.train import cross_validate  # noqa: F401

    for recipe in RECIPES.values():
        recipe.pipeline(recipe.resolve({}))


def job_from_stdin() -> list[str]:
    """A worker started before its job (`--wait-for-job`) imports first, then reads one JSON
    line ["JOB_JSON", "OUT_DIR"]; end of input means it is not needed: []."""
    preload()
    line = sys.stdin.readline()
    return [str(part) for part in json.loads(line)] if line.strip() else []


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    _exit_with_parent()
    if args == [WAIT_FOR_JOB]:
        args = job_from_stdin()
        if not args:
            return 0
    if len(args) != 2:
        print(f"usage: python -m core.worker JOB_JSON OUT_DIR | {WAIT_FOR_JOB}", file=sys.stderr)
        return 2
    out_dir = Path(args[1])
    try:
        job = json.loads(Path(args[0]).read_text())
        run_job(job, out_dir)
        return 0
    except AltruismError as exc:
        code, message = exc.exit_code, str(exc)
    except MemoryError:
        code, message = 1, "training ran out of memory"
    except Exception as exc:  # report any training error to the builder, cleanly
        traceback.print_exc(file=sys.stdout)
        code, message = 1, f"training failed: {_blame(exc)}"
    log(f"error: {message}")
    (out_dir / ERROR_NAME).write_text(json.dumps({"error": message, "exit_code": code}))
    return code


if __name__ == "__main__":
    exit_code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)  # skip interpreter teardown (~0.4 s of freeing sklearn/pandas objects)
