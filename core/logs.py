"""Build log files: read the end of one (the dashboard tails them while builds run)."""

from __future__ import annotations

from pathlib import Path

TAIL_CHARS = 4000


def read_tail(path: Path | str | None, chars: int = TAIL_CHARS) -> str:
    """The last `chars` characters of a log file ('' when there is none)."""
    if not path:
        return ""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - chars * 4))
            return handle.read().decode("utf-8", errors="replace")[-chars:]
    except OSError:
        return ""
