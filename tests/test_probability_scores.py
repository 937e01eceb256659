"""Probability scores of answer choices (accuracy, log-loss, Brier, ECE, reliability bins),
checked against figures computed by hand."""

from __future__ import annotations

import math
from typing import Any

import pytest

from workbench.probability_scores import (
    EPSILON,
    ChoiceRow,
    ScoredChoices,
    choice_scores,
    probability_scores,
    reliability_bins,
)

LABELS = ["Positive", "Negative", "Neutral"]


def _scored(probs: list[float], calibrated: list[float] | None = None) -> ScoredChoices:
    return ScoredChoices.from_json(
        {"choices": LABELS, "logprobs": [0.0] * 3, "probs": probs, "calibrated": calibrated}
    )


# Four rows: right at 0.7, wrong at 0.5, right at 0.8, wrong with the expected answer at 0.
HAND = [
    ([0.7, 0.2, 0.1], 0),
    ([0.5, 0.4, 0.1], 1),
    ([0.1, 0.1, 0.8], 2),
    ([0.0, 1.0, 0.0], 0),
]


def test_figures_equal_the_hand_computation() -> None:
    scores = probability_scores([p for p, _ in HAND], [t for _, t in HAND])
    assert scores.rows == 4
    assert scores.accuracy == 0.5
    by_hand = (-math.log(0.7) - math.log(0.4) - math.log(0.8) - math.log(EPSILON)) / 4
    assert scores.log_loss == pytest.approx(by_hand)
    assert scores.log_loss == pytest.approx((0.356675 + 0.916291 + 0.223144 + 34.538776) / 4)
    # Σ(p − y)² per row: 0.14, 0.62, 0.06, 2.0
    assert scores.brier == pytest.approx((0.14 + 0.62 + 0.06 + 2.0) / 4)
    # One row in each of bins 5, 7, 8 and 9: |accuracy − confidence| = .5, .3, .2, 1.0
    assert scores.ece == pytest.approx((0.5 + 0.3 + 0.2 + 1.0) / 4)
    counts = [b.count for b in scores.bins]
    assert counts == [0, 0, 0, 0, 0, 1, 0, 1, 1, 1]
    assert scores.bins[5].confidence == 0.5 and scores.bins[5].accuracy == 0.0
    assert scores.bins[9].confidence == 1.0 and scores.bins[9].accuracy == 0.0
    assert scores.bins[0].confidence is None and scores.bins[0].accuracy is None


def test_a_perfect_confident_model_scores_zero() -> None:
    scores = probability_scores([[1.0, 0.0], [0.0, 1.0]], [0, 1])
    assert (scores.accuracy, scores.log_loss, scores.brier, scores.ece) == (1.0, 0.0, 0.0, 0.0)


def test_a_tie_counts_the_first_choice_and_bins_are_equal_width() -> None:
    scores = probability_scores([[0.5, 0.5]], [1])
    assert scores.accuracy == 0.0 and scores.bins[5].count == 1
    bins = reliability_bins([0.0, 0.0999, 0.1, 0.95, 1.0], [True] * 5)
    assert [b.count for b in bins] == [2, 1, 0, 0, 0, 0, 0, 0, 0, 2]
    assert [(b.lower, b.upper) for b in bins][:2] == [(0.0, 0.1), (0.1, 0.2)]


def test_raw_and_calibrated_side_by_side_with_the_expected_probability_per_row() -> None:
    rows = [
        ChoiceRow(0, _scored([0.6, 0.3, 0.1], [0.2, 0.7, 0.1]), "negative"),
        ChoiceRow(1, _scored([0.5, 0.25, 0.25], [0.25, 0.25, 0.5]), " Neutral "),
    ]
    found = choice_scores(rows)
    assert found is not None and found.raw is not None and found.calibrated is not None
    assert (found.raw.accuracy, found.calibrated.accuracy) == (0.0, 1.0)
    assert found.raw.log_loss == pytest.approx((-math.log(0.3) - math.log(0.25)) / 2)
    assert found.calibrated.log_loss == pytest.approx((-math.log(0.7) - math.log(0.5)) / 2)
    assert [(r.raw, r.calibrated) for r in found.rows] == [(0.3, 0.7), (0.25, 0.5)]
    assert [kind for kind, _ in found.by_kind()] == ["raw", "calibrated"]
    assert found.problems == ()


def test_rows_that_cannot_be_scored_are_named_not_fatal() -> None:
    rows = [
        ChoiceRow(0, _scored([0.7, 0.2, 0.1]), "Positive"),
        ChoiceRow(1, _scored([0.7, 0.2, 0.1]), "Mixed"),
        ChoiceRow(2, _scored([0.7, 0.2, 0.1]), None),
        ChoiceRow(3, None, "Positive", problem="CUDA out of memory"),
    ]
    found = choice_scores(rows)
    assert found is not None and found.raw is not None
    assert found.raw.rows == 1 and found.calibrated is None
    assert found.problems == (
        "row 2: the expected answer 'Mixed' is not among the choices (Positive, Negative, Neutral)",
        "row 3: no expected answer to score against",
        "row 4: no scored choices (CUDA out of memory)",
    )
    assert [r.raw for r in found.rows] == [0.7, None, None, None]


def test_no_scored_choices_at_all_means_no_probability_scores() -> None:
    assert choice_scores([ChoiceRow(0, None, "Positive")]) is None
    only_bad = choice_scores([ChoiceRow(0, _scored([1.0, 0.0, 0.0]), "Mixed")])
    assert only_bad is not None and only_bad.raw is None and len(only_bad.problems) == 1


def test_calibrated_figures_need_every_row_calibrated() -> None:
    rows = [
        ChoiceRow(0, _scored([0.7, 0.2, 0.1], [0.5, 0.3, 0.2]), "Positive"),
        ChoiceRow(1, _scored([0.7, 0.2, 0.1]), "Positive"),
    ]
    found = choice_scores(rows)
    assert found is not None and found.calibrated is None
    assert any("only some rows" in p for p in found.problems)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "not a JSON object"),
        ({"choices": [], "probs": []}, "without a list of choices"),
        ({"choices": ["a", "b"], "probs": [1.0]}, "one probability per choice"),
        ({"choices": ["a", "b"], "probs": [1.0, "x"]}, "not a number"),
        ({"choices": ["a", "b"], "probs": [1.5, -0.5]}, "non-negative"),
        ({"choices": ["a", "b"], "probs": [0.5, 0.5], "calibrated": [1]}, "calibrated must"),
    ],
)
def test_malformed_stored_choices_are_refused_with_a_reason(data: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScoredChoices.from_json(data)


def test_stored_probabilities_are_rescaled_to_sum_to_one() -> None:
    scored = ScoredChoices.from_json({"choices": ["a", "b"], "probs": [2.0, 6.0]})
    assert scored.probs == (0.25, 0.75) and scored.calibrated is None
    assert scored.index(" B ") == 1 and scored.index("c") is None
