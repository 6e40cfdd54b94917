"""Helpers the benchmark scripts share: machine facts, quantiles, Markdown, the doc file."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
DOC_INTRO = (
    "# Benchmarks\n\n"
    "Measured by the scripts in `bench/`; each section is rewritten by its own script. Ratios "
    "compare against a baseline measured in the same run, on the same machine.\n"
)


def installed_env(env: dict[str, str]) -> dict[str, str]:
    """`env` as an installed tool runs: bytecode cached after the first run (in a folder of
    its own under the temp dir, never the checkout), even when the shell sets
    PYTHONDONTWRITEBYTECODE (this machine does: every run would compile `core` again)."""
    cache = Path(tempfile.gettempdir()) / "altruism-bench-pycache"
    kept = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return kept | {"PYTHONPYCACHEPREFIX": str(cache)}


def quantile(values: list[float], q: float) -> float:
    """Inclusive quantile (q in [0, 1]) by linear interpolation."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def read_text(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine() -> dict[str, Any]:
    """CPU, cores, memory, Python and the time of the run."""
    cpu = re.search(r"^model name\s*:\s*(.+)$", read_text("/proc/cpuinfo"), re.M)
    mem = re.search(r"^MemTotal:\s*(\d+) kB", read_text("/proc/meminfo"), re.M)
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "memory_gib": int(mem.group(1)) / 1024**2 if mem else None,
        "cpu": cpu.group(1).strip() if cpu else platform.processor() or "unknown",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def write_section(heading: str, section: str, doc: Path = DOC) -> None:
    """Replace (or append) the `heading` section of the doc; other sections stay as they are."""
    doc.parent.mkdir(parents=True, exist_ok=True)
    text = doc.read_text() if doc.is_file() else DOC_INTRO
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    body = section.rstrip("\n") + "\n"
    if start is None:
        new = text.rstrip("\n") + "\n\n" + body
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        after = "".join(lines[end:])
        new = "".join(lines[:start]) + body + ("\n" + after if after else "")
    tmp = doc.with_name(f".{doc.name}.{os.getpid()}.tmp")
    tmp.write_text(new)
    os.replace(tmp, doc)


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set these environment variables for the block, then restore what was there."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
