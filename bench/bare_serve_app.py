"""The bare baseline of bench/serve_bench.py: a FastAPI app that unpickles one pipeline
(no registry, no hash check) and calls `predict_proba` on the model-input frame.

    BARE_ARTIFACT=path/to/model.joblib uvicorn bench.bare_serve_app:create_app --factory
"""

from __future__ import annotations

import os
from typing import Any

import joblib
from fastapi import FastAPI

from core.features import to_frame


def _record(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "request_id": "bare",
        "request_title": item.get("title", ""),
        "request_text_edit_aware": item.get("text", ""),
    }


def create_app() -> FastAPI:
    pipeline = joblib.load(os.environ["BARE_ARTIFACT"])
    app = FastAPI()

    @app.post("/predict")
    async def predict(body: dict[str, Any]) -> dict[str, Any]:
        items = body.get("requests") or [body]
        frame = to_frame([_record(item) for item in items])
        return {"probabilities": pipeline.predict_proba(frame)[:, 1].tolist()}

    return app
