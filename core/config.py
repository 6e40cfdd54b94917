"""Settings from environment variables, with embedded defaults that work on a fresh clone."""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA = PROJECT_ROOT / "data" / "sample.json"
DEFAULT_MODEL = "raop"


def _path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


SCHEME_LIKE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")


def _location(name: str, default: Path) -> str:
    """A local folder (made absolute) or a URL such as s3://bucket/prefix, kept as given
    (so is anything that starts like a URL, `s3:bucket`, for the store to refuse)."""
    value = os.environ.get(name)
    if not value:
        return str(default)
    if value.lower().startswith("file://"):
        try:
            return file_url_path(value)
        except ValueError:
            return value  # for the store to refuse, naming what is wrong
    if "://" in value or SCHEME_LIKE.match(value):
        return value
    return str(Path(value).expanduser().resolve())


def file_url_path(url: str) -> str:
    """The absolute local folder of `file:///path` or `file://localhost/path` (percent-
    decoded); ValueError for a file URL that names another host or no absolute path."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"names a host ({parts.netloc!r}); write file:///absolute/path")
    path = unquote(parts.path)
    if not path.startswith("/") or parts.query or parts.fragment:
        raise ValueError("needs an absolute path: file:///absolute/path")
    return str(Path(path).resolve())


def _float(name: str, default: float | None) -> float | None:
    value = os.environ.get(name)
    return float(value) if value else default


def _int(name: str, default: int, low: int, high: int) -> int:
    """An integer setting, clamped to [low, high]; the default when unset or not a number."""
    try:
        value = int(os.environ.get(name, "").strip() or default)
    except ValueError:
        return default
    return min(high, max(low, value))


def _pairs(name: str) -> dict[str, str]:
    """`a=x,b=y` -> {"a": "x", "b": "y"} (entries without '=' are ignored)."""
    pairs = (item.split("=", 1) for item in os.environ.get(name, "").split(",") if "=" in item)
    return {key.strip(): value.strip() for key, value in pairs}


@dataclass(frozen=True)
class Settings:
    """Resolved settings; read with `settings()` so tests can change the environment."""

    registry_url: str
    artifact_root: str  # a local folder or an fsspec URL (s3://bucket/prefix)
    log_root: Path
    work_root: Path
    data_dir: Path
    build_network: str | None
    build_timeout_s: float | None
    build_memory: str | None
    build_cpus: float | None
    upload_limit_mb: float
    registry_retry_s: float  # how long a running build waits out an unreachable registry
    docker_base_image: str
    swarm_image_registry: str | None = None  # host[:port] every swarm node can pull from
    swarm_network: str = "altruism-lab-jobs"  # internal overlay network of build tasks
    swarm_node_hosts: dict[str, str] = field(default_factory=dict)  # node -> DOCKER_HOST
    # node -> a folder with ca.pem, cert.pem, key.pem (as DOCKER_CERT_PATH): TLS to its engine
    swarm_node_certs: dict[str, str] = field(default_factory=dict)
    swarm_retries: int = 1  # a build whose swarm node goes down is retried elsewhere this often
    uploads_total_mb: float = 100.0  # uploads the dashboard server holds at once, in all
    script_runs: int = 2  # page runs the dashboard server executes at once
    build_nice: int = 10  # niceness of builds the dashboard (or a sweep) starts locally
    build_lease_s: float = 60.0  # a running build whose launcher stops renewing ends after it


def settings() -> Settings:
    """Read the settings from the environment now."""
    return Settings(
        registry_url=os.environ.get("REGISTRY_URL", f"sqlite:///{PROJECT_ROOT / 'registry.db'}"),
        artifact_root=_location("ARTIFACT_ROOT", PROJECT_ROOT / "artifacts"),
        log_root=_path("LOG_ROOT", PROJECT_ROOT / "logs"),
        work_root=_path("WORK_ROOT", Path(tempfile.gettempdir())),
        data_dir=_path("DATA_DIR", PROJECT_ROOT / "data"),
        build_network=os.environ.get("BUILD_NETWORK") or None,
        build_timeout_s=_float("BUILD_TIMEOUT_S", 3600.0),
        build_memory=os.environ.get("BUILD_MEMORY") or "4g",
        build_cpus=_float("BUILD_CPUS", None),
        upload_limit_mb=_float("UPLOAD_LIMIT_MB", 50.0) or 50.0,
        registry_retry_s=max(0.0, _float("REGISTRY_RETRY_S", 60.0) or 0.0),
        docker_base_image=os.environ.get("BASE_IMAGE", "python:3.11-slim"),
        swarm_image_registry=os.environ.get("SWARM_IMAGE_REGISTRY", "").strip() or None,
        swarm_network=os.environ.get("SWARM_NETWORK", "").strip() or "altruism-lab-jobs",
        swarm_node_hosts=_pairs("SWARM_NODE_HOSTS"),
        swarm_node_certs=_pairs("SWARM_NODE_CERTS"),
        swarm_retries=_int("SWARM_RETRIES", 1, 0, 5),
        uploads_total_mb=_float("UPLOADS_TOTAL_MB", 100.0) or 100.0,
        script_runs=_int("SCRIPT_RUNS", 2, 1, 64),
        build_nice=_int("BUILD_NICE", 10, 0, 19),
        build_lease_s=max(1.0, _float("BUILD_LEASE_S", 60.0) or 60.0),
    )
