"""One rule for "the same answer", shared by Compare, Stability and the self-consistency vote."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from workbench import answers, compare
from workbench.answers import answer_key, extract_answer, group_answers
from workbench.runs import OutputRecord


def _output(text: str, answer: str | None = None) -> OutputRecord:
    return OutputRecord(
        id=1, run_id=1, prompt="p", version=1, row_index=0, sample_index=0, variables={},
        text=text, finish_reason="eos", prompt_tokens=1, completion_tokens=1, latency_s=0.1,
        ttft_s=None, batch_size=1, cached=False, error=None, answer=answer, model="m",
        revision="r", dtype="float32", params={}, seed=0, model_input="", messages=[],
        created_at=datetime.now(UTC),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("It's positive", "its positive", True),
        ("Positive.", "  POSITIVE ", True),
        ("The answer is 42", "answer is  42!", True),
        ("Positive", "Negative", False),
        ("4", "40", False),
    ],
)
def test_compare_and_stability_agree_on_what_is_the_same_answer(a: str, b: str, same: bool) -> None:
    compare_says = compare.normalise_answer(_output(a)) == compare.normalise_answer(_output(b))
    stability_says = len(group_answers([a, b])) == 1
    assert compare_says is stability_says is same
    assert (answer_key(a) == answer_key(b)) is same


def test_the_scorers_normalise_is_the_same_function() -> None:
    from workbench import scorers

    assert scorers.normalise is answers.normalise


@pytest.mark.parametrize(
    ("text", "pattern", "field", "expected"),
    [
        ("1 then 2 then 33", r"\d+", None, "33"),
        ("Answer: Paris.", r"Answer: (.*)", None, "Paris"),
        ("no number here", r"The answer is (\d+)", None, None),
        ('Sure: {"answer": "Paris"} done', None, "answer", "Paris"),
        ("{not json}", None, "answer", None),
        ("  whole text \n", None, None, "whole text"),
    ],
)
def test_extract_answer(
    text: str, pattern: str | None, field: str | None, expected: str | None
) -> None:
    assert extract_answer(text, pattern, field) == expected
