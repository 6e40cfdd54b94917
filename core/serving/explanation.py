"""The explanation a result carries with `?explain=true`: one function, so that a shared
explanation module can replace it without touching the service."""

from __future__ import annotations

from typing import Any

from core import predict


def explain(pipeline: Any, record: dict[str, Any]) -> dict[str, Any]:
    """Log-odds by feature group (exact for linear recipes) and the strongest words."""
    return {**predict.explain_groups(pipeline, record), "words": predict.explain(pipeline, record)}
