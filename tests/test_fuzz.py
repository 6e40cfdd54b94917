"""Property-based fuzzing (Hypothesis) of everything a user can type or upload.

* datasets (wrong types, missing and extra fields, odd Unicode, huge values, duplicate ids,
  non-JSON bytes): `validate_records` / `load_dataset` accept or raise BadInput, nothing else;
  the CLI exits 2 and creates no version and no artifact;
* recipe parameters: `Param.parse` / `Recipe.resolve` give BadInput or a valid value in range;
* request text for predictions (empty, whitespace, control characters, 1 MB, invalid UTF-8
  files): a clear BadInput / exit 2, or a probability in [0, 1]; never a traceback, never a
  version.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core import builds
from core.dataset import (
    LABEL,
    MAX_TEXT_CHARS,
    REQUEST_ID,
    REQUEST_TIME_NUMERIC,
    TEXT,
    TITLE,
    Dataset,
    load_dataset,
    validate_records,
)
from core.errors import BadInput
from core.predict import make_request, predict_proba, prepare_requests
from core.recipes import RECIPES, REQUESTER_COUNTS, Param
from core.registry import Registry
from tests.conftest import SAMPLE
from tests.helpers import artifact_files, run_cli, use_lab

FUZZ = settings(
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
    database=None,  # no .hypothesis/ folder in the checkout
)
DATASET_EXAMPLES = {"records": 300, "files": 200, "bytes": 100}  # 600 dataset examples
CLI_EXAMPLES = 5
PARAM_EXAMPLES = 300
REQUEST_EXAMPLES = 200

# --- strategies --------------------------------------------------------------------------
ODD = [
    "",
    " ",
    "\t\n\r",
    "\x00",
    "\x1b[31mred\x1b[0m",
    "\u202eevil\u202c",  # right-to-left override
    "\ufeff",  # byte-order mark
    "\u200b\u200d",  # zero-width
    "e\u0301" * 50,  # combining accents
    "𝔭𝔦𝔷𝔷𝔞 🍕👨‍👩‍👧",
    "\ud800",  # lone surrogates: valid in JSON ("\\ud800"), not encodable as UTF-8
    "x\udfffy",
    "<script>alert(1)</script>",
    "'; DROP TABLE model_versions; --",
    "$(touch /tmp/pwned) `id`",
]
odd_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=20),
    st.sampled_from(ODD),
    st.builds(
        lambda c, n: c * n, st.sampled_from(["a", " ", "\n", "é", "🍕"]), st.integers(0, 3000)
    ),
)
huge_numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([10**400, -(10**400), 2**63, -(2**63) - 1, 10**15, 10**15 - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
)
json_scalars = st.one_of(st.none(), st.booleans(), huge_numbers, odd_text)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(odd_text, inner, max_size=4)
    ),
    max_leaves=12,
)
OUTCOMES: Counter[str] = Counter()  # "<test>: accepted|refused", printed for the docs
FIELDS = [REQUEST_ID, TITLE, TEXT, LABEL, *REQUEST_TIME_NUMERIC]
SAMPLE_RECORDS = json.loads(SAMPLE.read_text())[:20]


@st.composite
def valid_record(draw: st.DrawFn, index: int) -> dict[str, Any]:
    record: dict[str, Any] = {
        REQUEST_ID: f"t3_{index}",
        TITLE: draw(st.text(max_size=30)),
        TEXT: draw(st.text(max_size=60)),
        LABEL: draw(st.booleans()),
    }
    for field in REQUEST_TIME_NUMERIC:
        record[field] = draw(st.one_of(st.integers(0, 10**9), st.floats(0, 1e9, allow_nan=False)))
    return record


@st.composite
def datasets(draw: st.DrawFn, must_break: bool = False) -> list[Any]:
    """A small dataset, valid to start with, then mutated (always broken with `must_break`)."""
    size = draw(st.integers(2, 8))
    records: list[Any] = [draw(valid_record(i)) for i in range(size)]
    records[0][LABEL], records[1][LABEL] = True, False  # both classes, unless mutated
    mutations = draw(st.integers(1 if must_break else 0, 4))
    for _ in range(mutations):
        i = draw(st.integers(0, len(records) - 1))
        kind = draw(
            st.sampled_from(
                ["drop", "wrong_type", "extra", "odd_text", "huge", "duplicate", "not_object"]
                + ([] if must_break else ["same_label"])
            )
        )
        record = records[i]
        if not isinstance(record, dict):
            continue
        if kind == "drop":
            record.pop(draw(st.sampled_from(FIELDS)), None)
        elif kind == "wrong_type":
            record[draw(st.sampled_from(FIELDS))] = draw(json_values)
        elif kind == "extra":
            record[draw(odd_text)] = draw(json_values)
        elif kind == "odd_text":
            record[draw(st.sampled_from([REQUEST_ID, TITLE, TEXT]))] = draw(odd_text)
        elif kind == "huge":
            record[draw(st.sampled_from(REQUEST_TIME_NUMERIC))] = draw(huge_numbers)
        elif kind == "duplicate":
            records.append(dict(record))
        elif kind == "not_object":
            records[i] = draw(json_scalars)
        elif kind == "same_label":
            for other in records:
                if isinstance(other, dict):
                    other[LABEL] = True
    if must_break:  # one mutation that always invalidates, on top of the random ones
        victim = records[draw(st.integers(0, len(records) - 1))]
        breaker = draw(st.sampled_from(["missing", "wrong", "nan", "dupe", "surrogate"]))
        if not isinstance(victim, dict) or breaker == "dupe":
            records.append(records[0])
        elif breaker == "missing":
            victim.pop(draw(st.sampled_from(FIELDS)), None)
        elif breaker == "wrong":
            victim[draw(st.sampled_from([TITLE, TEXT]))] = draw(st.one_of(huge_numbers, st.none()))
        elif breaker == "nan":
            victim[draw(st.sampled_from(REQUEST_TIME_NUMERIC))] = float("nan")
        else:
            victim[TITLE] = "lone \ud800 surrogate"
    return records


def assert_valid(records: list[Any], dataset: Dataset | None = None) -> None:
    """What an accepted dataset guarantees."""
    assert all(isinstance(r, dict) for r in records)
    ids = [r[REQUEST_ID] for r in records]
    assert all(isinstance(i, str) and i.strip() for i in ids) and len(set(ids)) == len(ids)
    assert {r[LABEL] for r in records} == {True, False}
    for r in records:
        assert isinstance(r[TITLE], str) and isinstance(r[TEXT], str)
        assert len(r[TEXT]) <= MAX_TEXT_CHARS
        for field in REQUEST_TIME_NUMERIC:
            assert not isinstance(r[field], bool) and math.isfinite(r[field])
        json.dumps(r, ensure_ascii=False).encode("utf-8")  # storable and printable
    if dataset is not None:
        assert dataset.rows == len(records) and len(dataset.sha256) == 64


# --- datasets ------------------------------------------------------------------------------
@settings(FUZZ, max_examples=DATASET_EXAMPLES["records"])
@given(records=datasets())
def test_validate_records_accepts_or_refuses_cleanly(records: list[Any]) -> None:
    try:
        validate_records(records)
    except BadInput as exc:
        assert str(exc) and "\n" not in str(exc)
        OUTCOMES["validate_records: refused"] += 1
        return
    assert_valid(records)
    OUTCOMES["validate_records: accepted"] += 1


@settings(FUZZ, max_examples=DATASET_EXAMPLES["files"])
@example(  # a lone surrogate is valid JSON ("\\ud800") but can never be encoded as UTF-8
    records=[{**SAMPLE_RECORDS[0], TITLE: "lone \ud800"}, *SAMPLE_RECORDS[1:]],
    shape="json",
    top=None,
)
@given(
    records=datasets(),
    shape=st.sampled_from(["json", "jsonl", "zip", "top_level"]),
    top=json_values,
)
def test_load_dataset_file_accepts_or_refuses_cleanly(
    tmp_path_factory: pytest.TempPathFactory, records: list[Any], shape: str, top: Any
) -> None:
    import zipfile

    folder = tmp_path_factory.mktemp("fuzzdata")
    if shape == "jsonl":
        path = folder / "data.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in records))
    elif shape == "zip":
        path = folder / "data.zip"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("train.json", json.dumps(records))
    else:
        path = folder / "data.json"
        path.write_text(json.dumps(records if shape == "json" else top))
    try:
        dataset = load_dataset(path)
    except BadInput as exc:
        assert str(exc) and "Traceback" not in str(exc)
        OUTCOMES["load_dataset file: refused"] += 1
        return
    assert_valid(dataset.records, dataset)
    OUTCOMES["load_dataset file: accepted"] += 1


@settings(FUZZ, max_examples=DATASET_EXAMPLES["bytes"])
@given(
    raw=st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda head, tail: head + tail,
            st.sampled_from([b"[", b'[{"request_id": "', b"\xef\xbb\xbf[", b"PK\x03\x04", b""]),
            st.binary(max_size=200),
        ),
    ),
    suffix=st.sampled_from([".json", ".jsonl", ".zip"]),
)
def test_load_dataset_random_bytes(
    tmp_path_factory: pytest.TempPathFactory, raw: bytes, suffix: str
) -> None:
    path = tmp_path_factory.mktemp("fuzzbytes") / f"data{suffix}"
    path.write_bytes(raw)
    try:
        dataset = load_dataset(path)
    except BadInput:
        OUTCOMES["random bytes: refused"] += 1
        return
    assert_valid(dataset.records, dataset)
    OUTCOMES["random bytes: accepted"] += 1


@settings(FUZZ, max_examples=CLI_EXAMPLES)
@example(records=[{**r, TITLE: f"lone \ud800 {i}"} for i, r in enumerate(SAMPLE_RECORDS)])
@given(records=datasets(must_break=True))
def test_cli_train_refuses_bad_datasets(lab: Path, records: list[Any]) -> None:
    path = lab / "data" / "bad.json"
    path.write_text(json.dumps(records))
    done = run_cli(
        "train",
        "--recipe",
        "nb-bow",
        "--backend",
        "local",
        "--data",
        str(path),
        env={"DOCKER_HOST": "unix:///tmp/altruism-lab-nonexistent.sock"},
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert Registry().all_versions() == []
    assert artifact_files(lab) == []
    OUTCOMES["cli train: refused"] += 1


# --- recipe parameters -------------------------------------------------------------------
ALL_PARAMS = [(recipe, param) for recipe in RECIPES.values() for param in recipe.params]
plausible_numbers = st.one_of(  # near and inside the declared ranges, as numbers or text
    st.integers(-5, 600_000),
    st.floats(-1.0, 20_000.0),
    st.floats(1e-5, 2.0),
    st.integers(-5, 600_000).map(str),
    st.floats(1e-5, 200.0).map(repr),
)
param_values = st.one_of(
    json_values,
    plausible_numbers,
    st.from_regex(r"\A\s*[-+]?\d{1,6}(\.\d{0,4})?([eE][-+]?\d{1,3})?\s*\Z"),
    st.sampled_from(
        ["true", "False", "1", "0", "nan", "inf", "-inf", "1e400", "9" * 5000, "١٢", "1_000"]
    ),
    st.sampled_from(["balanced", "none", "Balanced", ",".join(REQUESTER_COUNTS)]),
)


def values_for(param: Param) -> st.SearchStrategy[Any]:
    """Half anything at all, half values near and inside this parameter's declared range."""
    near: list[st.SearchStrategy[Any]] = []
    if param.low is not None and param.high is not None:
        numbers = st.floats(param.low / 2, param.high * 1.5)
        if param.kind is int:
            numbers = st.integers(int(param.low) - 2, int(param.high * 1.5))
        near += [numbers, numbers.map(str)]
    if param.choices:
        near += [st.sampled_from(param.choices), st.sampled_from(param.choices).map(str.upper)]
    if param.kind is bool:
        near.append(st.sampled_from([True, False, "true", "0", "yes", 1, 0]))
    if param.name == "meta_fields":
        near.append(
            st.lists(
                st.sampled_from([*REQUESTER_COUNTS, "request_text", "x", " "]), max_size=4
            ).map(",".join)
        )
    near_values = st.one_of(near) if near else param_values
    return st.booleans().flatmap(lambda anything: param_values if anything else near_values)


def assert_param_value(param: Param, value: Any) -> None:
    if param.kind is bool:
        assert isinstance(value, bool)
    else:
        assert isinstance(value, param.kind) and not isinstance(value, bool)
    if param.kind in (int, float):
        assert math.isfinite(value)
        assert param.low is None or value >= param.low
        assert param.high is None or value <= param.high
    if param.choices is not None:
        assert value in param.choices


@settings(FUZZ, max_examples=PARAM_EXAMPLES)
@given(
    pair=st.sampled_from(ALL_PARAMS).flatmap(
        lambda target: st.tuples(st.just(target[1]), values_for(target[1]))
    )
)
def test_param_parse_is_valid_or_bad_input(pair: tuple[Param, Any]) -> None:
    param, value = pair
    try:
        parsed = param.parse(value)
    except BadInput as exc:
        assert param.name in str(exc)
        OUTCOMES["Param.parse: refused"] += 1
        return
    assert_param_value(param, parsed)
    OUTCOMES["Param.parse: accepted"] += 1


@settings(FUZZ, max_examples=PARAM_EXAMPLES)
@given(
    recipe_and_params=st.sampled_from(list(RECIPES.values())).flatmap(
        lambda recipe: st.tuples(
            st.just(recipe),
            st.fixed_dictionaries(
                {},
                optional={p.name: values_for(p) for p in recipe.params},
            ),
            st.dictionaries(odd_text, param_values, max_size=1),  # unknown names
            st.booleans(),
        )
    )
)
def test_recipe_resolve_is_valid_or_bad_input(recipe_and_params: tuple) -> None:
    recipe, given_params, unknown, add_unknown = recipe_and_params
    if add_unknown:
        given_params = {**unknown, **given_params}
    try:
        resolved = recipe.resolve(given_params)
    except BadInput:
        OUTCOMES["Recipe.resolve: refused"] += 1
        return
    assert set(resolved) == {p.name for p in recipe.params}
    for param in recipe.params:
        assert_param_value(param, resolved[param.name])
    if "meta_fields" in resolved:
        fields = resolved["meta_fields"].split(",")
        assert fields and set(fields) <= set(REQUESTER_COUNTS)
    recipe.pipeline(resolved)  # builds without error
    OUTCOMES["Recipe.resolve: accepted"] += 1


# --- requests for predictions --------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One ready tfidf-meta-logreg version (uses the requester counts too), built once."""
    home = tmp_path_factory.mktemp("predict-lab")
    with pytest.MonkeyPatch.context() as mp:
        use_lab(mp.setenv, home)
        request = builds.TrainRequest(recipe="tfidf-meta-logreg", backend="local", data_path=SAMPLE)
        row, _ = builds.train(request, Registry())
        assert row.status == "ready", row.error
    yield home


@pytest.fixture
def trained(trained_home: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """This test's environment pointed at the trained registry; returns the pipeline."""
    from core.artifacts import open_store
    from core.predict import load_model

    use_lab(monkeypatch.setenv, trained_home)
    return load_model(Registry().resolve(1), open_store(str(trained_home / "artifacts")))


def assert_probabilities(values: list[float], count: int) -> None:
    assert len(values) == count
    assert all(isinstance(p, float) and 0.0 <= p <= 1.0 for p in values), values


@settings(FUZZ, max_examples=REQUEST_EXAMPLES)
@given(title=odd_text, text=odd_text)
def test_typed_request_scores_or_refuses(trained: Any, title: str, text: str) -> None:
    try:
        record = make_request(title, text)
    except BadInput as exc:
        assert str(exc)
        OUTCOMES["make_request: refused"] += 1
        return
    assert_probabilities(predict_proba(trained, [record]), 1)
    OUTCOMES["make_request: scored"] += 1


request_numbers = st.integers(0, 9).flatmap(  # one in ten is huge, NaN, infinite or null
    lambda n: (
        st.one_of(huge_numbers, st.none())
        if n == 0
        else st.one_of(st.integers(-(10**6), 2 * 10**9), st.floats(-1e9, 2e9))
    )
)


@settings(FUZZ, max_examples=REQUEST_EXAMPLES)
@given(
    items=st.booleans().flatmap(
        lambda anything: (
            json_values
            if anything
            else st.lists(
                st.fixed_dictionaries(
                    {TITLE: odd_text, TEXT: odd_text},
                    optional={
                        REQUEST_ID: st.one_of(odd_text, huge_numbers, st.uuids().map(str)),
                        **{field: request_numbers for field in REQUEST_TIME_NUMERIC},
                        "extra": json_values,
                    },
                ),
                min_size=1,
                max_size=3,
            )
        ),
    )
)
def test_request_file_items_score_or_refuse(trained: Any, items: Any) -> None:
    try:
        records = prepare_requests(items)
    except BadInput as exc:
        assert str(exc)
        OUTCOMES["prepare_requests: refused"] += 1
        return
    assert_probabilities(predict_proba(trained, records), len(records))
    OUTCOMES["prepare_requests: scored"] += 1


def test_megabyte_request_is_refused(trained: Any) -> None:
    with pytest.raises(BadInput, match="too long"):
        make_request("title", "a" * 1_000_000)
    with pytest.raises(BadInput, match="too long"):
        make_request("t" * 1_000_000, "")
    with pytest.raises(BadInput, match="type a request"):
        make_request(" \t\n\r\x0b\x0c", "\u3000 ")


def cli_predict(*args: str) -> Any:
    return run_cli("predict", "1", *args, env={"DOCKER_HOST": "unix:///nonexistent.sock"})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--title", "", "--text", ""), "type a request title or some text"),
        (("--title", "   ", "--text", "\t\n \r"), "type a request title or some text"),
        (("--text", "x" * (MAX_TEXT_CHARS + 1)), "too long"),
        ((), "give --title/--text or --file"),
    ],
    ids=["empty", "whitespace", "over-long", "nothing"],
)
def test_cli_predict_refuses_bad_text(trained: Any, args: tuple, message: str) -> None:
    done = cli_predict(*args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert message in done.stderr and "Traceback" not in done.stderr


def test_cli_predict_control_characters_score(trained: Any) -> None:
    done = cli_predict("--title", "\x1b[2J\x07bell\x7f", "--text", "tab\there\x01\x02 ok", "--json")
    assert done.returncode == 0, done.stderr
    (prediction,) = json.loads(done.stdout)["predictions"]
    assert 0.0 <= prediction["probability"] <= 1.0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'[{"request_title": "caf\xe9", "request_text_edit_aware": "x"}]', "not valid UTF-8"),
        (b"\xff\xfe[\x00]\x00", "not valid UTF-8"),
        (json.dumps([{TITLE: "t", TEXT: "a" * 1_000_000}]).encode(), "limit is 40,000"),
        (json.dumps([{TITLE: "lone \ud800", TEXT: "x"}]).encode(), "not valid Unicode"),
        (json.dumps({TITLE: "t"}).encode(), "expected a JSON list"),
        (b"[]", "non-empty JSON list"),
        (json.dumps([{TITLE: " ", TEXT: "\n"}]).encode(), "both empty"),
        (b"[" * 100_000, "nested too deeply"),
    ],
    ids=["latin1", "utf16", "megabyte", "surrogate", "object", "empty", "blank", "deep"],
)
def test_cli_predict_file_refuses_bad_files(
    trained: Any, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "requests.json"
    path.write_bytes(content)
    done = cli_predict("--file", str(path))
    assert done.returncode == 2, done.stderr
    assert message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_cli_predict_file_scores_odd_but_valid_requests(trained: Any, tmp_path: Path) -> None:
    items = [
        {TITLE: text, TEXT: "pizza please"}
        for text in ODD
        if text.strip() and "\ud800" not in text and "\udfff" not in text
    ]
    path = tmp_path / "requests.jsonl"
    path.write_text("\n".join(json.dumps(item) for item in items))
    done = cli_predict("--file", str(path))  # the table, not --json: must print anything
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("request_id"))
    table = list(itertools.takewhile(str.strip, lines[header + 2 :]))  # notes after a blank
    assert len(table) == len(items), done.stdout
    assert done.stdout.count("unknown: averaged over") == 1  # said once for all requests
    assert all(0.0 <= float(line.split()[-1]) <= 1.0 for line in table)
    versions = Registry().all_versions()
    assert len(versions) == 1  # predicting never creates a version


def teardown_module() -> None:
    print(f"\nfuzz outcomes: {json.dumps(dict(sorted(OUTCOMES.items())), indent=1)}")
