"""Compact binary forms of a version's per-request results (ids, labels, probabilities).

A cross-validated version keeps one prediction for every labelled request (3,245 on the
shared data); as JSON that was ~85 KB per version. Probabilities are stored as raw IEEE
doubles (exact: a rebuilt version's digest must match), labels as one byte each, request ids
as zlib-compressed JSON. Standard library only: `show` and the pages stay light.
"""

from __future__ import annotations

import json
import math
import sys
import zlib
from array import array
from typing import Any

from core.errors import DamagedRecord

FLOATS, LABELS, STRINGS = b"F1", b"L1", b"S1"  # format tags: a future format gets a new one
MAX_ROWS = 1_000_000  # above the dataset limit (500,000 records)
MAX_IDS_BYTES = 256 << 20  # ids of MAX_ROWS requests of at most 200 characters, as JSON


def _tagged(tag: bytes, blob: bytes | None) -> bytes:
    if blob is None or blob[:2] != tag:
        raise DamagedRecord(f"not a packed {tag.decode()} value (wrong tag)")
    return blob[2:]


def pack_floats(values: Any) -> bytes:
    """Little-endian float64s."""
    packed = array("d", [float(v) for v in values])
    if sys.byteorder != "little":
        packed.byteswap()
    return FLOATS + packed.tobytes()


def unpack_floats(blob: bytes) -> list[float]:
    """Probabilities: whole float64s, at most MAX_ROWS, each finite and in [0, 1]."""
    payload = _tagged(FLOATS, blob)
    if len(payload) % 8 or len(payload) > 8 * MAX_ROWS:
        raise DamagedRecord(f"packed probabilities of {len(payload)} bytes (not whole doubles)")
    packed = array("d")
    packed.frombytes(payload)
    if sys.byteorder != "little":
        packed.byteswap()
    values = packed.tolist()
    if not all(0.0 <= v <= 1.0 for v in values):  # NaN fails both comparisons
        bad = next(v for v in values if not 0.0 <= v <= 1.0)
        raise DamagedRecord(f"a packed probability is {bad!r}, not in [0, 1]")
    return values


def pack_labels(values: Any) -> bytes:
    """One byte per 0/1 label."""
    return LABELS + bytes(int(v) for v in values)


def unpack_labels(blob: bytes) -> list[int]:
    """Labels: at most MAX_ROWS bytes, each 0 or 1."""
    payload = _tagged(LABELS, blob)
    if len(payload) > MAX_ROWS or payload.strip(b"\x00\x01"):
        raise DamagedRecord("packed labels hold values other than 0 and 1")
    return list(payload)


def pack_strings(values: Any) -> bytes:
    """zlib-compressed JSON list of strings."""
    return STRINGS + zlib.compress(json.dumps([str(v) for v in values]).encode(), 6)


def unpack_strings(blob: bytes) -> list[str]:
    """Request ids: inflated to at most MAX_IDS_BYTES (never a zlib bomb), a JSON list of
    at most MAX_ROWS non-empty strings."""
    inflate = zlib.decompressobj()
    try:
        data = inflate.decompress(_tagged(STRINGS, blob), MAX_IDS_BYTES)
        if inflate.unconsumed_tail:
            raise DamagedRecord(f"packed request ids inflate beyond {MAX_IDS_BYTES >> 20} MB")
        if not inflate.eof or inflate.unused_data:
            raise DamagedRecord("packed request ids are truncated or carry stray bytes")
        values = json.loads(data)
    except (zlib.error, ValueError, RecursionError) as exc:
        raise DamagedRecord(f"packed request ids do not decode ({type(exc).__name__})") from None
    if not isinstance(values, list) or len(values) > MAX_ROWS:
        raise DamagedRecord("packed request ids are not a list of ids")
    if not all(isinstance(v, str) and v for v in values):
        raise DamagedRecord("packed request ids are not all non-empty strings")
    return values


CURVE_AXES = {"roc": ("fpr", "tpr"), "pr": ("recall", "precision")}


def _curve_ok(points: Any, axes: tuple[str, str]) -> bool:
    if not isinstance(points, dict) or set(points) != set(axes):
        return False
    series = [points[axis] for axis in axes]
    if not all(isinstance(s, list) and 0 < len(s) <= 10_000 for s in series):
        return False
    if len(series[0]) != len(series[1]):
        return False
    numbers = [v for s in series for v in s]
    return all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= 1
        for v in numbers
    )


def check_details(
    ids: list[str], labels: list[int], probabilities: list[float], curves: Any
) -> None:
    """DamagedRecord unless the unpacked columns line up and the curves are well formed."""
    if not len(ids) == len(labels) == len(probabilities) or not ids:
        raise DamagedRecord(
            f"{len(ids)} ids, {len(labels)} labels and {len(probabilities)} probabilities"
        )
    if not isinstance(curves, dict) or not all(  # a curve may be absent, never malformed
        _curve_ok(curves[kind], axes) for kind, axes in CURVE_AXES.items() if kind in curves
    ):
        raise DamagedRecord("the stored ROC and precision-recall curves are malformed")
