"""Turn validated requests into the model-input frame, and the transformers recipes share."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from core.dataset import REQUEST_ID, REQUEST_TIME_NUMERIC, TEXT, TIMESTAMP, TITLE

TEXT_COLUMN = "text"
TEXT_LENGTH = "text_length"
REQUEST_HOUR = "request_hour_utc"
# Columns derived from the text and the request time, beside the requester counts.
DERIVED_NUMERIC = (TEXT_LENGTH, REQUEST_HOUR)


def request_text(record: dict[str, Any]) -> str:
    """Title and body joined: the text every recipe reads."""
    return f"{record.get(TITLE, '')}\n{record.get(TEXT, '')}"


def to_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Model-input frame: one row per request; missing request-time numbers get defaults."""
    now = time.time()
    rows = []
    for record in records:
        row: dict[str, Any] = {
            REQUEST_ID: record.get(REQUEST_ID, ""),
            TEXT_COLUMN: request_text(record),
        }
        for field in REQUEST_TIME_NUMERIC:
            default = now if field.startswith("unix_timestamp") else 0.0
            row[field] = float(record.get(field, default))
        row[TEXT_LENGTH] = float(len(record.get(TEXT, "")))
        row[REQUEST_HOUR] = float(time.gmtime(row[TIMESTAMP]).tm_hour)
        rows.append(row)
    return pd.DataFrame(rows)


def signed_log1p(values: Any) -> np.ndarray:
    """sign(x) * log(1 + |x|): tames heavy-tailed counts that can be negative (karma)."""
    array = np.asarray(values, dtype=float)
    return np.sign(array) * np.log1p(np.abs(array))
