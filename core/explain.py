"""Why this score: additive log-odds contributions of feature groups for every recipe, and
requester fields left blank averaged over the training population instead of set to 0.

A fitted pipeline carries `background_`: a fixed, seeded sample of its training rows (set by
`core.train._fit`). Those rows define both the explanation's base (the logit of the model's
average probability over them) and what "unknown" means: a field left blank takes each
background requester's value in turn and the probabilities are averaged, with the typed
inputs fixed (the interventional expectation SHAP computes). The contributions come from
shap's permutation explainer over feature groups (a masker that swaps whole groups for
background rows; one forward and one backward pass, exact for models with interactions up
to second order), so base + contributions = the logit of the shown probability.

Nothing here reads the dataset again: the background travels inside the artifact.
"""

from __future__ import annotations

import copy
import itertools
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.dataset import REQUEST_ID, REQUESTER_COUNTS, TIMESTAMP
from core.features import CAPTIONS, CYCLES, TEXT_COLUMN, TEXT_LENGTH, read_columns, to_frame
from core.marginal import Rows, fast_model

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

BACKGROUND_ROWS = 100  # training rows kept in the artifact for explanations and unknowns
BACKGROUND_SEED = 0
WORDS = "words (title and text)"
LENGTH = "text length"
TIME = "request time (hour, weekday, day of month)"
CUE_CAPTIONS = {
    "narrative_money": "narrative: money",
    "narrative_job": "narrative: job",
    "narrative_student": "narrative: student",
    "narrative_family": "narrative: family",
    "narrative_craving": "narrative: craving",
    "evidence_link": "evidence: photo or link",
    "reciprocity": "reciprocity",
    "gratitude": "gratitude",
    "politeness": "politeness",
}
# Readable names of requester fields in sentences ("account age, karma ... unknown").
FIELD_WORDS = {
    "requester_account_age_in_days_at_request": "account age",
    "requester_days_since_first_post_on_raop_at_request": "days since the first RAOP post",
    "requester_number_of_comments_at_request": "comments",
    "requester_number_of_comments_in_raop_at_request": "comments on RAOP",
    "requester_number_of_posts_at_request": "posts",
    "requester_number_of_posts_on_raop_at_request": "posts on RAOP",
    "requester_number_of_subreddits_at_request": "subreddits",
    "requester_upvotes_minus_downvotes_at_request": "karma (up − down)",
    "requester_upvotes_plus_downvotes_at_request": "votes (up + down)",
}
METHOD = (
    "shap permutation explainer over feature groups, {n} training rows as background "
    "(log-odds; base = logit of the mean probability over them)"
)
NO_BACKGROUND = (
    "none: this version was built before versions kept training rows for explanations; "
    "refit or rebuild it to explain it (blank requester fields count as 0 for it)"
)
TOP_WORDS = 8


def background_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """A seeded sample of training rows (ordered by request id first, so it does not depend
    on file order): the same training data gives the same rows, byte for byte, with plain
    Python strings so that the artifact loads without pyarrow."""
    ordered = frame.sort_values(REQUEST_ID, kind="stable")
    count = min(BACKGROUND_ROWS, len(ordered))
    sample = ordered.sample(n=count, random_state=BACKGROUND_SEED)
    sample = sample.assign(**{REQUEST_ID: "background"}).reset_index(drop=True)
    # plain Python strings: with pyarrow installed pandas would store Arrow-backed strings,
    # and the artifact would then not load where pyarrow is absent (the trainer and serve images)
    text = sample.select_dtypes(include=["string", "object"]).columns
    sample = sample.astype({column: object for column in text})
    sample.columns = sample.columns.astype(object)
    return sample


def unknown_fields(record: dict[str, Any], pipeline: Any) -> list[str]:
    """Requester fields the pipeline reads that the request does not give."""
    read = set(read_columns(pipeline))
    return [f for f in REQUESTER_COUNTS if f in read and f not in record]


def unknown_note(fields: list[str]) -> str:
    """The unknown fields in words a person reads."""
    if not fields:
        return ""
    names = ", ".join(FIELD_WORDS.get(f, f) for f in fields)
    return f"{names} unknown: averaged over the requesters in the training data"


def _group_columns() -> dict[str, list[str]]:
    """Every feature group and the explained-frame columns it swaps as one."""
    from core.narrative import WORD_COUNT

    groups = {WORDS: [TEXT_COLUMN], LENGTH: [TEXT_LENGTH, WORD_COUNT]}
    groups |= {caption: [cue] for cue, caption in CUE_CAPTIONS.items()}
    groups |= {CAPTIONS[f]: [f] for f in REQUESTER_COUNTS}
    groups[TIME] = [TIMESTAMP, "unix_timestamp_of_request", *CYCLES]
    return groups


FIELD_GROUP = {f: CAPTIONS[f] for f in REQUESTER_COUNTS}


class _Memo:
    """A fitted text transformer that transforms each distinct text once: masked rows repeat
    the typed text and the background texts many times (same output, far less work)."""

    def __init__(self, fitted: Any, known: list[str]) -> None:
        self.fitted = fitted
        self.known = list(dict.fromkeys(known))
        self.matrix = fitted.transform(self.known)
        self.index = {text: i for i, text in enumerate(self.known)}

    def transform(self, texts: Any) -> Any:
        import numpy as np
        import scipy.sparse

        if getattr(texts, "ndim", 1) == 2:
            texts = texts.iloc[:, 0]
        texts = [str(t) for t in texts]
        new = [t for t in dict.fromkeys(texts) if t not in self.index]
        index, matrix = self.index, self.matrix
        if new:  # typed texts are kept for this call only
            index = index | {t: len(self.known) + i for i, t in enumerate(new)}
            matrix = scipy.sparse.vstack([matrix, self.fitted.transform(new)], format="csr")
        return matrix[np.fromiter((index[t] for t in texts), dtype=np.int64, count=len(texts))]


def _with_memo(model: Any, texts: list[str]) -> Any:
    """`model` with its text transformers memoised: the objects on the way to them are
    shallow copies, everything else (vocabularies, coefficients, trees) is shared."""
    fitted = getattr(model, "transformers_", None)
    if fitted is not None:  # a ColumnTransformer
        fast = copy.copy(model)
        fast.transformers_ = [
            (name, _Memo(t, texts) if columns == TEXT_COLUMN else t, columns)
            for name, t, columns in fitted
        ]
        return fast
    if hasattr(model, "steps"):  # a Pipeline
        fast = copy.copy(model)
        fast.steps = [(name, _with_memo(step, texts)) for name, step in model.steps]
        return fast
    if getattr(model, "estimators_", None):  # an ensemble (the soft vote)
        fast = copy.copy(model)
        fast.estimators_ = [_with_memo(e, texts) for e in model.estimators_]
        return fast
    return model


@dataclass
class Explainer:
    """What explaining one fitted pipeline needs, prepared once (cached per pipeline)."""

    prefix: Any  # pipeline steps whose output is still a frame (narrative cues)
    model: Any  # the rest, text transformers memoised
    columns: list[str]
    dtypes: dict[str, Any]
    background: np.ndarray  # explained-frame rows (object array)
    groups: dict[str, list[int]]  # group -> column positions, in display order
    read: set[str]
    background_frame: Any = None  # the background as a frame (explained columns)
    fast: Any = None  # the model accepting `core.marginal.Rows`; None: score masked rows

    def frame(self, records: list[dict[str, Any]], frame: Any = None) -> pd.DataFrame:
        """The explained frame of `records` (their model-input `frame` when already built)."""
        frame = to_frame(records) if frame is None else frame
        return frame if self.prefix is None else self.prefix.transform(frame)

    def proba(self, rows: np.ndarray) -> np.ndarray:
        """Probability of a pizza for explained-frame rows (an object array)."""
        import pandas as pd

        frame = pd.DataFrame(rows, columns=self.columns).astype(self.dtypes)
        with _one_openmp_thread():
            return self.model.predict_proba(frame)[:, 1]

    def typed(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The explained frame with the background's numeric dtypes (as a masked row built
        from it gets them); strings stay as they are (the same Python strings either way)."""
        differ = {
            column: self.dtypes[column]
            for column, dtype in frame.dtypes.items()
            if column in self.dtypes and dtype != self.dtypes[column] and not _strings(dtype)
        }
        return frame.astype(differ) if differ else frame

    def masked(self, row: np.ndarray, groups: list[str]) -> np.ndarray:
        """Background rows with the columns of `groups` taken from `row`."""
        rows = self.background.copy()
        for group in groups:
            positions = self.groups[group]
            rows[:, positions] = row[positions]
        return rows


def _strings(dtype: Any) -> bool:
    """A pandas string dtype ('str', 'string') or object: a column of Python strings."""
    return getattr(dtype, "kind", "") in ("O", "T", "U") or str(dtype) in ("str", "string")


_CONTROLLER: list[Any] = []


def _one_openmp_thread() -> Any:
    """A context limiting OpenMP to one thread: a few thousand rows gain little from it,
    and on a busy machine (2 CPUs shared with other work) its spinning threads made calls
    3-5x slower. The libraries are looked up once per process (`threadpool_limits` reads
    /proc/self/maps on every call: 4 ms a request)."""
    from threadpoolctl import ThreadpoolController

    if not _CONTROLLER:
        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=1, user_api="openmp")


_CACHE: weakref.WeakKeyDictionary[Any, Explainer] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()
_SHAP_LOCK = threading.Lock()  # shap seeds and shuffles numpy's global random state


def _split(pipeline: Any, background: pd.DataFrame) -> tuple[Any, pd.DataFrame]:
    """The leading steps whose output is still a frame (none, or the narrative cues), and
    the background after them."""
    import pandas as pd

    steps = 0
    frame = background
    for _, step in pipeline.steps[:-1]:
        out = step.transform(frame)
        if not isinstance(out, pd.DataFrame):
            break
        frame, steps = out, steps + 1
    return (pipeline[:steps] if steps else None), frame


def explainer_for(pipeline: Any) -> Explainer | None:
    """The prepared explainer of a fitted pipeline; None without background rows."""
    background = getattr(pipeline, "background_", None)
    if background is None:
        return None
    with _CACHE_LOCK:
        if pipeline not in _CACHE:
            _CACHE[pipeline] = _prepare(pipeline, background)
        return _CACHE[pipeline]


def _prepare(pipeline: Any, background: pd.DataFrame) -> Explainer:
    prefix, frame = _split(pipeline, background)
    model = pipeline[len(prefix) :] if prefix else pipeline
    read = set(read_columns(pipeline)) | (set(frame.columns) - set(background.columns))
    columns = list(frame.columns)
    groups = {}
    for group, wanted in _group_columns().items():
        if read & set(wanted):
            groups[group] = [columns.index(c) for c in wanted if c in columns]
    texts = [str(t) for t in frame[TEXT_COLUMN]] if TEXT_COLUMN in frame else []
    memoised = _with_memo(model, texts)
    return Explainer(
        prefix=prefix,
        model=memoised,
        columns=columns,
        dtypes=frame.dtypes.to_dict(),
        background=frame.to_numpy(dtype=object),
        groups=groups,
        read=read,
        background_frame=frame,
        fast=fast_model(memoised, frame),
    )


def marginal_proba(
    pipeline: Any, records: list[dict[str, Any]], naive: bool = False, frame: Any = None
) -> list[float] | None:
    """Each request's probability, its unknown requester fields averaged over the
    background requesters; None for a pipeline without background rows. The rows are
    built per transformer (`core.marginal`) unless `naive` or the model's shape is not
    one that module handles: then every masked row is materialised and scored. `frame`:
    the records' model-input frame (`to_frame`), when the caller has it."""
    explainer = explainer_for(pipeline)
    if explainer is None:
        return None
    known = [_known_groups(explainer, record) for record in records]
    if explainer.fast is not None and not naive:
        return _fast_proba(explainer, records, known, frame)
    return _naive_proba(explainer, records, known, frame)


def _fast_proba(
    explainer: Explainer, records: list[dict[str, Any]], known: list[list[str]], frame: Any
) -> list[float]:
    import numpy as np

    typed = explainer.typed(explainer.frame(records, frame))
    columns = [
        None
        if len(k) == len(explainer.groups)
        else frozenset(explainer.columns[p] for g in k for p in explainer.groups[g])
        for k in known
    ]
    rows = Rows(typed.reset_index(drop=True), explainer.background_frame, columns)
    with _one_openmp_thread():
        proba = explainer.fast.predict_proba(rows)[:, 1]
    bounds = np.cumsum([0, *rows.counts])
    return [float(proba[a:b].mean()) for a, b in itertools.pairwise(bounds)]


def _naive_proba(
    explainer: Explainer, records: list[dict[str, Any]], known: list[list[str]], frame: Any
) -> list[float]:
    import numpy as np

    frame = explainer.frame(records, frame).to_numpy(dtype=object)
    blocks = [
        frame[i : i + 1] if len(k) == len(explainer.groups) else explainer.masked(frame[i], k)
        for i, k in enumerate(known)
    ]
    proba = explainer.proba(np.concatenate(blocks))
    bounds = np.cumsum([0, *(len(b) for b in blocks)])
    return [float(proba[a:b].mean()) for a, b in itertools.pairwise(bounds)]


def _known_groups(explainer: Explainer, record: dict[str, Any]) -> list[str]:
    unknown = {FIELD_GROUP[f] for f in REQUESTER_COUNTS if f not in record}
    return [g for g in explainer.groups if g not in unknown]


class _GroupMasker:
    """shap masker: groups switched on take the request's values, the others each
    background row's; unknown groups are never switched on, so they contribute 0."""

    immutable_outputs = True

    def __init__(self, explainer: Explainer, known: list[str]) -> None:
        self.explainer, self.known = explainer, known
        self.shape = (len(explainer.background), len(known))

    def mask_shapes(self, _row: np.ndarray) -> list[tuple[int]]:
        return [(len(self.known),)]

    def __call__(self, mask: np.ndarray, row: np.ndarray) -> np.ndarray:
        import numpy as np

        on = [self.known[i] for i in np.flatnonzero(mask)]
        return self.explainer.masked(row, on)


def explain(pipeline: Any, record: dict[str, Any], top: int = TOP_WORDS) -> dict[str, Any]:
    """`base` + sum of `contributions` (`{group, value}`, log-odds) = logit of the request's
    probability (unknown fields averaged); `unknown` lists the fields not given, each with
    contribution 0; `words` splits the words group into its strongest words and the rest."""
    explainer = explainer_for(pipeline)
    if explainer is None:
        return {"method": NO_BACKGROUND, "contributions": [], "unknown": []}
    row = explainer.frame([record]).to_numpy(dtype=object)
    values, base = _shap_values(explainer, row, _known_groups(explainer, record))
    unknown = [f for f in REQUESTER_COUNTS if FIELD_GROUP[f] in explainer.groups]
    unknown = [f for f in unknown if f not in record]
    contributions = [
        {"group": g, "value": float(values.get(g, 0.0)), "unknown": g not in values}
        for g in explainer.groups
    ]
    out = {
        "method": METHOD.format(n=len(explainer.background)),
        "base": base,
        "contributions": contributions,
        "unknown": unknown,
        "unknown_note": unknown_note(unknown),
    }
    if WORDS in values:
        text = str(row[0, explainer.columns.index(TEXT_COLUMN)])
        out["words"] = word_split(explainer, text, values[WORDS], top)
    return out


def _shap() -> Any:
    """shap, imported with numba's compiler off (unless shap was imported before): on this
    path shap compiles only the loop that averages at most 43 masked outputs, which took
    3-5 s and 84 MB per process to compile and runs as fast in Python (docs/benchmarks.md)."""
    import sys

    if "shap" not in sys.modules:
        import numba

        numba.config.DISABLE_JIT = True
    import shap

    return shap


def _shap_values(
    explainer: Explainer, row: np.ndarray, known: list[str]
) -> tuple[dict[str, float], float]:
    """Each known group's contribution and the base, from shap's permutation explainer."""
    import numpy as np

    shap = _shap()
    masker = _GroupMasker(explainer, known)
    with _SHAP_LOCK:
        if not known:
            base = float(shap.links.logit(explainer.proba(explainer.background).mean()))
            return {}, base
        shap_explainer = shap.explainers.Permutation(
            explainer.proba, masker, link=shap.links.logit, linearize_link=False, seed=0
        )
        result = shap_explainer(row, max_evals=2 * len(known) + 1, batch_size=10_000, silent=True)
    values = np.asarray(result.values)[0]
    return {g: float(v) for g, v in zip(known, values, strict=True)}, float(result.base_values[0])


def word_split(explainer: Explainer, text: str, total: float, top: int) -> dict[str, Any]:
    """The words group's contribution split: the `top` words of the request that move the
    linear text weights most against the background's average, and "all other words" (the
    rest of the group's contribution), so the bars add up to the group."""
    words = _word_effects(explainer, text)
    shown = sorted(words, key=lambda w: -abs(w["value"]))[:top]
    shown = [w for w in shown if w["value"] != 0]
    return {
        "words": shown,
        "other": total - sum(w["value"] for w in shown),
        "total": total,
        "shown": len(shown),
        "count": len(words),
    }


def _word_effects(explainer: Explainer, text: str) -> list[dict[str, Any]]:
    """Each word of the request: its linear weight times how much more it appears here than
    in the average background request (log-odds of the text's linear model)."""
    import numpy as np

    found = _text_linear(explainer.model)
    if found is None:
        return []
    memo, weights, words = found
    mine = memo.transform([text])
    mean = np.asarray(memo.matrix.mean(axis=0)).ravel()
    columns = mine.indices
    values = (mine.data - mean[columns]) * weights[columns]
    return [
        {"word": str(words[c]), "value": float(v)} for c, v in zip(columns, values, strict=True)
    ]


def _text_linear(model: Any) -> tuple[_Memo, np.ndarray, np.ndarray] | None:
    """The memoised text transformer and the word weights of the linear model reading it."""
    from core.predict import word_weights

    for candidate in [model, *(getattr(model[-1], "estimators_", None) or [])]:
        features = getattr(candidate, "steps", [[None, None]])[0][1]
        indices = getattr(features, "output_indices_", {})
        weights = word_weights(candidate) if "text" in indices else None
        if weights is None:
            continue
        memo = next(t for name, t, _ in features.transformers_ if name == "text")
        names = memo.fitted.get_feature_names_out()
        return memo, weights[indices["text"]], names
    return None
