"""Team recipes: files and notebooks in RECIPE_DIR, built and versioned like the built-ins.

The Docker test builds a recipe file in the network-less trainer container; the notebook and
bad-recipe tests use the local builder (the same worker, and the same job carrying the source).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import pytest

from core import builds
from core.artifacts import open_store
from core.errors import BadInput
from core.predict import load_model, make_request, predict_proba
from core.registry import Registry
from core.schema import FAILED, READY
from tests.helpers import ROOT, render_page, run_cli

RECIPE = '''"""Word counts plus request length + logistic regression (a test recipe)."""

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from core.recipes import Param

PARAMS = {"C": Param("C", float, 1.0, "inverse regularisation", 1e-3, 1e3), "min_df": 2}


class Length(BaseEstimator, TransformerMixin):
    def fit(self, texts, labels=None):
        return self

    def transform(self, texts):
        return np.array([[len(str(t)) / 1000.0] for t in texts])


def pipeline(params):
    features = ColumnTransformer(
        [("text", CountVectorizer(min_df=params["min_df"]), "text"), ("len", Length(), "text")]
    )
    return Pipeline([("features", features), ("classifier", LogisticRegression(C=params["C"]))])
'''

TITLE, TEXT = "Broke student", "Payday is Friday, I will pay it forward. Thank you!"


@pytest.fixture
def recipe_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "recipes"
    folder.mkdir()
    monkeypatch.setenv("RECIPE_DIR", str(folder))
    return folder


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def train(registry: Registry, recipe: str, backend: str = "local", **params):
    request = builds.TrainRequest(recipe=recipe, params=params, backend=backend)
    return builds.train(request, registry)


def predicts(row) -> float:
    record = make_request(TITLE, TEXT)
    return float(predict_proba(load_model(row), [record])[0])


def versions(registry: Registry) -> list:
    return registry.version_summaries("raop", include_archived=True)


# --- the contract --------------------------------------------------------------------------
@pytest.mark.docker
def test_file_recipe_in_docker_edit_reuse_and_reproduce_after_delete(
    recipe_dir: Path, registry: Registry
) -> None:
    path = recipe_dir / "team-words.py"
    path.write_text(RECIPE)
    first, submission = train(registry, "team-words", backend="docker")
    assert submission.builder == "docker" and first.status == READY, first.error
    recorded = first.provenance["recipe_file"]
    assert recorded["sha256"] == sha256(RECIPE) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert recorded["source"] == RECIPE and recorded["kind"] == "file"
    assert first.provenance["docker"]["image_id"].startswith("sha256:")
    assert first.provenance["docker"]["container_exit_code"] == 0

    again, submission = train(registry, "team-words", backend="docker")
    assert submission.reused and again.id == first.id  # unchanged file: reused

    path.write_text(RECIPE.replace("len(str(t)) / 1000.0", "len(str(t)) / 500.0"))
    edited, submission = train(registry, "team-words", backend="docker")
    assert not submission.reused and edited.id != first.id and edited.status == READY
    assert edited.provenance["recipe_file"]["sha256"] != recorded["sha256"]

    path.unlink()  # the file is gone: the recorded source still reproduces and loads
    result = builds.reproduce(registry.get_by_id(first.id), registry)
    assert result["identical"], result
    assert 0.0 < predicts(registry.get_by_id(first.id)) < 1.0


def notebook(tagged: list[str], untagged: list[str]) -> str:
    import nbformat

    nb = nbformat.v4.new_notebook()
    for code in untagged:
        cell = nbformat.v4.new_code_cell(code)
        cell.outputs = [nbformat.v4.new_output("stream", text="exploration output\n")]
        nb.cells.append(cell)
    for code in tagged:
        nb.cells.append(nbformat.v4.new_code_cell(code, metadata={"tags": ["recipe"]}))
    nb.cells.append(nbformat.v4.new_markdown_cell("Notes", metadata={"tags": ["recipe"]}))
    return nbformat.writes(nb)


def test_notebook_recipe_tagged_cells_edit_reuse_and_reproduce_after_delete(
    recipe_dir: Path, registry: Registry
) -> None:
    head, tail = RECIPE.split("class Length")
    cells = [head, "class Length" + tail]
    path = recipe_dir / "nb-words.ipynb"
    path.write_text(notebook(cells, ["print('exploring')"]))
    first, _ = train(registry, "nb-words")
    assert first.status == READY, first.error
    recorded = first.provenance["recipe_file"]
    expected = "\n\n".join(c.rstrip("\n") for c in cells) + "\n"
    assert recorded["kind"] == "notebook" and recorded["source"] == expected
    assert recorded["sha256"] == sha256(expected)
    assert "exploring" not in recorded["source"] and "output" not in recorded["source"]

    # outputs and untagged cells are not the recipe: still the same build
    path.write_text(notebook(cells, ["print('something else')", "1 + 1"]))
    same, submission = train(registry, "nb-words")
    assert submission.reused and same.id == first.id

    path.write_text(notebook([cells[0].replace('"min_df": 2', '"min_df": 3'), cells[1]], []))
    edited, submission = train(registry, "nb-words")
    assert not submission.reused and edited.params["min_df"] == 3

    path.unlink()
    result = builds.reproduce(registry.get_by_id(first.id), registry)
    assert result["identical"], result
    refit = builds.submit_refit(registry.get_by_id(first.id), registry, backend="local")
    refitted = builds.run_submission(refit, registry, open_store())
    assert refitted.status == READY, refitted.error
    assert refitted.provenance["recipe_file"]["sha256"] == recorded["sha256"]
    # a fresh process, the file gone: the pickled custom class loads from the recorded source
    done = run_cli("predict", str(first.version), "--title", TITLE, "--text", TEXT, "--json")
    assert done.returncode == 0, done.stderr
    assert 0.0 < json.loads(done.stdout)["predictions"][0]["probability"] < 1.0


def test_example_recipe_builds_and_lists_as_team(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RECIPE_DIR", raising=False)  # the checkout's recipes/
    row, _ = train(registry, "sgd-words")
    assert row.status == READY, row.error
    source = (ROOT / "recipes" / "sgd-words.py").read_text()
    assert row.provenance["recipe_file"]["sha256"] == sha256(source)
    assert 0.0 < predicts(row) < 1.0
    assert type(load_model(row).steps[0][1].transformers_[1][1]).__name__ == "CueCounts"
    from core.modelcard import model_card, model_card_markdown

    card = model_card(row, registry)
    assert card["recipe_file"]["source"] == source
    assert sha256(source) in model_card_markdown(card) and "class CueCounts" in str(card)
    done = run_cli("recipes", "--json")
    kinds = {r["name"]: r["kind"] for r in json.loads(done.stdout)}
    assert kinds["sgd-words"] == "team" and kinds["nb-bow"] == "built-in"


# --- bad recipes ---------------------------------------------------------------------------
BAD = {
    "syntax": (RECIPE.replace("def pipeline(params):", "def pipeline(params)"), "line 23"),
    "no-pipeline": (RECIPE.replace("def pipeline(params):", "def make(params):"), "pipeline"),
    "no-proba": (
        RECIPE.replace(
            'LogisticRegression(C=params["C"])',
            '__import__("sklearn.svm").svm.LinearSVC(C=params["C"])',
        ),
        "no predict_proba",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_recipe_is_refused_before_anything_is_queued(
    case: str, recipe_dir: Path, registry: Registry
) -> None:
    source, expected = BAD[case]
    path = recipe_dir / f"bad-{case}.py"
    path.write_text(source)
    (recipe_dir / "good.py").write_text(RECIPE)
    done = run_cli("train", "--recipe", f"bad-{case}", "--backend", "local", "--json")
    assert done.returncode == 2, done.stderr
    assert str(path) in done.stderr and expected in done.stderr
    assert "Traceback" not in done.stderr
    assert versions(registry) == []
    listed = {r["name"]: r for r in json.loads(run_cli("recipes", "--json").stdout)}
    assert expected in listed[f"bad-{case}"]["error"]  # listed with why, not fatal
    assert listed["good"]["kind"] == "team" and "error" not in listed["good"]


@pytest.mark.parametrize(
    ("param", "expected"),
    [("nope=1", "has no parameter 'nope'"), ("C=abc", "expected float"), ("C=1e9", "range")],
)
def test_params_not_matching_PARAMS_exit_2(
    param: str, expected: str, recipe_dir: Path, registry: Registry
) -> None:
    (recipe_dir / "good.py").write_text(RECIPE)
    done = run_cli("train", "--recipe", "good", "--param", param, "--backend", "local")
    assert done.returncode == 2 and expected in done.stderr, done.stderr
    assert versions(registry) == []


def test_exception_during_fit_fails_the_version_naming_file_and_line(
    recipe_dir: Path, registry: Registry
) -> None:
    path = recipe_dir / "boom.py"
    path.write_text(
        RECIPE.replace(
            "    def fit(self, texts, labels=None):\n        return self",
            "    def fit(self, texts, labels=None):\n        raise ValueError('no lengths today')",
        )
    )
    row, _ = train(registry, "boom")
    assert row.status == FAILED
    assert f"recipe {path}, line 17: ValueError: no lengths today" in row.error
    assert "Traceback" not in row.error


def test_recipe_requirements_are_checked_and_key_the_image(recipe_dir: Path) -> None:
    from core.builders.docker import requirements_context, requirements_key
    from core.recipe_files import team_recipe

    (recipe_dir / "needs.py").write_text(RECIPE + '\nrequirements = ["tqdm==4.67.1"]\n')
    assert team_recipe("needs").requirements == ("tqdm==4.67.1",)
    key = requirements_key("sha256:" + "a" * 64, ["b==1", "a==2"])
    assert key == requirements_key("sha256:" + "a" * 64, ["a==2", "b==1", "a==2"])
    assert key != requirements_key("sha256:" + "a" * 64, ["a==3", "b==1"])
    import io
    import tarfile

    with tarfile.open(
        fileobj=requirements_context("sha256:x", ["b==1", "a==2"], io.BytesIO())
    ) as tar:
        assert tar.extractfile("recipe-requirements.txt").read() == b"a==2\nb==1\n"
    for bad in ("--index-url=http://evil", "pkg @ https://x", "a==1; rm -rf /"):
        (recipe_dir / "evil.py").write_text(RECIPE + f"\nrequirements = [{bad!r}]\n")
        with pytest.raises(BadInput, match="not a plain specifier"):
            team_recipe("evil")


def test_export_and_import_carry_the_source(
    recipe_dir: Path, registry: Registry, tmp_path: Path
) -> None:
    (recipe_dir / "good.py").write_text(RECIPE)
    row, _ = train(registry, "good")
    archive = tmp_path / "good.zip"
    done = run_cli("export", str(row.version), "-o", str(archive))
    assert done.returncode == 0, done.stderr
    (recipe_dir / "good.py").unlink()
    other = tmp_path / "other"
    env = {
        "REGISTRY_URL": f"sqlite:///{other / 'registry.db'}",
        "ARTIFACT_ROOT": str(other / "artifacts"),
    }
    done = run_cli("import", str(archive), "--json", env=env)
    assert done.returncode == 0, done.stderr
    done = run_cli("show", "latest", "--json", env=env)
    recorded = json.loads(done.stdout)["provenance"]["recipe_file"]
    assert recorded["sha256"] == sha256(RECIPE) and recorded["source"] == RECIPE
    done = run_cli("predict", "latest", "--title", TITLE, "--text", TEXT, "--json", env=env)
    assert done.returncode == 0, done.stderr


def test_dashboard_lists_team_recipes_shows_source_and_diff(
    recipe_dir: Path, registry: Registry
) -> None:
    (recipe_dir / "good.py").write_text(RECIPE)
    (recipe_dir / "broken.py").write_text(BAD["syntax"][0])
    at = render_page("pages/1_Build.py")
    recipe = next(w for w in at.selectbox if w.label == "Recipe")
    assert "good" in recipe.options[-1] and "team" in recipe.options[-1]
    assert "broken" not in " ".join(recipe.options)
    warnings = " ".join(w.value for w in at.warning)
    assert "broken" in warnings and "line 23" in warnings and "Traceback" not in warnings

    first, _ = train(registry, "good")
    (recipe_dir / "good.py").write_text(RECIPE.replace("/ 1000.0", "/ 10.0"))
    second, _ = train(registry, "good")
    at = render_page("pages/2_Versions.py", v=str(first.version), tab="Provenance")
    assert any(c.value.strip() == RECIPE.strip() for c in at.code)
    at = render_page("pages/3_Compare.py", v=f"{first.version},{second.version}")
    diffs = [c.value for c in at.code if c.language == "diff"]
    assert diffs and "-        return np.array([[len(str(t)) / 1000.0]" in diffs[0]
    assert "+        return np.array([[len(str(t)) / 10.0]" in diffs[0]


@pytest.mark.docker
def test_recipe_requirements_build_one_image_reused_until_they_change(
    recipe_dir: Path, registry: Registry
) -> None:
    import docker

    pin = next(
        line.strip()
        for line in (ROOT / "requirements-trainer.txt").read_text().splitlines()
        if line.startswith("joblib==")
    )  # already in the trainer: pip needs nothing from the index
    path = recipe_dir / "needs.py"
    path.write_text(RECIPE + f"\nrequirements = [{pin!r}]\n")
    first, _ = train(registry, "needs", backend="docker")
    image_id = first.provenance["docker"]["image_id"]
    try:
        assert first.status == READY, first.error
        assert first.provenance["recipe_file"]["requirements"] == [pin]
        assert first.provenance["docker"]["recipe_requirements"] == pin
        path.write_text(RECIPE.replace("1000.0", "999.0") + f"\nrequirements = [{pin!r}]\n")
        second, _ = train(registry, "needs", backend="docker")
        assert second.status == READY and second.id != first.id
        assert second.provenance["docker"]["image_id"] == image_id  # same requirements
        assert second.provenance["docker"]["image_reused"] is True
    finally:
        with contextlib.suppress(Exception):
            docker.from_env().images.remove(image_id, force=True)
