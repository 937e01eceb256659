"""The evaluation service: expected values, scores stored and replaced, failed outputs."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import make_output

from workbench.datasets import Dataset
from workbench.evaluate import (
    EvaluationError,
    evaluate,
    expected_value,
    plan,
    score_output,
    stored_scores,
)
from workbench.library import Library
from workbench.runner import Runner
from workbench.runs import OutputRecord
from workbench.scorers import parse_check


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"expected": "Paris"}, "Paris"),
        ({"expected": "Paris", "expected_f1": "Lyon"}, "Lyon"),
        ({"expected": ""}, None),
        ({}, None),
        ({"expected": 4}, "4"),
    ],
)
def test_expected_value(variables: dict[str, Any], expected: str | None) -> None:
    assert expected_value(parse_check("f1"), variables) == expected


def _output(text: str | None, error: str | None = None) -> OutputRecord:
    return make_output(  # type: ignore[no-any-return]
        text, variables={"expected": "yes"}, completion_tokens=2, latency_s=0.1, error=error
    )


def test_a_failed_output_fails_every_check() -> None:
    checks = [parse_check("exact-match"), parse_check("not-contains:x")]
    scores = score_output(_output(None, error="model crashed"), checks)
    assert [s.passed for s in scores] == [False, False]
    assert all("model crashed" in s.detail for s in scores)
    ok = score_output(_output("Yes."), checks)
    assert [s.passed for s in ok] == [True, True]


PROMPT = """---
name: echo
description: Repeats.
inputs:
  text:
    kind: string
    default: hi
metadata:
  assert:
  - type: length
    value: {min: 0, max: 10000}
---
user:
Say {{ text }}
"""


def test_scores_are_stored_and_replaced(library: Library, tiny_backend: Any) -> None:
    library.save(PROMPT, "v1")
    rows = Dataset("rows", ("text", "expected"), ({"text": "a", "expected": "a"},))
    runner = Runner(library, tiny_backend)
    first = evaluate(library, runner, ["echo"], rows, ["f1"], overrides={"max_new_tokens": 3})
    assert [m.metric for m in first.versions[0].metrics] == ["length", "f1"]
    output_id = first.versions[0].rows[0].output_id
    assert [s.metric for s in stored_scores(library.store, [output_id])[output_id]] == [
        "length",
        "f1",
    ]
    # Scoring the same output again replaces its scores instead of adding to them.
    from workbench.evaluate import store_scores

    store_scores(
        library.store,
        [(output_id, first.versions[0].rows[0].scores)],
        first.checks["echo@1"],
    )
    assert len(stored_scores(library.store, [output_id])[output_id]) == 2


def test_bad_assertion_in_a_prompt_file_names_the_version(library: Library) -> None:
    library.save(PROMPT.replace("type: length", "type: python"), "bad")
    rows = Dataset("rows", ("text",), ({"text": "a"},))
    with pytest.raises(EvaluationError, match=r"echo@1: assertion 1"):
        plan(library, ["echo"], rows)
