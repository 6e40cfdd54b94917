"""The explanation a result carries with `?explain=true`: the one the CLI and Try give
(`core.explain`), behind one function so the service does not depend on its internals."""

from __future__ import annotations

from typing import Any


def explain(pipeline: Any, record: dict[str, Any]) -> dict[str, Any]:
    """Log-odds contributions of every feature group (base + contributions = the logit of
    the probability), the unknown fields and the strongest words."""
    from core.explain import explain as explain_request

    return explain_request(pipeline, record)
