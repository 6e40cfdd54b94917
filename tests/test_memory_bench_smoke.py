"""Smoke test: bench/memory_bench.py --size small refuses every worst case within its target."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import run_bench

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"

# case -> what its refusal must say (the table shows a message's first 80 characters)
REFUSED = {
    "empty-objects-zip": "field 'request_id' must be a non-empty string",
    "empty-objects-upload": "field 'request_id' must be a non-empty string",
    "max-records": "more than 20,000 records",
    "record-over-limit.json": "record 0 is larger than 8 MB of JSON",
    "record-over-limit.jsonl": "line 1 is larger than 8 MB",
    "lists-record": "record 1: field 'request_id' must be a non-empty string",
    "nested": "JSON nested too deeply",
    "over-data-zip": "would unzip to",
    "long-ids-upload": "is longer than 200 characters",
    "manifest-over-limit": "manifest.json would unzip to more than 1 MB",
    "manifest-at-limit": "unknown export format",
    "artifact-at-limit": "artifact.joblib was modified",
    "details-objects": "details.json is not shaped like",
    "details-lists": "details.json is not shaped like",
}
ACCEPTED = ("baseline", "export-reference")
ROW = re.compile(r"^\| `(?P<case>[^`]+)` \(`\w+`\) \| (?P<cells>.*) \|$")
MIB = re.compile(r"^([\d,]+) MiB$")


def _mib(text: str) -> int:
    found = MIB.match(text.strip())
    assert found, text
    return int(found.group(1).replace(",", ""))


@pytest.mark.slow
def test_memory_bench_small_refuses_every_case_within_target(lab: Path) -> None:
    before = DOC.read_bytes() if DOC.is_file() else None
    completed = run_bench("memory_bench.py", "--size", "small", "--no-write", timeout=900)
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    out = completed.stdout
    assert out.startswith("## Memory bounds"), out[:500]
    assert "| case | input size on disk | refused? + message | peak RSS |" in out

    rows = {}
    for line in out.splitlines():
        found = ROW.match(line)
        if found:
            rows[found["case"]] = [c.strip() for c in found["cells"].split(" | ")]
    assert set(rows) == set(REFUSED) | set(ACCEPTED), sorted(rows)

    for case, cells in rows.items():
        _, outcome, rss, ratio, target = cells
        target_mib = _mib(re.match(r"≤ ([\d,]+ MiB)", target).group(1))
        assert 0 < _mib(rss) <= target_mib <= 1024, (case, cells)
        assert target.endswith(": met"), (case, cells)
        assert ratio.endswith("×"), (case, cells)
        if case in ACCEPTED:
            assert outcome == "no (accepted, as expected)", (case, cells)
        else:
            assert outcome.startswith("yes: `"), (case, cells)
            assert REFUSED[case] in outcome, (case, cells)

    assert "Result: every case met its target" in out
    # whole CLI verbs on records with a large unused field: each exits 0 within the target
    verbs = re.findall(
        r"^\| `(train|evaluate|predict --file)` \| exit (\d+) \| .* \| (.*) \|$", out, re.M
    )
    assert [(v, code) for v, code, _ in verbs] == [
        ("train", "0"),
        ("evaluate", "0"),
        ("predict --file", "0"),
    ], out[-3000:]
    assert all(target.endswith(": met") for *_, target in verbs), verbs
    assert "every verb met its target" in out
    assert (DOC.read_bytes() if DOC.is_file() else None) == before, "--no-write touched docs/"
