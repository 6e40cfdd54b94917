"""Team recipes: `NAME.py` or `NAME.ipynb` files in `RECIPE_DIR` (default: `recipes/`).

A recipe file defines `PARAMS` (a dict of defaults, or `Param` declarations) and
`pipeline(params)`, which returns an unfitted scikit-learn estimator with `predict_proba`
over the model-input frame (`core.features.to_frame`). A notebook's cells tagged `recipe`
define the same names. It may also list extra `requirements` (pip specifiers) for the Docker
trainer image.

The source (a notebook's tagged cells, joined) and its sha256 are recorded on the version and
travel to the worker inside the job, so no builder needs the file, and `reproduce` and model
loading keep working after it changed or was deleted. The source is loaded as the module
`altruism_recipe_<sha256[:16]>`, so classes it defines pickle under a name that the recorded
source can always provide again (`register_for_loading`).
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from core.config import PROJECT_ROOT
from core.errors import BadInput
from core.recipes import Param, Recipe

RECIPE_DIR_ENV = "RECIPE_DIR"
MODULE_PREFIX = "altruism_recipe_"
SUFFIXES = {".py": "file", ".ipynb": "notebook"}
NOTEBOOK_TAG = "recipe"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_SOURCE_CHARS = 1 << 20
# A pip requirement specifier: a name, extras, version clauses. No options, paths or URLs.
REQUIREMENT = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,-]+\])?([<>=!~]=?[A-Za-z0-9.*+!,<>=~-]+)?$"
)
MAX_REQUIREMENTS = 20
PARAM_KINDS = (bool, int, float, str)


@dataclass(frozen=True)
class RecipeSource:
    """One team recipe's code as read (or as recorded on a version)."""

    name: str
    kind: str  # "file" or "notebook"
    path: str  # where it was read from (only a label once recorded)
    source: str
    sha256: str

    @property
    def module_name(self) -> str:
        return f"{MODULE_PREFIX}{self.sha256[:16]}"

    @property
    def filename(self) -> str:
        """The name its code is compiled under (tracebacks and errors quote it)."""
        return self.path if self.kind == "file" else f"{self.path} (cells tagged recipe)"

    def record(self, requirements: list[str] | None = None) -> dict[str, Any]:
        """What a version records (provenance `recipe_file`) and its job carries."""
        return {
            "name": self.name,
            "kind": self.kind,
            "path": self.path,
            "sha256": self.sha256,
            "requirements": list(requirements or []),
            "source": self.source,
        }


def from_record(record: Any) -> RecipeSource:
    """A recorded source, checked: its text must hash to its recorded sha256."""
    if not isinstance(record, dict):
        raise BadInput("the recorded recipe source is not a record")
    fields = {k: record.get(k) for k in ("name", "kind", "path", "source", "sha256")}
    if not all(isinstance(v, str) for v in fields.values()) or fields["kind"] not in (
        "file",
        "notebook",
    ):
        raise BadInput("the recorded recipe source is incomplete")
    if _sha256(fields["source"]) != fields["sha256"]:
        raise BadInput(
            f"the recorded source of recipe {fields['name']!r} does not match its sha256"
        )
    return RecipeSource(**fields)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def recipe_dir() -> Path:
    """Where team recipes live: `RECIPE_DIR`, else `recipes/` at the top of the checkout."""
    configured = os.environ.get(RECIPE_DIR_ENV)
    return Path(configured).expanduser() if configured else PROJECT_ROOT / "recipes"


def recipe_paths() -> dict[str, Path]:
    """Every team recipe file by name (a `.py` wins over an `.ipynb` of the same stem)."""
    folder = recipe_dir()
    if not folder.is_dir():
        return {}
    found: dict[str, Path] = {}
    for suffix in SUFFIXES:
        for path in sorted(folder.glob(f"*{suffix}")):
            if path.is_file() and NAME.match(path.stem) and not path.stem.startswith("_"):
                found.setdefault(path.stem, path)
    return dict(sorted(found.items()))


def read_source(path: Path) -> RecipeSource:
    """The code of a recipe file (a notebook: its cells tagged `recipe`, joined)."""
    kind = SUFFIXES.get(path.suffix)
    if kind is None:
        raise BadInput(f"recipe {path}: only .py and .ipynb files are recipes")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"recipe {path} cannot be read ({type(exc).__name__})") from None
    if kind == "notebook":
        text = notebook_code(path, text)
    if len(text) > MAX_SOURCE_CHARS:
        raise BadInput(f"recipe {path} is larger than {MAX_SOURCE_CHARS:,} characters")
    return RecipeSource(path.stem, kind, str(path.resolve()), text, _sha256(text))


def notebook_code(path: Path, text: str) -> str:
    """The source of the notebook's code cells tagged `recipe` (never their outputs)."""
    import nbformat

    try:
        notebook = nbformat.reads(text, as_version=4)
    except Exception as exc:  # nbformat raises several kinds for a broken notebook
        raise BadInput(f"recipe {path} is not a readable notebook ({exc})") from None
    cells = [
        cell.source
        for cell in notebook.cells
        if cell.cell_type == "code" and NOTEBOOK_TAG in cell.get("metadata", {}).get("tags", [])
    ]
    if not cells:
        raise BadInput(f"recipe {path}: no code cell is tagged '{NOTEBOOK_TAG}'")
    return "\n\n".join(cell.rstrip("\n") for cell in cells) + "\n"


# --- loading -------------------------------------------------------------------------------
class _SourceLoader(importlib.abc.SourceLoader):
    """Loads a recipe module from its text (no file needed; tracebacks still show lines)."""

    def __init__(self, recipe: RecipeSource) -> None:
        self.recipe = recipe

    def get_filename(self, fullname: str) -> str:
        return self.recipe.filename

    def get_data(self, path: str) -> bytes:
        return self.recipe.source.encode("utf-8")


def load_module(recipe: RecipeSource) -> ModuleType:
    """The recipe's module, registered as `altruism_recipe_<sha256[:16]>`; BadInput naming
    the file and line when its code does not run."""
    module = sys.modules.get(recipe.module_name)
    if module is not None:
        return module
    loader = _SourceLoader(recipe)
    spec = importlib.util.spec_from_loader(recipe.module_name, loader, origin=recipe.filename)
    module = importlib.util.module_from_spec(spec)
    sys.modules[recipe.module_name] = module
    try:
        loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(recipe.module_name, None)
        raise BadInput(
            f"recipe {recipe.filename}, line {exc.lineno}: syntax error: {exc.msg}"
        ) from None
    except (Exception, SystemExit) as exc:  # a recipe calling exit() is broken too
        sys.modules.pop(recipe.module_name, None)
        raise BadInput(f"recipe {recipe.filename}: {blame(exc, recipe)}") from None
    return module


def blame(exc: BaseException, recipe: RecipeSource | None = None) -> str:
    """`line N: Type: message`, N the deepest line of recipe code in the traceback (of
    `recipe`, or of any loaded recipe; with the file named then); else `Type: message`."""
    what = f"{type(exc).__name__}: {exc}"
    frame = _deepest_recipe_frame(exc.__traceback__, recipe) or _remote_frame(exc, recipe)
    if frame is None:
        return what
    filename, line = frame
    return f"line {line}: {what}" if recipe else f"recipe {filename}, line {line}: {what}"


def _deepest_recipe_frame(
    tb: TracebackType | None, recipe: RecipeSource | None
) -> tuple[str, int] | None:
    found = None
    while tb is not None:
        code = tb.tb_frame.f_code
        module = tb.tb_frame.f_globals.get("__name__", "")
        mine = code.co_filename == recipe.filename if recipe else module.startswith(MODULE_PREFIX)
        if mine:
            found = (code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


REMOTE_FRAME = re.compile(r'File "(.+?)", line (\d+)')


def _remote_frame(exc: BaseException, recipe: RecipeSource | None) -> tuple[str, int] | None:
    """The deepest recipe line in the text of a traceback raised in another process (a
    forked fold's, which concurrent.futures attaches as the exception's cause)."""
    known = {recipe.filename} if recipe else _loaded_filenames()
    cause, found = exc.__cause__, None
    for _ in range(5):
        if cause is None:
            break
        for filename, line in REMOTE_FRAME.findall(str(getattr(cause, "tb", cause))):
            if filename in known:
                found = (filename, int(line))
        cause = cause.__cause__
    return found


def _loaded_filenames() -> set[str]:
    return {
        module.__spec__.origin
        for name, module in list(sys.modules.items())
        if name.startswith(MODULE_PREFIX) and getattr(module, "__spec__", None)
    }


# --- recipes -------------------------------------------------------------------------------
_PINNED: dict[str, RecipeSource] = {}  # the worker's recorded sources, by recipe name
_BUILT: dict[str, Recipe] = {}  # by sha256


def pin(record: Any) -> RecipeSource:
    """Use this recorded source for its recipe name in this process (the worker)."""
    recipe = from_record(record)
    _PINNED[recipe.name] = recipe
    return recipe


def source_of(name: str) -> RecipeSource:
    """The current source of team recipe `name` (pinned, else read from its file)."""
    if name in _PINNED:
        return _PINNED[name]
    path = recipe_paths().get(name)
    if path is None:
        raise KeyError(name)
    return read_source(path)


def team_recipe(name: str) -> Recipe:
    """Team recipe `name` as a Recipe; KeyError when there is no such file."""
    return recipe_of(source_of(name))


def recipe_of(source: RecipeSource) -> Recipe:
    """The Recipe a source defines; BadInput naming the file when it breaks the contract."""
    if source.sha256 in _BUILT:
        return _BUILT[source.sha256]
    module = load_module(source)
    build = getattr(module, "pipeline", None)
    if not callable(build):
        raise BadInput(f"recipe {source.filename}: defines no function pipeline(params)")
    doc = " ".join((module.__doc__ or "").strip().split("\n\n")[0].split())
    recipe = Recipe(
        source.name,
        doc or f"team recipe ({Path(source.path).name})",
        declared_params(source, module),
        _checked(source, build),
        linear=False,
        source=source,
        requirements=declared_requirements(source, module),
    )
    _BUILT[source.sha256] = recipe
    return recipe


def declared_params(source: RecipeSource, module: ModuleType) -> tuple[Param, ...]:
    """`PARAMS` as Param declarations (a plain default's type is the parameter's type)."""
    declared = getattr(module, "PARAMS", {})
    if not isinstance(declared, dict):
        raise BadInput(f"recipe {source.filename}: PARAMS must be a dict")
    params = []
    for key, value in declared.items():
        where = f"recipe {source.filename}: PARAMS[{key!r}]"
        if not isinstance(key, str) or not key.isidentifier():
            raise BadInput(f"{where}: parameter names must be identifiers")
        if isinstance(value, Param):
            if value.name != key:
                raise BadInput(f"{where} is declared as Param {value.name!r}")
            param = value
        elif isinstance(value, PARAM_KINDS):
            param = Param(key, type(value), value, "")
        else:
            raise BadInput(f"{where}: a default must be a bool, int, float, str or a Param")
        try:
            param.parse(param.default)
        except BadInput as exc:
            raise BadInput(f"{where}: its default is invalid ({exc})") from None
        params.append(param)
    return tuple(params)


def declared_requirements(source: RecipeSource, module: ModuleType) -> tuple[str, ...]:
    """The recipe's extra pip requirements (`requirements`), each a plain specifier."""
    declared = getattr(module, "requirements", [])
    if not isinstance(declared, list | tuple) or len(declared) > MAX_REQUIREMENTS:
        raise BadInput(
            f"recipe {source.filename}: requirements must be a list of at most "
            f"{MAX_REQUIREMENTS} pip specifiers"
        )
    for item in declared:
        if not isinstance(item, str) or len(item) > 200 or not REQUIREMENT.match(item):
            raise BadInput(
                f"recipe {source.filename}: requirement {str(item)[:80]!r} is not a plain "
                "specifier such as 'package==1.2' (no options, paths or URLs)"
            )
    return tuple(sorted(set(declared)))


def _checked(source: RecipeSource, build: Any) -> Any:
    def pipeline(params: dict[str, Any]) -> Any:
        try:
            estimator = build(dict(params))
        except (Exception, SystemExit) as exc:
            raise BadInput(
                f"recipe {source.filename}: pipeline(params) failed at {blame(exc, source)}"
            ) from None
        missing = [m for m in ("fit", "predict_proba") if not hasattr(estimator, m)]
        if missing:
            raise BadInput(
                f"recipe {source.filename}: pipeline(params) returned "
                f"{type(estimator).__name__}, which has no {' or '.join(missing)}"
            )
        return estimator

    return pipeline


def listing() -> list[dict[str, Any]]:
    """Every team recipe file: its Recipe, or why it cannot be used (never raises)."""
    from core.recipes import RECIPES

    out = []
    for name, path in recipe_paths().items():
        entry: dict[str, Any] = {"name": name, "path": str(path), "recipe": None, "error": None}
        if name in RECIPES:
            entry["error"] = f"{path.name} has the name of a built-in recipe and is ignored"
        else:
            try:
                recipe = recipe_of(read_source(path))
                recipe.pipeline(recipe.resolve({}))  # with its defaults: predict_proba?
                entry["recipe"] = recipe
            except BadInput as exc:
                entry["error"] = str(exc)
        out.append(entry)
    return out


def register_for_loading(record: Any) -> None:
    """Make a version's recorded recipe module importable before its artifact is unpickled
    (call only for an artifact that passed the registry's sha256 check)."""
    if record:
        load_module(from_record(record))


def resolve_request(
    name: str, params: dict[str, Any] | None, recorded: dict[str, Any] | None = None
) -> tuple[Recipe, dict[str, Any], dict[str, Any] | None]:
    """The recipe of a train request, its resolved parameters and, for a team recipe, the
    source record to keep on the version (`recorded`: a version's, e.g. for a refit).
    A team recipe's estimator is built (not fitted) for the parameters: every error that
    can be known before training is a BadInput here."""
    from core.recipes import get_recipe

    recipe = recipe_of(from_record(recorded)) if recorded else get_recipe(name)
    resolved = recipe.resolve(params)
    if recipe.source is None:
        return recipe, resolved, None
    recipe.pipeline(resolved)
    return recipe, resolved, recipe.source.record(list(recipe.requirements))


def source_diffs(rows: list[Any]) -> list[dict[str, Any]]:
    """Unified diffs of the recipe sources of versions that differ from the first (the
    baseline), for versions where either is a team recipe."""
    import difflib

    def recorded(row: Any) -> dict[str, Any]:
        return (row.provenance or {}).get("recipe_file") or {}

    first, out = rows[0], []
    for other in rows[1:]:
        a, b = recorded(first), recorded(other)
        if (a or b) and a.get("sha256") != b.get("sha256"):
            lines = difflib.unified_diff(
                (a.get("source") or "").splitlines(keepends=True),
                (b.get("source") or "").splitlines(keepends=True),
                fromfile=f"v{first.version} {first.recipe}",
                tofile=f"v{other.version} {other.recipe}",
            )
            out.append({"first": first.version, "second": other.version, "diff": "".join(lines)})
    return out
