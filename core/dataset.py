"""Read and validate RAOP requests in the Kaggle `train.json` format (.json, .zip, .jsonl).

Files are read as a stream: one request object is parsed, checked and written out in
canonical form at a time, so what a file may cost is bounded by the limits below, not by
what it claims to contain. The canonical form (one compact JSON object per line, keys
sorted, lines ordered by `request_id`) is what the content hash covers and what the
artifact store keeps: its sha256 *is* the dataset's `data_sha256`, so a worker verifies
the file it is given by hashing its bytes, without validating again.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import math
import os
import sys
import tempfile
import zipfile
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import IO, Any

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
# The requester's numbers among them (everything but the two timestamps).
REQUESTER_COUNTS = tuple(f for f in REQUEST_TIME_NUMERIC if not f.startswith("unix_timestamp"))
SUBREDDITS = "requester_subreddits_at_request"
# What models and scoring read of a request; records kept in memory hold only these.
KEPT_FIELDS = frozenset((REQUEST_ID, TITLE, TEXT, LABEL, *REQUEST_TIME_NUMERIC))

# Reddit caps titles at 300 and self posts at 40,000 characters; we leave headroom on titles.
MAX_TITLE_CHARS = 1_000
MAX_TEXT_CHARS = 40_000
SUFFIXES = (".json", ".jsonl", ".zip")
# What one file may cost, checked while reading (Kaggle's train.json: 4,040 requests, ~12 MB).
MAX_DATA_BYTES = 1 << 30  # a file, or the JSON inside a zip, may hold at most 1 GiB
MAX_RECORDS = 500_000
MAX_RECORD_CHARS = 8 << 20  # one request object as JSON text
MAX_ID_CHARS = 200  # Reddit ids are like t3_abc12; ids are kept in memory while validating
READ_CHUNK = 1 << 20

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
    """A validated dataset's facts (recorded in provenance), and its records when kept."""

    path: str
    rows: int
    positives: int | None
    sha256: str
    records: list[dict[str, Any]] = dataclass_field(default_factory=list, repr=False, compare=False)

    def summary(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "rows": self.rows,
            "positives": self.positives,
            "sha256": self.sha256,
        }


# --- reading: bytes -> text -> one JSON value at a time -----------------------------------
def _open_source(path: Path) -> tuple[str, IO[bytes]]:
    """(name of the JSON file, its byte stream): the file itself or the one file in a zip."""
    if not path.is_file():
        raise BadInput(f"dataset not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise BadInput(f"{path.name}: unsupported file type '{suffix}'; use .json, .jsonl or .zip")
    if suffix != ".zip":
        if path.stat().st_size > MAX_DATA_BYTES:
            raise BadInput(f"{path.name} is larger than the {MAX_DATA_BYTES >> 20} MB limit")
        return path.name, open(path, "rb")
    try:
        archive = zipfile.ZipFile(path)
        members = [
            m
            for m in archive.infolist()
            if not m.is_dir() and not m.filename.startswith("__MACOSX/")
        ]
        if len(members) != 1:
            names = ", ".join(m.filename for m in members[:5]) or "nothing"
            raise BadInput(
                f"{path.name}: a dataset zip must hold exactly one JSON file, "
                f"found {len(members)} ({names})"
            )
        member = members[0]
        if member.file_size > MAX_DATA_BYTES:  # a zip bomb: refuse before inflating
            raise BadInput(
                f"{path.name}: '{member.filename}' would unzip to "
                f"{member.file_size / 1e6:,.0f} MB; the limit is {MAX_DATA_BYTES >> 20} MB"
            )
        if not member.filename.lower().endswith((".json", ".jsonl")):
            raise BadInput(
                f"{path.name}: the file in the zip must be .json or .jsonl, not '{member.filename}'"
            )
        return member.filename, archive.open(member)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError) as exc:
        raise BadInput(f"{path.name}: not a valid zip file ({exc})") from exc


def _text_chunks(name: str, stream: IO[bytes]) -> Iterator[str]:
    """Decode UTF-8 (a BOM allowed) chunk by chunk; BadInput at the first invalid byte."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    offset = 0
    try:
        while True:
            try:
                block = stream.read(READ_CHUNK)
            except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
                raise BadInput(f"{name}: the compressed data is corrupt ({exc})") from exc
            try:
                text = decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                raise BadInput(f"{name}: not valid UTF-8 at byte {offset + exc.start}") from exc
            offset += len(block)
            if text:
                yield text
            if not block:
                return
    finally:
        stream.close()


class _Reader:
    """A growing text buffer over decoded chunks, for parsing one value at a time."""

    def __init__(self, name: str, chunks: Iterator[str]) -> None:
        self.name, self.chunks = name, chunks
        self.buf, self.pos, self.eof = "", 0, False

    def more(self) -> bool:
        if self.eof:
            return False
        chunk = next(self.chunks, None)
        if chunk is None:
            self.eof = True
            return False
        self.buf = self.buf[self.pos :] + chunk
        self.pos = 0
        return True

    def skip_space(self) -> str:
        """The next non-space character (not consumed), or '' at the end."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return ""


_DECODER = json.JSONDecoder()


def _decode_value(reader: _Reader, index: int) -> Any:
    """Parse one JSON value at the reader's position, reading more text as needed."""
    reader.skip_space()
    while True:
        try:
            value, end = _DECODER.raw_decode(reader.buf, reader.pos)
        except json.JSONDecodeError as exc:
            if reader.eof or len(reader.buf) - reader.pos > MAX_RECORD_CHARS:
                if not reader.eof:
                    raise BadInput(
                        f"{reader.name}: record {index} is larger than "
                        f"{MAX_RECORD_CHARS >> 20} MB of JSON"
                    ) from None
                raise BadInput(
                    f"{reader.name}: not valid JSON: {exc.msg} (record {index})"
                ) from None
            # read until the pending text doubles, so a long record is parsed O(log n)
            # times rather than once per chunk
            wanted = min(2 * (len(reader.buf) - reader.pos), MAX_RECORD_CHARS + 1)
            while reader.more() and len(reader.buf) - reader.pos < wanted:
                pass
            continue
        except RecursionError:
            raise BadInput(f"{reader.name}: JSON nested too deeply (record {index})") from None
        except ValueError as exc:  # e.g. an integer with more than 4,300 digits
            raise BadInput(
                f"{reader.name}: record {index} holds an unreadable value ({exc})"
            ) from None
        if end == len(reader.buf) and not reader.eof and reader.more():
            continue  # a number may go on in the next chunk: parse again with more text
        if end - reader.pos > MAX_RECORD_CHARS:
            raise BadInput(
                f"{reader.name}: record {index} is larger than {MAX_RECORD_CHARS >> 20} MB of JSON"
            )
        reader.pos = end
        return value


def _json_list_items(reader: _Reader) -> Iterator[Any]:
    first = reader.skip_space()
    if first != "[":
        if first == "":
            raise BadInput(f"{reader.name}: not valid JSON: the file is empty")
        value = _decode_value(reader, 0)
        raise BadInput(
            f"{reader.name}: expected a JSON list of request objects, got {type(value).__name__}"
        )
    reader.pos += 1
    index = 0
    if reader.skip_space() == "]":
        reader.pos += 1
    else:
        while True:
            yield _decode_value(reader, index)
            index += 1
            separator = reader.skip_space()
            reader.pos += 1
            if separator == "]":
                break
            if separator != ",":
                raise BadInput(
                    f"{reader.name}: not valid JSON: expected ',' or ']' after record {index - 1}"
                )
    if reader.skip_space() != "":
        raise BadInput(f"{reader.name}: not valid JSON: extra data after the list")


def _jsonl_items(name: str, chunks: Iterator[str]) -> Iterator[Any]:
    pending, lineno = "", 0
    for chunk in _with_final_newline(chunks):
        pending += chunk
        *lines, pending = pending.split("\n")
        if len(pending) > MAX_RECORD_CHARS:
            raise BadInput(f"{name}: line {lineno + 1} is larger than {MAX_RECORD_CHARS >> 20} MB")
        for line in lines:
            lineno += 1
            if len(line) > MAX_RECORD_CHARS:
                raise BadInput(f"{name}: line {lineno} is larger than {MAX_RECORD_CHARS >> 20} MB")
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except (json.JSONDecodeError, RecursionError, ValueError) as exc:
                raise BadInput(f"{name}: line {lineno} is not valid JSON ({exc})") from None


def _with_final_newline(chunks: Iterator[str]) -> Iterator[str]:
    yield from chunks
    yield "\n"


def iter_records(path: Path) -> Iterator[Any]:
    """Every top-level item of a .json list, .jsonl or single-file .zip, one at a time."""
    name, stream = _open_source(Path(path))
    chunks = _text_chunks(name, stream)
    if name.lower().endswith(".jsonl"):
        items = _jsonl_items(name, chunks)
    else:
        items = _json_list_items(_Reader(name, chunks))
    count = 0  # not enumerate: its cached tuple would hold a record while the next is parsed
    for item in items:
        if count >= MAX_RECORDS:
            raise BadInput(f"{name}: more than {MAX_RECORDS:,} records; that is the limit")
        count += 1  # noqa: SIM113
        yield item
        del item  # one large record in memory at a time


def read_records(path: Path) -> list[Any]:
    """All items of a dataset or request file (each bounded; nothing else validated), each
    object slimmed to the fields a model reads once its others prove storable (`slim`)."""
    items, index = [], 0  # not enumerate: one large record in memory at a time
    for item in iter_records(path):
        items.append(slim(item, index, check=True))
        del item
        index += 1  # noqa: SIM113
    return items


def slim(record: Any, index: int = 0, check: bool = False) -> Any:
    """A request object with only the fields a model reads (KEPT_FIELDS), so that a large
    unused field costs memory only while its own record is read. With `check`, the record
    is first proved storable (valid Unicode), as it would be whole."""
    if not isinstance(record, dict) or record.keys() <= KEPT_FIELDS:
        return record
    if check:
        canonical_line(record, index)
    return {key: value for key, value in record.items() if key in KEPT_FIELDS}


# --- validation ------------------------------------------------------------------------------
def _where(index: int, record: Any) -> str:
    rid = record.get(REQUEST_ID) if isinstance(record, dict) else None
    return f"record {index}" + (f" (request_id {_short(rid)})" if isinstance(rid, str) else "")


def _finite_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value)) and abs(float(value)) < 1e15
    except OverflowError:
        return False


def _validate_record(index: int, record: Any, labelled: bool) -> None:
    if not isinstance(record, dict):
        raise BadInput(f"{_where(index, record)}: expected an object, got {type(record).__name__}")
    where = _where(index, record)
    rid = record.get(REQUEST_ID)
    if not isinstance(rid, str) or not rid.strip():
        raise BadInput(f"{where}: field '{REQUEST_ID}' must be a non-empty string")
    if len(rid) > MAX_ID_CHARS:  # every id is held until the end of validation
        raise BadInput(
            f"record {index}: field '{REQUEST_ID}' is longer than {MAX_ID_CHARS} characters"
        )
    for name, limit in ((TITLE, MAX_TITLE_CHARS), (TEXT, MAX_TEXT_CHARS)):
        value = record.get(name)
        if not isinstance(value, str):
            state = "is missing" if name not in record else f"is {type(value).__name__}"
            raise BadInput(f"{where}: field '{name}' must be a string but {state}")
        if len(value) > limit:
            raise BadInput(
                f"{where}: field '{name}' is {len(value):,} characters; the limit is {limit:,}"
            )
    if labelled:
        label = record.get(LABEL)
        if not isinstance(label, bool):
            state = "is missing" if LABEL not in record else f"is {_short(label)}"
            raise BadInput(f"{where}: field '{LABEL}' must be true or false but {state}")
    for name in REQUEST_TIME_NUMERIC:
        if name not in record and not labelled:
            continue
        value = record.get(name)
        if not _finite_number(value):
            state = "is missing" if name not in record else f"is {_short(value)}"
            raise BadInput(f"{where}: field '{name}' must be a finite number but {state}")


def _short(value: Any) -> str:
    """A value quoted for an error message, cut so a message stays one short line."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else "a huge number"
    return text if len(text) <= 60 else text[:57] + "..."


def canonical_line(record: dict[str, Any], index: int = 0) -> bytes:
    """The record as one compact JSON line with sorted keys (UTF-8): what the hash covers."""
    try:
        return (
            json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n"
        ).encode("utf-8")
    except UnicodeEncodeError:  # JSON allows "\ud800"; UTF-8 (hashes, logs) does not
        bad = next((k for k, v in record.items() if not _encodable([k, v])), "?")
        raise BadInput(
            f"{_where(index, record)}: field {bad!r} is not valid Unicode (a lone surrogate)"
        ) from None
    except (TypeError, ValueError) as exc:
        raise BadInput(f"{_where(index, record)}: cannot be stored ({exc})") from None


def _encodable(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, ValueError):
        return False
    return True


class Checker:
    """Validates records one at a time and writes their canonical lines to a spool file.

    Memory stays bounded by the number of records (an id and an offset each), never by
    their size: the lines wait on disk until `finish()` orders them by id and hashes them.
    """

    def __init__(self, labelled: bool = True, for_training: bool = True) -> None:
        self.labelled, self.for_training = labelled, for_training
        self.seen: dict[str, int] = {}
        self.offsets, self.lengths = array("q"), array("q")
        self.positives = 0
        self.ordered, self.last_id = True, ""
        self.spool = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        self.written = 0

    def add(self, index: int, record: Any) -> None:
        _validate_record(index, record, self.labelled)
        rid = record[REQUEST_ID]
        if rid in self.seen:
            raise BadInput(
                f"field '{REQUEST_ID}': duplicate id {_short(rid)} in records "
                f"{self.seen[rid]} and {index}"
            )
        line = canonical_line(record, index)
        self.seen[rid] = index
        self.offsets.append(self.written)
        self.lengths.append(len(line))
        self.spool.write(line)
        self.written += len(line)
        if self.labelled and record[LABEL]:
            self.positives += 1
        if rid < self.last_id:
            self.ordered = False
        self.last_id = rid

    @property
    def rows(self) -> int:
        return len(self.offsets)

    def finish(self, target: IO[bytes] | None = None) -> str:
        """Check the whole; hash (and write to `target`) the lines in id order."""
        if not self.rows:
            raise BadInput("dataset is empty: no requests found")
        if self.labelled and self.for_training and self.positives in (0, self.rows):
            raise BadInput(
                f"field '{LABEL}': all {self.rows} records have the same label; "
                "training needs both outcomes"
            )
        digest = hashlib.sha256()
        self.spool.flush()
        if self.ordered:
            self.spool.seek(0)
            for block in iter(lambda: self.spool.read(READ_CHUNK), b""):
                digest.update(block)
                if target is not None:
                    target.write(block)
        else:
            fd = self.spool.fileno()
            for rid in sorted(self.seen):
                at = self.seen[rid]
                line = os.pread(fd, self.lengths[at], self.offsets[at])
                digest.update(line)
                if target is not None:
                    target.write(line)
        return digest.hexdigest()

    def close(self) -> None:
        self.spool.close()


def scan_dataset(
    path: str | Path,
    labelled: bool = True,
    for_training: bool = True,
    canonical: IO[bytes] | None = None,
    keep_records: bool = False,
) -> Dataset:
    """Read, validate and hash a dataset file in one streaming pass; BadInput on problems.

    `canonical` receives the canonical JSONL bytes (whose sha256 is the result's `sha256`);
    `keep_records` keeps the parsed records in file order (for callers that score them).
    """
    path = Path(path)
    checker = Checker(labelled, for_training)
    records: list[dict[str, Any]] = []
    try:
        index = 0  # not enumerate: its cached tuple would keep the previous record alive
        for record in iter_records(path):
            checker.add(index, record)
            if keep_records:
                records.append(slim(record))
            del record  # a large unused field is freed before the next record is read
            index += 1  # noqa: SIM113
        sha256 = checker.finish(canonical)
    except MemoryError:
        raise BadInput(f"{path.name}: too large to read with the memory available") from None
    finally:
        checker.close()
    positives = checker.positives if labelled else None
    return Dataset(str(path), checker.rows, positives, sha256, records)


def load_dataset(path: str | Path, labelled: bool = True, for_training: bool = True) -> Dataset:
    """Read, validate and hash a dataset file, keeping its records (in file order)."""
    return scan_dataset(path, labelled, for_training, keep_records=True)


def validate_records(
    records: Iterable[Any], labelled: bool = True, for_training: bool = True
) -> str:
    """Check records already in memory; return their content hash. BadInput names the first
    offending record and field."""
    if not isinstance(records, list):
        raise BadInput(f"expected a JSON list of request objects, got {type(records).__name__}")
    checker = Checker(labelled, for_training)
    try:
        for index, record in enumerate(records):
            checker.add(index, record)
        return checker.finish()
    finally:
        checker.close()


def validate_request(record: dict[str, Any], index: int = 0) -> None:
    """Validate one unlabelled request (for predictions)."""
    _validate_record(index, record, labelled=False)
    canonical_line(record, index)


def content_hash(records: list[dict[str, Any]]) -> str:
    """sha256 of the records in canonical form: independent of file format and key order."""
    digest = hashlib.sha256()
    for record in sorted(records, key=lambda r: r[REQUEST_ID]):
        digest.update(canonical_line(record))
    return digest.hexdigest()


def read_canonical(path: Path, expected_sha256: str) -> list[dict[str, Any]]:
    """Records of a canonical dataset file (slimmed, `slim`), after its bytes hash to
    `expected_sha256`. Streamed: a line at a time, never the whole file in memory.

    The bytes were validated when the dataset was submitted; the hash proves these are the
    same bytes, so they are parsed without validating again.
    """
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise BadInput(
            f"the dataset changed since the build was queued (sha256 {actual[:12]}, "
            f"expected {expected_sha256[:12]})"
        )
    records = []
    with open(path, "rb") as lines:
        for line in lines:
            if line.strip():
                record = slim(json.loads(line))
                records.append({sys.intern(key): value for key, value in record.items()})
    return records


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(READ_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()
