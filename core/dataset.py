"""Read and validate RAOP requests in the Kaggle `train.json` format (.json, .zip, .jsonl)."""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import BadInput

REQUEST_ID = "request_id"
TITLE = "request_title"
TEXT = "request_text_edit_aware"
LABEL = "requester_received_pizza"
TIMESTAMP = "unix_timestamp_of_request_utc"

# Numeric fields known when the request was made (features may use these).
REQUEST_TIME_NUMERIC = (
    "requester_account_age_in_days_at_request",
    "requester_days_since_first_post_on_raop_at_request",
    "requester_number_of_comments_at_request",
    "requester_number_of_comments_in_raop_at_request",
    "requester_number_of_posts_at_request",
    "requester_number_of_posts_on_raop_at_request",
    "requester_number_of_subreddits_at_request",
    "requester_upvotes_minus_downvotes_at_request",
    "requester_upvotes_plus_downvotes_at_request",
    "unix_timestamp_of_request",
    TIMESTAMP,
)

# Reddit caps titles at 300 and self posts at 40,000 characters; we leave headroom on titles.
MAX_TITLE_CHARS = 1_000
MAX_TEXT_CHARS = 40_000
SUFFIXES = (".json", ".jsonl", ".zip")
MAX_UNZIPPED_BYTES = 256 << 20  # a dataset zip may expand to 256 MB (Kaggle's file: ~12 MB)

_LEAKY_EXACT = {
    "giver_username_if_known": "names the giver, known only once a pizza was given",
    "requester_user_flair": "the flair is awarded after receiving (or giving) a pizza",
    "post_was_edited": "edits happen after the outcome (e.g. 'EDIT: thanks!')",
    "request_text": "may contain post-outcome edits; use request_text_edit_aware",
    LABEL: "it is the label itself",
}


def leak_reason(field: str) -> str | None:
    """Why `field` must never be a feature, or None when it is known at request time."""
    if field.endswith("_at_retrieval"):
        return "'*_at_retrieval' fields are measured after the outcome is known"
    return _LEAKY_EXACT.get(field)


def refuse_leaky(fields: list[str] | tuple[str, ...], context: str) -> None:
    """Raise BadInput naming the first field that would leak the outcome."""
    for field in fields:
        reason = leak_reason(field)
        if reason:
            raise BadInput(f"{context}: field '{field}' is refused as a feature: {reason}")


@dataclass(frozen=True)
class Dataset:
    """Validated records plus the facts recorded in provenance."""

    path: str
    records: list[dict[str, Any]]
    rows: int
    positives: int | None
    sha256: str

    def summary(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "rows": self.rows,
            "positives": self.positives,
            "sha256": self.sha256,
        }


def load_dataset(path: str | Path, labelled: bool = True, for_training: bool = True) -> Dataset:
    """Read, validate and hash a dataset file; raise BadInput naming what is wrong."""
    path = Path(path)
    records = read_records(path)
    validate_records(records, labelled=labelled, for_training=for_training)
    positives = sum(bool(r[LABEL]) for r in records) if labelled else None
    return Dataset(str(path), records, len(records), positives, content_hash(records))


def read_records(path: Path) -> list[dict[str, Any]]:
    """Parse a .json (list), .jsonl or single-file .zip into a list of objects."""
    if not path.is_file():
        raise BadInput(f"dataset not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise BadInput(f"{path.name}: unsupported file type '{suffix}'; use .json, .jsonl or .zip")
    raw = path.read_bytes()
    name = path.name
    if suffix == ".zip":
        name, raw = _single_json_in_zip(path, raw)
    text = _decode(name, raw)
    if name.lower().endswith(".jsonl"):
        return _parse_jsonl(name, text)
    return _parse_json_list(name, text)


def _single_json_in_zip(path: Path, raw: bytes) -> tuple[str, bytes]:
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            members = [
                m
                for m in archive.infolist()
                if not m.is_dir() and not m.filename.startswith("__MACOSX/")
            ]
            if len(members) != 1:
                names = ", ".join(m.filename for m in members) or "nothing"
                raise BadInput(
                    f"{path.name}: a dataset zip must hold exactly one JSON file, "
                    f"found {len(members)} ({names})"
                )
            member = members[0]
            if member.file_size > MAX_UNZIPPED_BYTES:  # a zip bomb: refuse before inflating
                raise BadInput(
                    f"{path.name}: '{member.filename}' would unzip to "
                    f"{member.file_size / 1e6:,.0f} MB; the limit is {MAX_UNZIPPED_BYTES >> 20} MB"
                )
            if not member.filename.lower().endswith((".json", ".jsonl")):
                raise BadInput(
                    f"{path.name}: the file in the zip must be .json or .jsonl, "
                    f"not '{member.filename}'"
                )
            return member.filename, archive.read(member)
    except zipfile.BadZipFile as exc:
        raise BadInput(f"{path.name}: not a valid zip file ({exc})") from exc


def _decode(name: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{name}: not valid UTF-8 at byte {exc.start}") from exc


def _parse_json_list(name: str, text: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(
            f"{name}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except RecursionError as exc:
        raise BadInput(f"{name}: JSON nested too deeply") from exc
    if not isinstance(data, list):
        raise BadInput(
            f"{name}: expected a JSON list of request objects, got {type(data).__name__}"
        )
    return data


def _parse_jsonl(name: str, text: str) -> list[dict[str, Any]]:
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except (json.JSONDecodeError, RecursionError) as exc:
            raise BadInput(f"{name}: line {lineno} is not valid JSON ({exc})") from exc
    return records


def _where(index: int, record: Any) -> str:
    rid = record.get(REQUEST_ID) if isinstance(record, dict) else None
    return f"record {index}" + (f" (request_id {rid!r})" if isinstance(rid, str) else "")


def validate_records(records: list[Any], labelled: bool = True, for_training: bool = True) -> None:
    """Check every record; the error names the field and the first offending record."""
    if not records:
        raise BadInput("dataset is empty: no requests found")
    seen: dict[str, int] = {}
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise BadInput(
                f"{_where(index, record)}: expected an object, got {type(record).__name__}"
            )
        _validate_record(index, record, labelled)
        rid = record[REQUEST_ID]
        if rid in seen:
            raise BadInput(
                f"field '{REQUEST_ID}': duplicate id {rid!r} in records {seen[rid]} and {index}"
            )
        seen[rid] = index
    if labelled and for_training:
        classes = {bool(r[LABEL]) for r in records}
        if len(classes) < 2:
            raise BadInput(
                f"field '{LABEL}': all {len(records)} records have the same label; "
                "training needs both outcomes"
            )


def validate_request(record: dict[str, Any], index: int = 0) -> None:
    """Validate one unlabelled request (for predictions)."""
    _validate_record(index, record, labelled=False)


def _validate_record(index: int, record: dict[str, Any], labelled: bool) -> None:
    where = _where(index, record)
    rid = record.get(REQUEST_ID)
    if not isinstance(rid, str) or not rid.strip():
        raise BadInput(f"{where}: field '{REQUEST_ID}' must be a non-empty string")
    for field, limit in ((TITLE, MAX_TITLE_CHARS), (TEXT, MAX_TEXT_CHARS)):
        value = record.get(field)
        if not isinstance(value, str):
            state = "is missing" if field not in record else f"is {type(value).__name__}"
            raise BadInput(f"{where}: field '{field}' must be a string but {state}")
        if len(value) > limit:
            raise BadInput(
                f"{where}: field '{field}' is {len(value):,} characters; the limit is {limit:,}"
            )
    if labelled:
        label = record.get(LABEL)
        if not isinstance(label, bool):
            state = "is missing" if LABEL not in record else f"is {label!r}"
            raise BadInput(f"{where}: field '{LABEL}' must be true or false but {state}")
    for field in REQUEST_TIME_NUMERIC:
        if field not in record and not labelled:
            continue
        value = record.get(field)
        if not _finite_number(value):
            state = "is missing" if field not in record else f"is {value!r}"
            raise BadInput(f"{where}: field '{field}' must be a finite number but {state}")
    if not _utf8_encodable(record):  # JSON allows "\ud800"; UTF-8 (hashes, logs) does not
        field = next((k for k, v in record.items() if not _utf8_encodable([k, v])), "?")
        raise BadInput(f"{where}: field {field!r} is not valid Unicode (a lone surrogate)")


def _utf8_encodable(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _finite_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value)) and abs(float(value)) < 1e15
    except OverflowError:
        return False


def content_hash(records: list[dict[str, Any]]) -> str:
    """sha256 of the records in canonical form: independent of file format and key order."""
    digest = hashlib.sha256()
    for record in sorted(records, key=lambda r: r[REQUEST_ID]):
        digest.update(
            json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode(
                "utf-8"
            )
        )
        digest.update(b"\n")
    return digest.hexdigest()
