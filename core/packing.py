"""Compact binary forms of a version's per-request results (ids, labels, probabilities).

A cross-validated version keeps one prediction for every labelled request (3,245 on the
shared data); as JSON that was ~85 KB per version. Probabilities are stored as raw IEEE
doubles (exact: a rebuilt version's digest must match), labels as one byte each, request ids
as zlib-compressed JSON. Standard library only: `show` and the pages stay light.
"""

from __future__ import annotations

import json
import sys
import zlib
from array import array
from typing import Any

FLOATS, LABELS, STRINGS = b"F1", b"L1", b"S1"  # format tags: a future format gets a new one


def _tagged(tag: bytes, blob: bytes | None) -> bytes:
    if blob is None or blob[:2] != tag:
        raise ValueError(f"not a packed {tag.decode()} value")
    return blob[2:]


def pack_floats(values: Any) -> bytes:
    """Little-endian float64s."""
    packed = array("d", [float(v) for v in values])
    if sys.byteorder != "little":
        packed.byteswap()
    return FLOATS + packed.tobytes()


def unpack_floats(blob: bytes) -> list[float]:
    packed = array("d")
    packed.frombytes(_tagged(FLOATS, blob))
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tolist()


def pack_labels(values: Any) -> bytes:
    """One byte per 0/1 label."""
    return LABELS + bytes(int(v) for v in values)


def unpack_labels(blob: bytes) -> list[int]:
    return list(_tagged(LABELS, blob))


def pack_strings(values: Any) -> bytes:
    """zlib-compressed JSON list of strings."""
    return STRINGS + zlib.compress(json.dumps([str(v) for v in values]).encode(), 6)


def unpack_strings(blob: bytes) -> list[str]:
    return json.loads(zlib.decompress(_tagged(STRINGS, blob)))
