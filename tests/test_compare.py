"""Comparison service: columns run as ordinary runs, rows aligned, word diffs, agreement."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from workbench import compare
from workbench.compare import Column, ColumnSpec, Comparison
from workbench.errors import WorkbenchError
from workbench.library import Library
from workbench.runner import OutputRecord, Runner


def _output(text: str, *, id: int = 1, answer: str | None = None, **kw: Any) -> OutputRecord:
    base = dict(
        id=id,
        run_id=1,
        prompt="p",
        version=1,
        row_index=0,
        sample_index=0,
        variables={"text": "x"},
        text=text,
        finish_reason="eos",
        prompt_tokens=5,
        completion_tokens=4,
        latency_s=0.5,
        ttft_s=0.1,
        batch_size=1,
        cached=False,
        error=None,
        answer=answer,
        model="m",
        revision="r",
        dtype="float32",
        params={},
        seed=0,
        model_input="",
        messages=[],
        created_at=datetime(2026, 1, 1),
    )
    base.update(kw)
    return OutputRecord(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("base", "other", "pieces"),
    [
        ("same words", "same words", [("equal", "same words")]),
        (
            "The answer is 42.",
            "The answer is 43.",
            [("equal", "The answer is "), ("delete", "42"), ("insert", "43"), ("equal", ".")],
        ),
        ("a b", "a new b", [("equal", "a "), ("insert", "new "), ("equal", "b")]),
        ("keep this part", "keep", [("equal", "keep"), ("delete", " this part")]),
        ("", "all new", [("insert", "all new")]),
    ],
)
def test_word_diff(base: str, other: str, pieces: list[tuple[str, str]]) -> None:
    assert compare.word_diff(base, other) == pieces
    # Putting the equal and inserted pieces together gives the other text back; equal and
    # deleted pieces give the base back.
    assert "".join(t for op, t in pieces if op != "delete") == other
    assert "".join(t for op, t in pieces if op != "insert") == base


def test_diff_html_escapes_model_text() -> None:
    html = compare.diff_html(compare.word_diff("safe", "<script>alert(1)</script> & more"))
    assert "<script>" not in html
    assert "&lt;script&gt;" in html and "&amp;" in html
    assert "<ins" in html and "<del" in html


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("Positive", "positive.", True),
        ("  The answer is 4 ", "the answer   is 4", True),
        ("Positive", "Negative", False),
    ],
)
def test_normalised_answers(a: str, b: str, same: bool) -> None:
    assert (compare.normalise_answer(_output(a)) == compare.normalise_answer(_output(b))) is same


def test_extracted_answer_wins_over_text() -> None:
    a = _output("long reasoning... The answer is 4.", answer="4")
    b = _output("other reasoning. The answer is 4", answer="4")
    assert compare.normalise_answer(a) == compare.normalise_answer(b) == "4"


def _comparison(table: list[list[str | None]]) -> Comparison:
    columns = [Column(f"c{i}", f"p@{i + 1}", "m", {}, i) for i in range(len(table[0]))]
    cells = [
        [
            _output(t, id=10 * r + c, latency_s=0.1 * (c + 1)) if t is not None else None
            for c, t in enumerate(row)
        ]
        for r, row in enumerate(table)
    ]
    return Comparison(columns, [{"text": str(r)} for r in range(len(table))], cells)


def test_agreement_with_baseline_and_per_row() -> None:
    comparison = _comparison([["yes", "yes", "no"], ["no", "No.", "no"], ["maybe", "yes", None]])
    assert compare.agreement(comparison, 0) == [1.0, pytest.approx(2 / 3), 0.5]
    assert compare.agreement(comparison, 2) == [0.5, 0.5, 1.0]
    assert compare.row_agreement(comparison) == [pytest.approx(2 / 3), 1.0, 0.5]


def test_column_stats() -> None:
    comparison = _comparison([["yes", "no"], ["no", "no"]])
    stats = compare.column_stats(comparison, baseline=0)
    assert [s.outputs for s in stats] == [2, 2]
    assert stats[0].mean_latency_s == pytest.approx(0.1)
    assert stats[1].tokens_per_s == pytest.approx(8 / 0.4)
    assert [s.agreement for s in stats] == [1.0, 0.5]


PROMPT = """---
name: echo
description: Repeats.
inputs:
  text:
    kind: string
    default: hi
---
user:
Say {{ text }}
"""


@pytest.fixture
def two_versions(library: Library) -> Library:
    library.save(PROMPT, "v1")
    library.save(PROMPT.replace("Say", "Please say"), "v2")
    return library


def test_run_columns_makes_one_stored_run_per_column(
    two_versions: Library, tiny_backend: Any
) -> None:
    specs = [
        ColumnSpec("echo@1", "tiny", {"max_new_tokens": 3}),
        ColumnSpec("echo@2", "tiny", {"max_new_tokens": 3}),
    ]
    rows = [{"text": "one"}, {"text": "two"}]
    result = compare.run_columns(
        two_versions, specs, rows, lambda spec: Runner(two_versions, tiny_backend)
    )
    assert [c.ref for c in result.columns] == ["echo@1", "echo@2"]
    assert result.rows == rows
    for r, row in enumerate(result.cells):
        assert [o.variables for o in row] == [rows[r], rows[r]]  # type: ignore[union-attr]
    runs = Runner(two_versions).list_runs()
    assert sorted(r.versions[0] for r in runs) == ["echo@1", "echo@2"]
    assert result.columns[0].label == "echo@1 · tiny · max_new_tokens=3"

    again = compare.run_columns(
        two_versions, specs, rows, lambda spec: Runner(two_versions, tiny_backend)
    )
    assert all(o.cached for row in again.cells for o in row)  # type: ignore[union-attr]
    assert [o.text for row in again.cells for o in row] == [  # type: ignore[union-attr]
        o.text
        for row in result.cells
        for o in row  # type: ignore[union-attr]
    ]


@pytest.mark.parametrize(
    ("specs", "rows", "message"),
    [
        ([], [{"text": "a"}], "compare 1 to 4 columns"),
        ([ColumnSpec("echo@1", "m")] * 5, [{"text": "a"}], "compare 1 to 4 columns"),
        ([ColumnSpec("echo@1", "m")], [], "add at least one input row"),
        ([ColumnSpec("echo@9", "m")], [{"text": "a"}], "column 1"),
        (
            [ColumnSpec("echo@1", "m"), ColumnSpec("echo@2", "m", {"top_p": 5})],
            [{"text": "a"}],
            "column 2",
        ),
        ([ColumnSpec("nope", "m")], [{"text": "a"}], "nope"),
    ],
)
def test_bad_columns_are_refused_before_anything_runs(
    two_versions: Library, specs: list[ColumnSpec], rows: list[dict[str, str]], message: str
) -> None:
    def no_runner(spec: ColumnSpec) -> Runner:
        raise AssertionError("nothing may run")

    with pytest.raises(WorkbenchError) as info:
        compare.run_columns(two_versions, specs, rows, no_runner)
    assert message in str(info.value)


def test_compare_runs_aligns_by_variables(two_versions: Library, tiny_backend: Any) -> None:
    runner = Runner(two_versions, tiny_backend)
    rows = [{"text": "a"}, {"text": "b"}]
    first = runner.run([two_versions.get("echo@1")], rows, overrides={"max_new_tokens": 2})
    second = runner.run(
        [two_versions.get("echo@1"), two_versions.get("echo@2")],
        [rows[1], {"text": "c"}],
        overrides={"max_new_tokens": 2},
    )
    pairs = compare.stored_columns(runner, [first.run.id, second.run.id])
    assert pairs == [(first.run.id, "echo@1"), (second.run.id, "echo@1"), (second.run.id, "echo@2")]
    result = compare.compare_runs(runner, pairs)
    assert [r["text"] for r in result.rows] == ["a", "b", "c"]
    assert result.cells[0][1] is None and result.cells[2][0] is None  # no such row in that run
    assert result.cells[1][0].variables == result.cells[1][2].variables == {"text": "b"}  # type: ignore[union-attr]
    with pytest.raises(WorkbenchError, match="no outputs for echo@2"):
        compare.compare_runs(runner, [(first.run.id, "echo@2")])
