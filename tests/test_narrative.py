"""The narrative cues and the `narrative-vote` recipe built on them."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from core.config import SAMPLE_DATA
from core.dataset import load_dataset
from core.features import to_frame
from core.narrative import CUES, NARRATIVE_COLUMNS, cue_counts, narrative_features
from core.recipes import get_recipe
from core.train import fit_and_evaluate
from core.worker import dump_artifact


def counts(text: str) -> dict[str, int]:
    return dict(zip(NARRATIVE_COLUMNS, cue_counts(text), strict=True))


def test_each_cue_counts_what_it_names() -> None:
    found = counts(
        "Broke college student, my rent is due and my kids are hungry. I just got a job "
        "interview! Proof: http://imgur.com/abc.jpg. I will pay it forward, please, and "
        "thank you so much."
    )
    assert found["narrative_money"] == 2  # broke, rent
    assert found["narrative_student"] == 2  # college, student
    assert found["narrative_family"] == 1  # kids
    assert found["narrative_craving"] == 1  # hungry
    assert found["narrative_job"] == 2  # job, interview
    assert found["evidence_link"] >= 2  # the link, imgur, .jpg, proof
    assert found["reciprocity"] == 1 and found["politeness"] == 1 and found["gratitude"] == 1
    assert found["word_count"] > 30
    assert set(counts("")).issuperset(CUES) and all(v == 0 for v in counts("").values())
    # whole words only, any case
    assert counts("REPAYMENT of my Workshop bill")["reciprocity"] == 0
    assert counts("THANKS")["gratitude"] == 1


EDGE_RECORDS = {
    "empty": {"request_title": "", "request_text_edit_aware": ""},
    "non-ascii": {
        "request_title": "Pizza für meine Familie 🍕",
        "request_text_edit_aware": "Étudiant fauché… спасибо! 谢谢 please",
    },
    "long": {"request_title": "t", "request_text_edit_aware": "please thank you " * 2500},
    "no metadata": {"request_title": "hungry", "request_text_edit_aware": "family"},
    "no subreddits": {
        "request_title": "job",
        "request_text_edit_aware": "money",
        "requester_subreddits_at_request": [],
        "requester_number_of_subreddits_at_request": 0,
    },
}


@pytest.fixture(scope="module")
def fitted() -> object:
    dataset = load_dataset(SAMPLE_DATA)
    return fit_and_evaluate(dataset, "narrative-vote", {}, 0, 0.25, "fixed:0.5", log=lambda _: None)


@pytest.mark.parametrize("name", list(EDGE_RECORDS))
def test_the_transformer_and_the_recipe_take_edge_cases(name: str, fitted) -> None:
    record = {"request_id": f"t3_{name}", **EDGE_RECORDS[name]}
    frame = to_frame([record])
    features = narrative_features().fit_transform(frame)
    assert list(features.columns[-len(NARRATIVE_COLUMNS) :]) == list(NARRATIVE_COLUMNS)
    assert np.isfinite(features[list(NARRATIVE_COLUMNS)].to_numpy()).all()
    probability = fitted.pipeline.predict_proba(frame)[0, 1]
    assert 0.0 < probability < 1.0


def test_the_long_text_is_counted_in_full() -> None:
    found = counts("please thank you " * 2500)  # 42,500 characters
    assert found["politeness"] == 2500 and found["gratitude"] == 2500


def test_narrative_vote_is_a_soft_vote_that_rebuilds_byte_identically(fitted) -> None:
    recipe = get_recipe("narrative-vote")
    assert recipe.resolve({})["linear_weight"] == 0.5
    vote = fitted.pipeline.steps[-1][1]
    assert type(vote).__name__ == "VotingClassifier" and vote.voting == "soft"
    assert [name for name, _ in vote.estimators] == ["linear", "trees"]
    assert 0.0 < fitted.metrics["roc_auc"] <= 1.0
    # the same data and parameters give the same artifact bytes (reproduce: identical);
    # fresh fits, as a build dumps its pipeline before any prediction
    fits = [
        fit_and_evaluate(
            load_dataset(SAMPLE_DATA), "narrative-vote", {}, 0, 0.25, "f1", log=lambda _: None
        )
        for _ in range(2)
    ]
    digests = {hashlib.sha256(dump_artifact(fit.pipeline)).hexdigest() for fit in fits}
    assert len(digests) == 1
    assert fits[0].test_probabilities == fits[1].test_probabilities


def test_the_linear_part_never_extrapolates_time(fitted) -> None:
    """A request dated decades past the data scores like one at the data's last date."""
    base = {"request_id": "t3_t", "request_title": "pizza", "request_text_edit_aware": "please"}
    dataset = load_dataset(SAMPLE_DATA)
    last = max(r["unix_timestamp_of_request_utc"] for r in dataset.records)
    at_end = {**base, "unix_timestamp_of_request_utc": last, "unix_timestamp_of_request": last}
    far = 40 * 365 * 86_400.0
    later = {**at_end, "unix_timestamp_of_request_utc": last + far}
    later["unix_timestamp_of_request"] = last + far
    # same hour, weekday and day of month: 40 years of 365 days shift the weekday; compare
    # the linear part's time inputs directly instead
    linear = fitted.pipeline.steps[-1][1].named_estimators_["linear"]
    era = linear.steps[0][1].named_transformers_["era"]
    scaled = era.transform(to_frame([later])[["unix_timestamp_of_request_utc"]])
    assert float(scaled[0][0]) == pytest.approx(1.0)  # clipped at the training maximum
    assert float(era.transform(to_frame([at_end])[["unix_timestamp_of_request_utc"]])[0][0]) <= 1
