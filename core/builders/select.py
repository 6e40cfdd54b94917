"""Choose a builder: `auto` picks Docker when an engine answers a ping, else local; `swarm`
is only ever chosen by name."""

from __future__ import annotations

from core.builders.base import Builder
from core.errors import BadInput

BACKENDS = ("auto", "docker", "local", "swarm")


def docker_available() -> tuple[bool, str]:
    """Whether a Docker Engine answers a ping, and a one-line reason."""
    from core.builders.docker import engine_status

    return engine_status()


def resolve_backend(backend: str) -> tuple[str, str]:
    """The concrete builder name for `backend` and why it was picked."""
    if backend not in BACKENDS:
        raise BadInput(f"unknown backend '{backend}'; choose from {', '.join(BACKENDS)}")
    if backend == "local":
        return "local", "local builder requested"
    if backend == "swarm":
        from core.builders.swarm import image_registry, swarm_status

        image_registry()  # set and well-formed, or a clear error
        ok, reason = swarm_status()
        if not ok:
            raise BadInput(f"swarm backend requested but {reason}")
        return "swarm", reason
    ok, reason = docker_available()
    if backend == "docker":
        if not ok:
            raise BadInput(f"docker backend requested but {reason}")
        return "docker", reason
    return (
        ("docker", f"auto: {reason}")
        if ok
        else ("local", f"auto: {reason}; using the local builder")
    )


def get_builder(name: str) -> Builder:
    if name == "local":
        from core.builders.local import LocalBuilder

        return LocalBuilder()
    if name == "docker":
        from core.builders.docker import DockerBuilder

        return DockerBuilder()
    if name == "swarm":
        from core.builders.swarm import SwarmBuilder

        return SwarmBuilder()
    raise BadInput(f"unknown builder '{name}'")
