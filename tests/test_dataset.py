"""Datasets: .json / .jsonl / single-file .zip, content hashing, and validation errors.

Invalid datasets are made in tmp_path by mutating a copy of the bundled sample. Each bad
file is checked in-process (BadInput naming the field) and through the CLI (exit code 2, the
field in stderr, and no version and no artifact added).
"""

from __future__ import annotations

import copy
import json
import random
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from core.dataset import LABEL, REQUEST_ID, TEXT, TITLE, content_hash, load_dataset, slim
from core.errors import BadInput
from tests.conftest import SAMPLE
from tests.helpers import artifact_files, run_cli


@pytest.fixture(scope="module")
def sample_records() -> list[dict]:
    return json.loads(SAMPLE.read_text())


def write_json(path: Path, records: object) -> Path:
    path.write_text(json.dumps(records))
    return path


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def write_zip(path: Path, members: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return path


# --- reading -------------------------------------------------------------------------------
def test_formats_give_the_same_records_and_hash(tmp_path, sample_records):
    expected_positives = sum(r[LABEL] is True for r in sample_records)
    as_json = load_dataset(write_json(tmp_path / "a.json", sample_records))
    as_jsonl = load_dataset(write_jsonl(tmp_path / "b.jsonl", sample_records))
    as_zip = load_dataset(write_zip(tmp_path / "c.zip", {"train.json": SAMPLE.read_text()}))
    lines = "\n".join(json.dumps(r) for r in sample_records)
    as_zipped_jsonl = load_dataset(write_zip(tmp_path / "d.json.zip", {"train.jsonl": lines}))
    for dataset in (as_json, as_jsonl, as_zip, as_zipped_jsonl):
        assert dataset.records == [slim(r) for r in sample_records]  # unused fields dropped
        assert dataset.rows == len(sample_records)
        assert dataset.positives == expected_positives
        assert dataset.sha256 == as_json.sha256
    assert 0 < expected_positives < len(sample_records)
    assert as_json.summary() == {
        "path": str(tmp_path / "a.json"),
        "rows": len(sample_records),
        "positives": expected_positives,
        "sha256": as_json.sha256,
    }


def test_hash_ignores_key_and_record_order(tmp_path, sample_records):
    rng = random.Random(1)
    shuffled = []
    for record in sample_records:
        items = list(record.items())
        rng.shuffle(items)
        shuffled.append(dict(items))
    rng.shuffle(shuffled)
    by_id = {r[REQUEST_ID]: r for r in sample_records}
    assert any(list(r) != list(by_id[r[REQUEST_ID]]) for r in shuffled)  # keys reordered
    assert [r[REQUEST_ID] for r in shuffled] != [r[REQUEST_ID] for r in sample_records]
    original = load_dataset(SAMPLE)
    reordered = load_dataset(write_jsonl(tmp_path / "shuffled.jsonl", shuffled))
    assert reordered.sha256 == original.sha256
    assert content_hash(shuffled) == content_hash(sample_records)


def test_hash_changes_with_content(sample_records):
    changed = copy.deepcopy(sample_records)
    changed[10][TITLE] += "!"
    assert content_hash(changed) != content_hash(sample_records)
    fewer = sample_records[:-1]
    assert content_hash(fewer) != content_hash(sample_records)


def test_utf8_bom_is_accepted(tmp_path, sample_records):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(sample_records).encode())
    assert load_dataset(path).sha256 == load_dataset(SAMPLE).sha256


def test_unlabelled_load_skips_the_label(tmp_path, sample_records):
    unlabelled = [{k: v for k, v in r.items() if k != LABEL} for r in sample_records[:5]]
    dataset = load_dataset(write_json(tmp_path / "u.json", unlabelled), labelled=False)
    assert dataset.rows == 5 and dataset.positives is None
    with pytest.raises(BadInput, match=LABEL):
        load_dataset(tmp_path / "u.json")


# --- invalid datasets ----------------------------------------------------------------------
def _mutate(change: Callable[[list[dict]], object]) -> Callable[[Path, list[dict]], Path]:
    def make(tmp_path: Path, records: list[dict]) -> Path:
        records = copy.deepcopy(records)
        out = change(records)
        return write_json(tmp_path / "bad.json", records if out is None else out)

    return make


def _set(index: int, field: str, value: object) -> Callable[[list[dict]], None]:
    def change(records: list[dict]) -> None:
        records[index][field] = value

    return change


def _delete(*indices: int, field: str) -> Callable[[list[dict]], None]:
    def change(records: list[dict]) -> None:
        for index in indices:
            del records[index][field]

    return change


def _duplicate(records: list[dict]) -> None:
    records[7][REQUEST_ID] = records[2][REQUEST_ID]


def _not_json(tmp_path: Path, records: list[dict]) -> Path:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(records)[:5000])  # truncated mid-record
    return path


def _two_file_zip(tmp_path: Path, records: list[dict]) -> Path:
    text = json.dumps(records)
    return write_zip(tmp_path / "bad.zip", {"train.json": text, "test.json": text})


def _huge_text(tmp_path: Path, records: list[dict]) -> Path:
    records = copy.deepcopy(records)
    records[3][TEXT] = "pizza " * 900_000  # 5.4 MB in one field
    return write_json(tmp_path / "bad.json", records)


# (id, file maker, substrings expected in the message)
BAD_DATA = [
    ("not-json", _not_json, ["not valid JSON"]),
    ("not-a-list", _mutate(lambda r: {"requests": r}), ["expected a JSON list"]),
    ("empty-list", _mutate(lambda r: []), ["empty"]),
    ("missing-field", _mutate(_delete(5, 9, field=TITLE)), [f"'{TITLE}'", "missing", "record 5"]),
    (
        "wrong-type-text",
        _mutate(_set(4, TEXT, 42)),
        [f"'{TEXT}'", "must be a string", "record 4"],
    ),
    (
        "wrong-type-number",
        _mutate(_set(6, "requester_account_age_in_days_at_request", "old")),
        ["'requester_account_age_in_days_at_request'", "finite number", "record 6"],
    ),
    ("duplicate-ids", _mutate(_duplicate), [f"'{REQUEST_ID}'", "duplicate", "2 and 7"]),
    ("label-string", _mutate(_set(8, LABEL, "yes")), [f"'{LABEL}'", "true or false", "record 8"]),
    ("label-int", _mutate(_set(8, LABEL, 1)), [f"'{LABEL}'", "true or false"]),
    ("zip-two-files", _two_file_zip, ["exactly one JSON file", "found 2"]),
    ("5mb-text", _huge_text, [f"'{TEXT}'", "5,400,000 characters", "limit is 40,000"]),
]


@pytest.mark.parametrize(
    ("make", "expected"), [b[1:] for b in BAD_DATA], ids=[b[0] for b in BAD_DATA]
)
def test_bad_data_is_bad_input(tmp_path, sample_records, make, expected):
    path = make(tmp_path, sample_records)
    with pytest.raises(BadInput) as info:
        load_dataset(path)
    for text in expected:
        assert text in str(info.value)


def test_single_class_and_other_problems(tmp_path, sample_records):
    negatives = [r for r in sample_records if not r[LABEL]]
    with pytest.raises(BadInput, match="same label"):
        load_dataset(write_json(tmp_path / "neg.json", negatives))
    with pytest.raises(BadInput, match="unsupported file type"):
        load_dataset(write_json(tmp_path / "data.csv", sample_records))
    with pytest.raises(BadInput, match="not found"):
        load_dataset(tmp_path / "missing.json")
    (tmp_path / "broken.zip").write_bytes(b"PK not a zip")
    with pytest.raises(BadInput, match="not a valid zip"):
        load_dataset(tmp_path / "broken.zip")
    with pytest.raises(BadInput, match=r"line 2 is not valid JSON"):
        (tmp_path / "bad.jsonl").write_text(json.dumps(sample_records[0]) + "\n{oops\n")
        load_dataset(tmp_path / "bad.jsonl")
    with pytest.raises(BadInput, match=r"must be \.json or \.jsonl"):
        load_dataset(write_zip(tmp_path / "csv.zip", {"train.csv": "a,b"}))
    with pytest.raises(BadInput, match="finite number"):
        records = copy.deepcopy(sample_records)
        records[0]["unix_timestamp_of_request_utc"] = float("nan")
        path = tmp_path / "nan.json"
        path.write_text(json.dumps(records))  # json writes NaN, Python reads it back
        load_dataset(path)


def _registry_is_empty() -> bool:
    from core.registry import Registry

    registry = Registry()
    return registry.all_versions() == [] and registry.model_names() == []


# Through the CLI: one case per kind of problem (the in-process test above covers the rest).
CLI_CASES = [b for b in BAD_DATA if b[0] not in {"not-a-list", "wrong-type-number", "label-int"}]


@pytest.mark.parametrize(
    ("make", "expected"), [b[1:] for b in CLI_CASES], ids=[b[0] for b in CLI_CASES]
)
def test_cli_refuses_bad_data_without_a_trace(lab, tmp_path, sample_records, make, expected):
    path = make(tmp_path, sample_records)
    result = run_cli("train", "--recipe", "nb-bow", "--data", str(path), "--backend", "local")
    assert result.returncode == 2, result.stderr
    for text in expected:
        assert text in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert _registry_is_empty()
    assert artifact_files(lab) == []


def test_cli_refuses_a_leaky_feature_without_a_trace(lab):
    result = run_cli(
        "train",
        "--recipe",
        "tfidf-meta-logreg",
        "--param",
        "meta_fields=requester_number_of_comments_at_retrieval",
        "--backend",
        "local",
        "--json",
    )
    assert result.returncode == 2, result.stderr
    assert "requester_number_of_comments_at_retrieval" in result.stderr
    assert "refused" in result.stderr
    assert "after the outcome" in result.stderr  # the reason
    assert result.stdout == ""
    listing = run_cli("list", "--json")
    assert listing.returncode == 0, listing.stderr
    assert json.loads(listing.stdout) == []
    assert artifact_files(lab) == []
