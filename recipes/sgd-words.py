"""Word counts (title and text) plus a few hand-made cues + logistic-loss SGD (an example
team recipe: see README, "Team recipes")."""

from __future__ import annotations

import re

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import Pipeline

from core.recipes import Param

PARAMS = {
    "alpha": Param("alpha", float, 1e-3, "L2 regularisation strength", 1e-7, 1.0, log_scale=True),
    "min_df": 2,
    "max_iter": Param("max_iter", int, 50, "passes over the training data", 5, 1000),
}

CUES = {
    "gratitude": r"\b(thank|thanks|grateful|appreciate)",
    "reciprocity": r"\b(pay it forward|return the favor|pay you back)",
    "hardship": r"\b(broke|rent|bills|paycheck|payday|unemployed)",
}


class CueCounts(BaseEstimator, TransformerMixin):
    """How often each cue occurs in a request's text (a small custom transformer)."""

    def fit(self, texts, labels=None):
        return self

    def transform(self, texts):
        patterns = [re.compile(p, re.IGNORECASE) for p in CUES.values()]
        return np.array(
            [[len(p.findall(str(text))) for p in patterns] for text in texts], dtype=float
        )

    def get_feature_names_out(self, names=None):
        return np.array(list(CUES), dtype=object)


def pipeline(params):
    features = ColumnTransformer(
        [
            ("text", CountVectorizer(min_df=params["min_df"], binary=True), "text"),
            ("cues", CueCounts(), "text"),
        ]
    )
    classifier = SGDClassifier(
        loss="log_loss",
        alpha=params["alpha"],
        max_iter=params["max_iter"],
        tol=None,
        random_state=0,
    )
    return Pipeline([("features", features), ("classifier", classifier)])
