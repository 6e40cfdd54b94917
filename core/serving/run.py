"""Start the service with uvicorn: `python -m core serve --host --port --workers`."""

from __future__ import annotations

import ipaddress
import os
import shutil
import tempfile

from core.builders.base import WORKER_ENV
from core.errors import BadInput

LOOPBACK_NAMES = {"localhost", "ip6-localhost"}
# Each worker scores on one thread; BLAS/OpenMP pools of their own (one thread per CPU in
# every worker) only oversubscribe the CPUs. Set before numpy loads; the environment wins.
ONE_THREAD_ENV = {k: v for k, v in WORKER_ENV.items() if k.endswith("_NUM_THREADS")}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_binding(host: str) -> None:
    """Beyond loopback, a bearer token is required (SERVE_TOKEN)."""
    if not is_loopback(host) and not os.environ.get("SERVE_TOKEN"):
        raise BadInput(
            f"serving on {host} reaches beyond this machine: set SERVE_TOKEN (clients send "
            "Authorization: Bearer $SERVE_TOKEN), or bind to 127.0.0.1"
        )


def serve(host: str, port: int, workers: int, log_level: str = "warning") -> None:
    """Run until interrupted. With several workers, Prometheus metrics are shared through
    a multiprocess folder made here (and removed at the end) unless one is given. BLAS and
    OpenMP get one thread per worker (`ONE_THREAD_ENV`) unless the environment says
    otherwise; uvicorn uses uvloop and httptools (requirements-serve.txt)."""
    check_binding(host)
    for name, value in ONE_THREAD_ENV.items():
        os.environ.setdefault(name, value)
    made = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        made = tempfile.mkdtemp(prefix="altruism-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = made
    import uvicorn

    try:
        uvicorn.run(
            "core.serving.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            access_log=False,
            log_level=log_level,
            timeout_graceful_shutdown=10,
        )
    finally:
        if made:
            shutil.rmtree(made, ignore_errors=True)
