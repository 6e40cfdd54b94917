"""Named candidate models: sklearn Pipelines with typed, range-checked parameters.

Each parameter is declared once (type, default, range, help); the CLI and the dashboard form
are generated from these declarations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.dataset import REQUEST_TIME_NUMERIC, REQUESTER_COUNTS, refuse_leaky
from core.errors import BadInput
from core.features import CYCLES, TEXT_COLUMN, TEXT_LENGTH

if TYPE_CHECKING:  # sklearn is imported when a pipeline is built: checking a request's
    from sklearn.compose import ColumnTransformer  # parameters (the parent of every
    from sklearn.feature_extraction.text import TfidfVectorizer  # build) needs none of it
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

LETTERS_ONLY = r"(?u)\b[^\W\d_]{2,}\b"


@dataclass(frozen=True)
class Param:
    """One recipe parameter: its type, default and valid range or choices."""

    name: str
    kind: type  # int, float, bool or str
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    log_scale: bool = False
    many: tuple[str, ...] | None = None  # a comma-separated subset of these (a multiselect)

    def parse(self, value: Any) -> Any:
        """Coerce and check one value (strings from the CLI allowed); raise BadInput."""
        value = self._coerce(value)
        if self.choices is not None and value not in self.choices:
            raise BadInput(
                f"parameter '{self.name}': {value!r} is not one of "
                f"{', '.join(map(str, self.choices))}"
            )
        too_low = self.low is not None and value < self.low
        if too_low or (self.high is not None and value > self.high):
            raise BadInput(
                f"parameter '{self.name}': {value!r} is outside the valid range "
                f"[{self.low}, {self.high}]"
            )
        return value

    def _coerce(self, value: Any) -> Any:
        wrong = BadInput(f"parameter '{self.name}': expected {self.kind.__name__}, got {value!r}")
        if self.kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in {"true", "false", "1", "0"}:
                return value.lower() in {"true", "1"}
            raise wrong
        if isinstance(value, bool):
            raise wrong
        if self.kind is str:
            if not isinstance(value, str):
                raise wrong
            return value
        try:
            if self.kind is int:
                if isinstance(value, float) and not value.is_integer():
                    raise wrong
                return int(value)
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise wrong from None
        if number != number or number in (float("inf"), float("-inf")):
            raise wrong
        return number

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.kind.__name__,
            "default": self.default,
            "low": self.low,
            "high": self.high,
            "choices": self.choices,
            "many": self.many,
            "help": self.help,
        }


@dataclass(frozen=True)
class Recipe:
    """A named way to build a candidate model from resolved parameters."""

    name: str
    summary: str
    params: tuple[Param, ...]
    build: Callable[[dict[str, Any]], Pipeline]
    input_fields: tuple[str, ...] = field(default=())
    linear: bool = True
    source: Any = None  # a team recipe's RecipeSource (core.recipe_files); None: built in
    requirements: tuple[str, ...] = ()  # a team recipe's extra pip requirements

    @property
    def origin(self) -> str:
        """'built-in' (core/recipes.py) or 'team' (a file in RECIPE_DIR)."""
        return "built-in" if self.source is None else "team"

    def param(self, name: str) -> Param:
        for param in self.params:
            if param.name == name:
                return param
        known = ", ".join(p.name for p in self.params)
        raise BadInput(f"recipe '{self.name}' has no parameter '{name}' (known: {known})")

    def resolve(self, given: dict[str, Any] | None = None) -> dict[str, Any]:
        """Defaults overlaid with `given`, every value checked; raise BadInput first."""
        given = dict(given or {})
        for name in given:
            self.param(name)
        resolved = {p.name: p.parse(given.get(p.name, p.default)) for p in self.params}
        if "meta_fields" in resolved:
            resolved["meta_fields"] = _meta_fields(resolved["meta_fields"])
        return resolved

    def pipeline(self, params: dict[str, Any]) -> Pipeline:
        """The unfitted sklearn Pipeline for already-resolved parameters."""
        return self.build(params)


def _meta_fields(value: str) -> str:
    fields = [f.strip() for f in value.split(",") if f.strip()]
    if not fields:
        raise BadInput("parameter 'meta_fields': name at least one request-time field")
    refuse_leaky(fields, "parameter 'meta_fields'")
    allowed = set(REQUESTER_COUNTS)
    unknown = [f for f in fields if f not in allowed]
    if unknown:
        raise BadInput(
            f"parameter 'meta_fields': unknown field '{unknown[0]}'; "
            f"choose from {', '.join(REQUESTER_COUNTS)}"
        )
    return ",".join(fields)


# --- shared parameter declarations -------------------------------------------------------
MIN_DF = Param("min_df", int, 2, "ignore words seen in fewer requests than this", 1, 50)
MAX_FEATURES = Param(
    "max_features", int, 50_000, "vocabulary size cap", 100, 500_000, log_scale=True
)
C = Param("C", float, 1.0, "inverse regularisation strength", 1e-4, 1e4, log_scale=True)
CLASS_WEIGHT = Param(
    "class_weight",
    str,
    "none",
    "'balanced' reweights the rarer success class (inflated probabilities; the tuned "
    "threshold already balances the decisions); 'none' keeps probabilities calibrated",
    choices=("balanced", "none"),
)
MAX_ITER = Param("max_iter", int, 1000, "solver iteration cap", 50, 10_000)


def _text_column(vectorizer: Any) -> ColumnTransformer:
    from sklearn.compose import ColumnTransformer

    return ColumnTransformer([("text", vectorizer, TEXT_COLUMN)])


def _tfidf(p: dict[str, Any]) -> TfidfVectorizer:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(
        ngram_range=(1, 2),
        min_df=p["min_df"],
        max_features=p["max_features"],
        sublinear_tf=p["sublinear_tf"],
        strip_accents="unicode",
    )


def _logreg(p: dict[str, Any]) -> LogisticRegression:
    from sklearn.linear_model import LogisticRegression

    weight = None if p["class_weight"] == "none" else p["class_weight"]
    return LogisticRegression(C=p["C"], class_weight=weight, max_iter=p["max_iter"])


def _nb_bow(p: dict[str, Any]) -> Pipeline:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.pipeline import Pipeline

    vectorizer = CountVectorizer(
        lowercase=True,
        stop_words="english",
        token_pattern=LETTERS_ONLY,
        min_df=p["min_df"],
        max_features=p["max_features"],
    )
    return Pipeline(
        [
            ("features", _text_column(vectorizer)),
            ("classifier", MultinomialNB(alpha=p["alpha"], fit_prior=p["fit_prior"])),
        ]
    )


def _tfidf_logreg(p: dict[str, Any]) -> Pipeline:
    from sklearn.pipeline import Pipeline

    return Pipeline([("features", _text_column(_tfidf(p))), ("classifier", _logreg(p))])


def _tfidf_meta_logreg(p: dict[str, Any]) -> Pipeline:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, MinMaxScaler

    from core.features import cyclic_encode, cyclic_names, signed_log1p

    counts = [*p["meta_fields"].split(","), TEXT_LENGTH]
    # counts are clipped to their training range, so a new request never extrapolates
    scaled_log = Pipeline(
        [
            ("signed_log", FunctionTransformer(signed_log1p, feature_names_out="one-to-one")),
            ("scale", MinMaxScaler(feature_range=(-1, 1), clip=True)),
        ]
    )
    cycles = FunctionTransformer(cyclic_encode, feature_names_out=cyclic_names)
    features = ColumnTransformer(
        [
            ("text", _tfidf(p), TEXT_COLUMN),
            ("counts", scaled_log, counts),
            ("time", cycles, list(CYCLES)),
        ]
    )
    return Pipeline([("features", features), ("classifier", _logreg(p))])


SUBLINEAR_TF = Param("sublinear_tf", bool, True, "use 1 + log(tf) instead of raw counts")


def _narrative_vote(p: dict[str, Any]) -> Pipeline:
    """Soft vote of a logistic regression (TF-IDF, cue counts, status, periodic and clipped
    time) and gradient-boosted trees (cue counts, status, raw time: trees never extrapolate)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, VotingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, MinMaxScaler

    from core.dataset import TIMESTAMP
    from core.features import cyclic_encode, cyclic_names, signed_log1p
    from core.narrative import NARRATIVE_COLUMNS, narrative_features

    counts = [*REQUESTER_COUNTS, TEXT_LENGTH]
    inputs = ColumnTransformer(
        [("inputs", "passthrough", [TEXT_COLUMN, *counts, TIMESTAMP, *CYCLES])],
        verbose_feature_names_out=False,
    ).set_output(transform="pandas")

    def scaled_log() -> Pipeline:
        return Pipeline(
            [
                ("signed_log", FunctionTransformer(signed_log1p, feature_names_out="one-to-one")),
                ("scale", MinMaxScaler(feature_range=(-1, 1), clip=True)),
            ]
        )

    linear = Pipeline(
        [
            (
                "features",
                ColumnTransformer(
                    [
                        ("text", _tfidf(p), TEXT_COLUMN),
                        ("cues", scaled_log(), list(NARRATIVE_COLUMNS)),
                        ("counts", scaled_log(), counts),
                        (
                            "time",
                            FunctionTransformer(cyclic_encode, feature_names_out=cyclic_names),
                            list(CYCLES),
                        ),
                        ("era", MinMaxScaler(clip=True), [TIMESTAMP]),
                    ]
                ),
            ),
            ("classifier", _logreg(p | {"class_weight": "none"})),
        ]
    )
    trees = Pipeline(
        [
            (
                "features",
                ColumnTransformer(
                    [("numbers", "passthrough", [*NARRATIVE_COLUMNS, *counts, TIMESTAMP, *CYCLES])]
                ),
            ),
            (
                "classifier",
                HistGradientBoostingClassifier(
                    learning_rate=p["trees_learning_rate"],
                    max_iter=p["trees_max_iter"],
                    max_leaf_nodes=p["trees_max_leaf_nodes"],
                    min_samples_leaf=p["trees_min_samples_leaf"],
                    l2_regularization=p["trees_l2"],
                    early_stopping=False,
                    random_state=0,
                ),
            ),
        ]
    )
    weight = p["linear_weight"]
    vote = VotingClassifier(
        [("linear", linear), ("trees", trees)], voting="soft", weights=[weight, 1 - weight]
    )
    return Pipeline([("features", inputs), ("cues", narrative_features()), ("classifier", vote)])


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            "nb-bow",
            "Bag of words (letters only, lower case, no English stop words) + multinomial "
            "naive Bayes: the original talk's model.",
            (
                Param("alpha", float, 1.0, "additive smoothing", 1e-3, 100.0, log_scale=True),
                Param("fit_prior", bool, True, "learn class priors from the data"),
                MIN_DF,
                MAX_FEATURES,
            ),
            _nb_bow,
            input_fields=("request_title", "request_text_edit_aware"),
        ),
        Recipe(
            "tfidf-logreg",
            "TF-IDF word 1-2-grams + logistic regression.",
            (C, CLASS_WEIGHT, MIN_DF, MAX_FEATURES, SUBLINEAR_TF, MAX_ITER),
            _tfidf_logreg,
            input_fields=("request_title", "request_text_edit_aware"),
        ),
        Recipe(
            "tfidf-meta-logreg",
            "TF-IDF word 1-2-grams plus request-time requester counts and text length "
            "(signed-log scaled, clipped to the training range) and hour, weekday and day "
            "of month (periodic) + logistic regression.",
            (
                C,
                CLASS_WEIGHT,
                MIN_DF,
                MAX_FEATURES,
                SUBLINEAR_TF,
                MAX_ITER,
                Param(
                    "meta_fields",
                    str,
                    ",".join(REQUESTER_COUNTS),
                    "comma-separated request-time requester fields used as numbers",
                    many=REQUESTER_COUNTS,
                ),
            ),
            _tfidf_meta_logreg,
            input_fields=("request_title", "request_text_edit_aware", *REQUEST_TIME_NUMERIC),
        ),
        Recipe(
            "narrative-vote",
            "What the research found to matter (Althoff et al., ICWSM 2014): counts of "
            "narrative cues (money, job, student, family, craving), a photo link, "
            "reciprocity, gratitude and politeness, plus length, the requester's status and "
            "history, and the time. A soft vote of a logistic regression on them plus TF-IDF "
            "(time periodic and clipped) and gradient-boosted trees on them.",
            (
                Param(
                    "C",
                    float,
                    0.3,
                    "inverse regularisation strength of the linear part",
                    1e-4,
                    1e4,
                    log_scale=True,
                ),
                Param("min_df", int, 3, MIN_DF.help, 1, 50),
                Param("max_features", int, 20_000, MAX_FEATURES.help, 100, 500_000, log_scale=True),
                SUBLINEAR_TF,
                MAX_ITER,
                Param(
                    "trees_learning_rate",
                    float,
                    0.05,
                    "boosting learning rate",
                    1e-3,
                    1.0,
                    log_scale=True,
                ),
                Param("trees_max_iter", int, 200, "boosting rounds", 10, 2000, log_scale=True),
                Param("trees_max_leaf_nodes", int, 15, "leaves per tree", 2, 255),
                Param(
                    "trees_min_samples_leaf",
                    int,
                    40,
                    "requests per leaf, at least",
                    1,
                    1000,
                    log_scale=True,
                ),
                Param("trees_l2", float, 1.0, "L2 regularisation of the leaves", 0.0, 100.0),
                Param(
                    "linear_weight",
                    float,
                    0.5,
                    "weight of the linear part in the vote (trees: 1 − it)",
                    0.0,
                    1.0,
                ),
            ),
            _narrative_vote,
            input_fields=("request_title", "request_text_edit_aware", *REQUEST_TIME_NUMERIC),
            linear=False,
        ),
    )
}

for _recipe in RECIPES.values():  # the leak guard holds for the recipes themselves too
    refuse_leaky(_recipe.input_fields, f"recipe '{_recipe.name}'")


def get_recipe(name: str) -> Recipe:
    """The recipe called `name` (built in, else a team recipe file), or BadInput listing the
    known ones; BadInput naming the file and line when a team recipe is broken."""
    if name in RECIPES:
        return RECIPES[name]
    from core.recipe_files import recipe_paths, team_recipe

    try:
        return team_recipe(name)
    except KeyError:
        known = [*RECIPES, *(n for n in recipe_paths() if n not in RECIPES)]
        raise BadInput(f"unknown recipe '{name}'; choose from {', '.join(known)}") from None
