"""Turn validated requests into the model-input frame, and the transformers recipes share."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy and pandas are imported by the functions that use them, so the
    import numpy as np  # constants here (read by recipes and the CLI) cost no import
    import pandas as pd

from core.dataset import REQUEST_ID, REQUEST_TIME_NUMERIC, TEXT, TIMESTAMP, TITLE

TEXT_COLUMN = "text"
TEXT_LENGTH = "text_length"
REQUEST_HOUR = "request_hour_utc"
REQUEST_WEEKDAY = "request_weekday_utc"
REQUEST_DAY = "request_day_of_month_utc"
# Time as it means the same for a request typed today as in the training data: positions on
# the daily, weekly and monthly cycles (never the raw timestamp, which a linear model would
# extrapolate years past the data).
CYCLES = {REQUEST_HOUR: 24, REQUEST_WEEKDAY: 7, REQUEST_DAY: 31}
# Columns derived from the text and the request time, beside the requester counts.
DERIVED_NUMERIC = (TEXT_LENGTH, *CYCLES)
# How each model input is called where people read it (explanations, forms).
CAPTIONS = {
    "requester_account_age_in_days_at_request": "Account age (days)",
    "requester_number_of_comments_at_request": "Comments",
    "requester_number_of_posts_at_request": "Posts",
    "requester_number_of_posts_on_raop_at_request": "Posts on RAOP",
    "requester_number_of_comments_in_raop_at_request": "Comments on RAOP",
    "requester_number_of_subreddits_at_request": "Subreddits",
    "requester_upvotes_minus_downvotes_at_request": "Karma (up − down)",
    "requester_upvotes_plus_downvotes_at_request": "Votes (up + down)",
    "requester_days_since_first_post_on_raop_at_request": "Days since first RAOP post",
    TEXT_LENGTH: "Text length",
}
# Input ranges of these columns are not reported: cycles have no outside.
NOT_RANGED = frozenset({TEXT_COLUMN, REQUEST_ID, TIMESTAMP, *CYCLES})


def request_text(record: dict[str, Any]) -> str:
    """Title and body joined: the text every recipe reads."""
    return f"{record.get(TITLE, '')}\n{record.get(TEXT, '')}"


def to_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Model-input frame: one row per request; missing request-time numbers get defaults
    (see `request_defaults`)."""
    import pandas as pd

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
        moment = time.gmtime(row[TIMESTAMP])
        row[REQUEST_HOUR] = float(moment.tm_hour)
        row[REQUEST_WEEKDAY] = float(moment.tm_wday)
        row[REQUEST_DAY] = float(moment.tm_mday - 1)
        rows.append(row)
    return pd.DataFrame(rows)


def signed_log1p(values: Any) -> np.ndarray:
    """sign(x) * log(1 + |x|): tames heavy-tailed counts that can be negative (karma)."""
    import numpy as np

    array = np.asarray(values, dtype=float)
    return np.sign(array) * np.log1p(np.abs(array))


def cyclic_encode(values: Any) -> np.ndarray:
    """Each cycle column (in `CYCLES` order) as its sine and cosine: bounded, periodic."""
    import numpy as np

    array = np.asarray(values, dtype=float)
    angle = 2 * np.pi * array / np.array(list(CYCLES.values()), dtype=float)
    return np.column_stack(
        [f(angle[:, i]) for i in range(array.shape[1]) for f in (np.sin, np.cos)]
    )


def cyclic_names(_transformer: Any, names: Any) -> np.ndarray:
    """Output names of `cyclic_encode`."""
    import numpy as np

    return np.array([f"{name}_{f}" for name in names for f in ("sin", "cos")], dtype=object)


def read_columns(pipeline: Any) -> list[str]:
    """Input columns a fitted pipeline's ColumnTransformer reads (none known for a
    team recipe's estimator that is not a Pipeline)."""
    steps = getattr(pipeline, "steps", None)
    if not steps:
        return []
    features = steps[0][1]
    columns: list[str] = []
    for name, transformer, selected in getattr(features, "transformers_", []):
        if name == "remainder" or transformer == "drop":
            continue
        if isinstance(selected, str):
            selected = [selected]
        if isinstance(selected, (list, tuple)):
            columns += [c for c in selected if isinstance(c, str)]
    return list(dict.fromkeys(columns))


def ranged_columns(pipeline: Any) -> list[str]:
    """Numeric input columns whose training range matters for a new request."""
    return [c for c in read_columns(pipeline) if c not in NOT_RANGED]


def request_defaults(record: dict[str, Any], pipeline: Any = None) -> dict[str, str]:
    """The request-time fields `to_frame` fills in for this record, and with what; with a
    pipeline, only those it reads (the time counts when it reads a cycle)."""
    read = None
    if pipeline is not None:
        read = set(read_columns(pipeline))
        if read & set(CYCLES):
            read |= {TIMESTAMP, "unix_timestamp_of_request"}
    filled = {}
    for field in REQUEST_TIME_NUMERIC:
        if field not in record and (read is None or field in read):
            filled[field] = "now" if field.startswith("unix_timestamp") else "0"
    return filled


def input_ranges(pipeline: Any, frame: pd.DataFrame) -> dict[str, list[float]]:
    """Training min and max of each ranged input column."""
    return {
        column: [float(frame[column].min()), float(frame[column].max())]
        for column in ranged_columns(pipeline)
    }
