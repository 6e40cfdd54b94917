"""Whether a dataset has enough requests of each class for the evaluation asked for.

Checked before a version is written, in the process that submits a build, which does not
import the ML stack unless a count is near a limit (scikit-learn then gives the exact split).
"""

from __future__ import annotations

import math

from core.errors import BadInput


def check_class_counts(
    rows: int, positives: int, seed: int, test_size: float, folds: int | None, tuned: bool
) -> None:
    """Refuse, before anything is written, a dataset with too few requests of a class for
    the split (each class in both parts) or the K folds, or (with a tuned threshold) for the
    inner folds of their training parts, which need at least 2 of each class."""
    fewest = min(positives, rows - positives)
    have = f"too few requests per class: {positives} successful and {rows - positives} unsuccessful"
    if folds is not None:
        if fewest < folds:
            raise BadInput(f"{have}; {folds} stratified folds need at least {folds} of each class")
        least, where = fewest - -(-fewest // folds), "every fold"
    else:
        if fewest < 2:
            raise BadInput(f"{have}; a stratified split needs at least 2 of each class")
        least, tested = _split_bounds(rows, positives, test_size)
        if tested < 1 or (tuned and least < 2):  # near a limit: the split's exact counts
            least, tested = _split_least(rows, positives, seed, test_size, have)
        if tested < 1:
            raise BadInput(
                f"{have}; the split needs at least 1 of each class in the test part, which "
                f"would hold {tested} (use a larger --test-size or more data)"
            )
        where = "the split"
    if tuned and least < 2:
        raise BadInput(
            f"{have}; tuning the threshold needs at least 2 of each class in the training part "
            f"of {where}, which would hold {least} (use --threshold-policy fixed:T or more data)"
        )


def _split_least(
    rows: int, positives: int, seed: int, test_size: float, have: str
) -> tuple[int, int]:
    """The fewest requests of a class in the training and in the test part of `make_split`:
    its class counts depend only on the class sizes, the seed and the test size, not the ids."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    labels = np.arange(rows) < positives
    try:
        train, test = train_test_split(
            np.arange(rows), test_size=test_size, random_state=seed, stratify=labels
        )
    except ValueError as exc:
        raise BadInput(f"{have}; cannot make a stratified split: {exc}") from exc
    trained, tested = int(labels[train].sum()), int(labels[test].sum())
    return min(trained, len(train) - trained), min(tested, len(test) - tested)


def _split_bounds(rows: int, positives: int, test_size: float) -> tuple[int, int]:
    """Lower bounds of (the fewest of a class in the training part, in the test part) of a
    stratified split: each class gets its share of the test part rounded down or up (one
    more request of slack either way), as scikit-learn's `_approximate_mode` allocates."""
    fewest = min(positives, rows - positives)
    n_test = math.ceil(test_size * rows)
    share = n_test * fewest / rows
    return fewest - (math.ceil(share) + 1), math.floor(share) - 1
