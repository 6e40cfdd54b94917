"""What a request says about its asker, after Althoff, Danescu-Niculescu-Mizil and Jurafsky,
"How to Ask for a Favor" (ICWSM 2014): the narrative (money, job, student, family, craving),
evidence (a photo link), reciprocity, gratitude, politeness and length.

`narrative_features()` is stateless: it adds one count column per cue to the model-input frame
(`core.features.to_frame`) and learns nothing, so it behaves the same on one request typed
into the dashboard as on a training set. The word lists and patterns are this project's own,
written from the paper's descriptions of each cue, not copied from its lexicons.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from core.features import TEXT_COLUMN

if TYPE_CHECKING:
    import pandas as pd


def _words(*stems: str) -> re.Pattern[str]:
    """Whole words starting with one of `stems` (a trailing '*' allows any ending)."""
    parts = [re.escape(s[:-1]) + r"\w*" if s.endswith("*") else re.escape(s) for s in stems]
    return re.compile(r"\b(?:" + "|".join(parts) + r")\b", re.IGNORECASE)


def _phrases(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)


# Each cue: a column name and what it counts in the title and text.
CUES: dict[str, re.Pattern[str]] = {
    "narrative_money": _words(
        "money",
        "broke",
        "bill*",
        "rent",
        "paycheck*",
        "payday",
        "cash",
        "bank*",
        "afford*",
        "loan*",
        "debt*",
        "overdraft*",
        "budget*",
        "dollar*",
        "expense*",
        "poor",
    ),
    "narrative_job": _words(
        "job*",
        "work*",
        "unemploy*",
        "hired",
        "hiring",
        "interview*",
        "fired",
        "laid",
        "boss",
        "shift*",
        "employ*",
        "career",
        "resume",
        "paid",
    ),
    "narrative_student": _words(
        "student*",
        "college*",
        "universit*",
        "class*",
        "exam*",
        "semester*",
        "final*",
        "school*",
        "campus",
        "tuition",
        "dorm*",
        "study*",
        "studying",
        "homework",
        "professor*",
    ),
    "narrative_family": _words(
        "family",
        "families",
        "wife",
        "husband",
        "son",
        "sons",
        "daughter*",
        "kid*",
        "child*",
        "mom",
        "mother",
        "dad",
        "father",
        "girlfriend",
        "boyfriend",
        "baby",
        "babies",
        "parent*",
        "sister*",
        "brother*",
        "fiance*",
    ),
    "narrative_craving": _words(
        "crav*",
        "pizza*",
        "cheese*",
        "pepperoni",
        "delicious",
        "tasty",
        "yum*",
        "starv*",
        "hungry",
        "hunger",
    ),
    "evidence_link": _phrases(
        r"https?://",
        r"\bimgur\b",
        r"\.(?:jpe?g|png|gif)\b",
        r"\bphoto\w*\b",
        r"\bpicture\w*\b",
        r"\bproof\b",
        r"\bpic\b",
    ),
    "reciprocity": _phrases(
        r"\bpay(?:ing)? it forward\b",
        r"\breturn(?:ing)? the favou?r\b",
        r"\bpay (?:you )?back\b",
        r"\brepay\b",
        r"\bwhen i get paid\b",
        r"\bonce i get paid\b",
        r"\bpass it on\b",
    ),
    "gratitude": _words("thank*", "grateful", "gratitude", "appreciat*", "bless*"),
    "politeness": _phrases(
        r"\bplease\b",
        r"\bwould (?:you|anyone|someone)\b",
        r"\bcould (?:you|anyone|someone)\b",
        r"\bkind(?:ly|ness)?\b",
        r"\bsorry\b",
    ),
}
WORD = re.compile(r"\w+")
WORD_COUNT = "word_count"
NARRATIVE_COLUMNS = (*CUES, WORD_COUNT)


def cue_counts(text: str) -> list[int]:
    """How often each cue occurs in `text`, then its number of words."""
    return [len(pattern.findall(text)) for pattern in CUES.values()] + [len(WORD.findall(text))]


def with_cues(frame: pd.DataFrame) -> pd.DataFrame:
    """The input frame plus one count column per cue (and the word count)."""
    import pandas as pd

    texts = frame[TEXT_COLUMN].fillna("").astype(str)
    counts = pd.DataFrame(
        [cue_counts(text) for text in texts],
        columns=list(NARRATIVE_COLUMNS),
        index=frame.index,
        dtype=float,
    )
    return pd.concat([frame, counts], axis=1)


def narrative_features() -> Any:
    """The stateless transformer (sklearn's FunctionTransformer over `with_cues`)."""
    from sklearn.preprocessing import FunctionTransformer

    return FunctionTransformer(with_cues)
