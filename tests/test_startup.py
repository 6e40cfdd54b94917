"""Each verb imports what it needs: `--help`, `list` and `show` never load the ML stack.

Run in a fresh interpreter per verb, so `sys.modules` shows exactly what the verb imported.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from core.registry import Registry
from tests.helpers import ROOT
from tests.test_registry import add_version

HEAVY = ("sklearn", "pandas", "scipy", "altair", "numpy", "joblib", "docker", "streamlit")
PROBE = """
import contextlib, io, json, sys
from core.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def imported_by(*argv: str) -> tuple[int, set[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return out["code"], set(out["modules"])


@pytest.mark.parametrize(
    "argv",
    [
        ("--help",),
        ("list",),
        ("list", "--json"),
        ("list", "--full", "--json"),
        ("show", "1", "--json"),
        ("history", "champion", "--json"),
    ],
)
def test_quick_verbs_do_not_import_the_ml_stack(registry: Registry, argv: tuple[str, ...]) -> None:
    add_version(registry)
    code, modules = imported_by(*argv)
    assert code == 0
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


def test_a_build_parent_leaves_sklearn_to_its_worker_and_predict_loads_it(
    registry: Registry,
) -> None:
    """`train` checks the request and the data without the ML stack (the worker process
    imports it); `predict` unpickles a pipeline, so the same probe sees sklearn there."""
    code, modules = imported_by("train", "--recipe", "nb-bow", "--backend", "local", "--quiet")
    assert code == 0
    assert not modules & {"sklearn", "scipy", "pandas", "altair"}, modules & set(HEAVY)
    code, modules = imported_by("predict", "latest", "--title", "Hungry", "--text", "Pizza?")
    assert code == 0 and "sklearn" in modules
