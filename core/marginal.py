"""Blank requester fields averaged over the background rows, without re-transforming what
does not change.

`core.explain.marginal_proba` scores a request with unknown requester fields as the mean
probability over the version's background rows, each taking the typed inputs (title, text,
time, the fields given) and that background requester's values for the rest. Done naively
that is `predict_proba` on 100 rows per request: every column transformer runs on 100
copies of the same text. Here each fitted `ColumnTransformer` of the model is replaced by
`_Blocks`, which builds the same feature matrix from three sources per transformer:

- transformers reading only typed columns run once per request and their row is repeated;
- transformers reading only background columns were run once per pipeline (cached);
- transformers reading both (a partial request) run on the masked rows, as before.

and stacks them with the transformer's own `_hstack` (so sparse or dense output is decided
as sklearn decides it). Every transformer is row-wise (vectorizers, scalers, element-wise
functions), so each row equals the row the naive path built, and the estimators after
the features (logistic regression, naive Bayes, boosted trees, the soft vote) see the same
matrix: probabilities are unchanged (tests/test_marginal.py compares both paths on every
built-in recipe and a team recipe). A model of any other shape (a `passthrough` column, a
transformer weight, an estimator that is not a Pipeline) gets None from `fast_model` and
keeps the naive path.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Rows:
    """The rows to score, described instead of materialised.

    `typed` holds one row per request (explained-frame columns); request `i` becomes
    `counts[i]` rows: with `known[i]` None, its own row once; otherwise one row per
    background row, whose columns in `known[i]` come from the request."""

    typed: pd.DataFrame
    background: pd.DataFrame
    known: list[frozenset[str] | None]

    @property
    def counts(self) -> list[int]:
        n = len(self.background)
        return [1 if k is None else n for k in self.known]

    @property
    def total(self) -> int:
        return sum(self.counts)


class _Blocks:
    """A fitted ColumnTransformer that accepts `Rows` (see the module docstring)."""

    def __init__(self, fitted: Any, background: pd.DataFrame) -> None:
        self.fitted = fitted
        self.parts = [
            (t, columns, frozenset([columns] if isinstance(columns, str) else columns))
            for _, t, columns in fitted.transformers_
            if not (isinstance(t, str) and t == "drop")
        ]
        self.cached = [t.transform(background[columns]) for t, columns, _ in self.parts]

    def transform(self, rows: Rows) -> Any:
        blocks = [
            self._block(rows, t, columns, read, cached)
            for (t, columns, read), cached in zip(self.parts, self.cached, strict=True)
        ]
        if getattr(self.fitted, "sparse_output_", False):
            blocks = _all_csr(blocks)
        return self.fitted._hstack(blocks, n_samples=rows.total)

    @staticmethod
    def _block(rows: Rows, t: Any, columns: Any, read: frozenset[str], cached: Any) -> Any:
        """This transformer's output for every row: sources stacked once, one row index."""
        import numpy as np
        import scipy.sparse

        n = len(rows.background)
        kinds = [
            "typed"
            if known is None or read <= known
            else "background"
            if not read & known
            else "mixed"
            for known in rows.known
        ]
        sources: list[Any] = []
        starts: dict[str, int] = {}
        offset = 0
        if "typed" in kinds:
            sources.append(t.transform(rows.typed[columns]))
            starts["typed"], offset = offset, offset + sources[-1].shape[0]
        if "background" in kinds:
            sources.append(cached)
            starts["background"], offset = offset, offset + n
        mixed = [i for i, kind in enumerate(kinds) if kind == "mixed"]
        if mixed:
            sources.append(t.transform(_masked(rows, list(columns), mixed)))
            starts["mixed"] = offset
        order = {request: position for position, request in enumerate(mixed)}
        pieces = []
        for i, kind in enumerate(kinds):
            if kind == "typed":
                count = 1 if rows.known[i] is None else n
                pieces.append(np.full(count, starts["typed"] + i, dtype=np.int64))
            elif kind == "background":
                pieces.append(np.arange(starts["background"], starts["background"] + n))
            else:
                first = starts["mixed"] + order[i] * n
                pieces.append(np.arange(first, first + n))
        index = np.concatenate(pieces)
        if any(hasattr(s, "iloc") for s in sources):  # a transformer with pandas output
            import pandas as pd

            frame = pd.concat(sources, ignore_index=True) if len(sources) > 1 else sources[0]
            return frame.iloc[index].reset_index(drop=True)
        if len(sources) == 1:
            return sources[0][index]
        if any(scipy.sparse.issparse(s) for s in sources):
            sources = [scipy.sparse.csr_matrix(s) for s in sources]
            return scipy.sparse.vstack(sources, format="csr")[index]
        return np.vstack([np.asarray(s) for s in sources])[index]


def _all_csr(blocks: list[Any]) -> list[Any]:
    """Dense blocks as CSR, when the output is sparse anyway: scipy stacks CSR blocks
    side by side directly, where one dense block sends every block through COO (three
    times slower for 10,000 rows). The same values either way."""
    import numpy as np
    import scipy.sparse

    return [scipy.sparse.csr_matrix(b) if isinstance(b, np.ndarray) else b for b in blocks]


def _masked(rows: Rows, columns: list[str], requests: list[int]) -> pd.DataFrame:
    """The masked rows of `requests`, only the columns one transformer reads: background
    values, with the request's value in each column it typed."""
    import numpy as np
    import pandas as pd

    n = len(rows.background)
    data = {}
    for column in columns:
        values = np.tile(rows.background[column].to_numpy(), len(requests))
        typed = rows.typed[column].to_numpy()
        for position, i in enumerate(requests):
            if column in rows.known[i]:
                values[position * n : (position + 1) * n] = typed[i]
        data[column] = values
    frame = pd.DataFrame(data, columns=columns, copy=False)
    dtypes = rows.background.dtypes
    differ = {c: dtypes[c] for c, dtype in frame.dtypes.items() if dtype != dtypes[c]}
    return frame.astype(differ) if differ else frame


def fast_model(model: Any, background: pd.DataFrame) -> Any | None:
    """`model` with its ColumnTransformers accepting `Rows`; None when its shape is not
    one this module knows to be row-wise (the caller then scores the masked rows)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import VotingClassifier
    from sklearn.pipeline import Pipeline

    if isinstance(model, Pipeline):
        first = model.steps[0][1]
        fast = copy.copy(model)
        if isinstance(first, ColumnTransformer):
            if not _plain(first):
                return None
            fast.steps = [(model.steps[0][0], _Blocks(first, background)), *model.steps[1:]]
            return fast
        if len(model.steps) == 1:
            inner = fast_model(first, background)
            if inner is None:
                return None
            fast.steps = [(model.steps[0][0], inner)]
            return fast
        return None
    if isinstance(model, VotingClassifier) and model.voting == "soft":
        inner = [fast_model(e, background) for e in model.estimators_]
        if any(e is None for e in inner):
            return None
        fast = copy.copy(model)
        fast.estimators_ = inner
        return fast
    return None


def _plain(ct: Any) -> bool:
    """Every part a fitted transformer (or dropped) selecting columns by name, unweighted."""
    if ct.transformer_weights:
        return False
    for _, t, columns in ct.transformers_:
        if isinstance(t, str):
            if t != "drop":
                return False
            continue
        if not isinstance(columns, str) and not (
            isinstance(columns, (list, tuple)) and all(isinstance(c, str) for c in columns)
        ):
            return False
    return True
