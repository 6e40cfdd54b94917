"""Builders run the worker somewhere (a local subprocess or a Docker container)."""

from core.builders.base import Builder, BuildJob, BuildLimits, BuildLog, BuildOutcome
from core.builders.select import get_builder, resolve_backend

__all__ = [
    "BuildJob",
    "BuildLimits",
    "BuildLog",
    "BuildOutcome",
    "Builder",
    "get_builder",
    "resolve_backend",
]
