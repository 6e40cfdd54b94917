"""Hypothesis over every CLI verb's arguments and the pages' query parameters.

Whatever a person types (Unicode digits like '²', 5,000-digit numbers, NaN, empty strings,
control characters), a verb exits 0, 1 or 2 with at most a one-line `error:` and never a
traceback (ALTRUISM_DEBUG=1 turns any unexpected exception into a test failure), and a page
shows an error or its content, never an exception.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import builds
from core.cli import main
from core.registry import Registry
from tests.conftest import SAMPLE
from tests.helpers import use_lab

ROOT = Path(__file__).resolve().parent.parent
SPECIAL = [
    "²", "１", "٣", "1²", "0", "-1", "1e309", "nan", "NaN", "inf", "-inf", "", " ", "1k",
    "99999999999999999999999g", "9" * 5000, "1,2", "latest", "champion", "v1", "1.5",
    "\x00", "\u202e1", "0x10", "512m", "2g", "64m", "--", "-", "@champion", "1 ",
]  # fmt: skip
values = st.one_of(
    st.sampled_from(SPECIAL),
    st.text(max_size=20),
    st.from_regex(r"\A-?[0-9²³¹]{1,30}(\.[0-9]{1,5})?[kmgKMGb]?\Z"),
)
VERBS = {
    "show": lambda v: ["show", v],
    "promote": lambda v: ["promote", v, "--alias", "fuzz"],
    "promote-alias": lambda v: ["promote", "1", "--alias", v],
    "predict": lambda v: ["predict", v, "--title", "t", "--text", "x"],
    "predict-time": lambda v: ["predict", "1", "--title", "t", "--text", "x", "--time", v],
    "predict-meta": lambda v: [
        "predict",
        "1",
        "--title",
        "t",
        "--text",
        "x",
        "--meta",
        f"requester_account_age_in_days_at_request={v}",
    ],
    "refit": lambda v: ["refit", v, "--backend", "docker"],
    "cancel": lambda v: ["cancel", v],
    "compare": lambda v: ["compare", "1", v],
    "compare-resamples": lambda v: ["compare", "1", "1", "--resamples", v],
    "list-limit": lambda v: ["list", "--limit", v],
    "list-offset": lambda v: ["list", "--offset", v],
    "list-status": lambda v: ["list", "--status", v],
    "list-alias": lambda v: ["list", "--alias", v],
    "train-memory": lambda v: ["train", "--recipe", "nb-bow", "--memory", v],
    "train-seed": lambda v: ["train", "--recipe", "nb-bow", "--seed", v],
    "train-threshold": lambda v: ["train", "--recipe", "nb-bow", "--threshold", v],
    "train-test-size": lambda v: ["train", "--recipe", "nb-bow", "--test-size", v],
    "train-timeout": lambda v: ["train", "--recipe", "nb-bow", "--timeout", v],
    "train-cpus": lambda v: ["train", "--recipe", "nb-bow", "--cpus", v],
    "train-param": lambda v: ["train", "--recipe", "nb-bow", "--param", f"alpha={v}"],
    "train-recipe": lambda v: ["train", "--recipe", v],
    "train-data": lambda v: ["train", "--recipe", "nb-bow", "--data", v],
    "evaluate": lambda v: ["evaluate", v, "--data", str(SAMPLE)],
    "reproduce": lambda v: ["reproduce", v, "--quiet"],
    "export": lambda v: ["export", v, "-o", "/nonexistent-dir/x.zip"],
    "import": lambda v: ["import", v],
    "sample-rows": lambda v: ["sample", "--rows", v, "-o", "/nonexistent-dir/s.json"],
    "run-build": lambda v: ["run-build", v, "--quiet"],
    "model": lambda v: ["list", "--model", v],
}


@pytest.fixture(scope="module")
def one_version(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A registry holding one ready version (v1), shared by every example."""
    home = tmp_path_factory.mktemp("fuzz-args")
    with pytest.MonkeyPatch.context() as mp:
        use_lab(mp.setenv, home)
        row, _ = builds.train(
            builds.TrainRequest(recipe="nb-bow", backend="local", data_path=SAMPLE), Registry()
        )
        assert row.status == "ready", row.error
    yield home


@pytest.fixture
def fuzz_env(one_version: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    use_lab(monkeypatch.setenv, one_version)
    monkeypatch.setenv("ALTRUISM_DEBUG", "1")  # unexpected exceptions propagate: a failure
    # no engine: a valid `train` stops at "no Docker Engine" instead of training
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/altruism-lab-nonexistent.sock")
    return one_version


def run_main(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue()


@pytest.mark.slow
@pytest.mark.parametrize("verb", sorted(VERBS))
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(value=values)
def test_cli_arguments_exit_cleanly(fuzz_env: Path, verb: str, value: str) -> None:
    argv = VERBS[verb](value)
    if verb.startswith("train"):
        argv += ["--backend", "docker", "--quiet"]
    code, err = run_main(argv)
    assert code in (0, 1, 2), (argv, code, err)
    assert "Traceback" not in err
    if code:
        lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
        assert len(lines) == 1, (argv, err)


PAGES = {"pages/2_Versions.py": "v", "pages/3_Compare.py": "v"}
query_values = st.one_of(
    values,
    st.lists(values, min_size=1, max_size=5).map(",".join),
)


@pytest.mark.slow
@pytest.mark.parametrize("page", sorted(PAGES))
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(value=query_values)
def test_page_query_parameters_never_raise(fuzz_env: Path, page: str, value: str) -> None:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / page), default_timeout=60)
    at.query_params[PAGES[page]] = value
    at.run()
    assert not at.exception, (value, [e.message for e in at.exception])
