"""The Compare grid's model: rows with variables and expected answers, pass/fail without typing,
filters, "got worse" first, pages, the summary strip, the URL selection, where rows come from."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest
from conftest import ECHO_PROMPT, make_output

from workbench import compare, grid, testsets
from workbench.compare import Column, ColumnSpec, Comparison
from workbench.datasets import Dataset
from workbench.errors import WorkbenchError
from workbench.library import Library
from workbench.ratings import RatingRecord
from workbench.runner import Runner
from workbench.runs import OutputRecord
from workbench.scorers import Score

_ids = iter(range(1, 10_000))


def _out(text: str | None, **kw: Any) -> OutputRecord:
    return make_output(text, id=next(_ids), **kw)  # type: ignore[no-any-return]


def _comparison(rows: list[dict[str, Any]], cells: list[list[OutputRecord | None]]) -> Comparison:
    """Rows and their cells; each output carries its row's variables, as stored ones do."""
    cells = [
        [o if o is None else replace(o, variables=dict(row)) for o in outputs]
        for row, outputs in zip(rows, cells, strict=True)
    ]
    columns = [Column(f"col{i}", f"p@{i + 1}", "m", {}, i + 1) for i in range(len(cells[0]))]
    return Comparison(columns, rows, cells)


ROWS = [
    {"text": "good film", "expected": "Positive"},
    {"text": "bad film", "expected": "Negative"},
    {"text": "so-so", "expected": "Neutral"},
]


def _sentiment() -> Comparison:
    return _comparison(
        ROWS,
        [
            [_out("Positive"), _out("Positive.")],  # same answer, different text
            [_out("Negative"), _out("Positive")],  # got worse
            [_out("Positive"), _out("Neutral", cached=True, latency_s=9.0)],  # got better
        ],
    )


def test_rows_show_variables_and_expected_apart() -> None:
    model = grid.build_grid(_sentiment(), 0, [[grid.DEFAULT_CHECK]] * 2)
    assert model.variables == ["text"]
    assert model.has_expected
    assert [r.variables for r in model.rows] == [
        {"text": "good film"},
        {"text": "bad film"},
        {"text": "so-so"},
    ]
    assert [r.expected for r in model.rows] == ["Positive", "Negative", "Neutral"]


def test_pass_fail_against_the_expected_answer_without_typing() -> None:
    model = grid.build_grid(_sentiment(), 0, [[grid.DEFAULT_CHECK]] * 2)
    verdicts = [[c.passed for c in r.cells] for r in model.rows]
    assert verdicts == [[True, True], [True, False], [False, True]]
    assert [r.worse for r in model.rows] == [0, 1, 0]
    assert [r.failing for r in model.rows] == [False, True, True]
    assert [r.differs for r in model.rows] == [True, True, True]


def test_stored_scores_decide_over_the_automatic_check() -> None:
    comparison = _sentiment()
    first = comparison.cells[0][0]
    assert first is not None
    stored = {first.id: [Score("is-json", 0.0, False, "not JSON")]}
    model = grid.build_grid(comparison, 0, [[grid.DEFAULT_CHECK]] * 2, stored)
    assert model.rows[0].cells[0].passed is False


def test_without_expected_or_assertions_nothing_is_judged() -> None:
    comparison = _comparison([{"text": "a"}], [[_out("x"), _out("x")]])
    model = grid.build_grid(comparison, 0, [[], []])
    assert not model.scored and not model.has_expected
    assert model.rows[0].cells[0].passed is None
    assert not model.rows[0].differs and not model.rows[0].failing


def test_filters_and_worse_first() -> None:
    model = grid.build_grid(_sentiment(), 0, [[grid.DEFAULT_CHECK]] * 2)
    assert [r.index for r in grid.select_rows(model, only_failing=True)] == [1, 2]
    assert [r.index for r in grid.select_rows(model, worse_first=True)] == [1, 0, 2]
    same = _comparison(
        [{"text": "a"}, {"text": "b"}], [[_out("x"), _out("x")], [_out("x"), _out("y")]]
    )
    assert [r.index for r in grid.select_rows(grid.build_grid(same), only_differing=True)] == [1]


def test_an_error_where_the_baseline_answered_is_worse() -> None:
    comparison = _comparison([{"text": "a"}], [[_out("x"), _out(None, error="boom")]])
    assert grid.build_grid(comparison).rows[0].worse == 1


@pytest.mark.parametrize(("page", "expected"), [(1, [0, 1]), (2, [2, 3]), (3, [4]), (9, [4])])
def test_pages(page: int, expected: list[int]) -> None:
    comparison = _comparison([{"text": str(i)} for i in range(5)], [[_out("x")] for _ in range(5)])
    rows = grid.build_grid(comparison).rows
    assert grid.page_count(len(rows), 2) == 3
    assert [r.index for r in grid.page_of(rows, page, 2)] == expected


def test_plural() -> None:
    assert grid.plural(1, "row") == "1 row" and grid.plural(2, "row") == "2 rows"
    assert grid.plural(0, "row") == "0 rows"


def test_summary_leaves_cached_answers_out_of_the_timing() -> None:
    comparison = _sentiment()
    model = grid.build_grid(comparison, 0, [[grid.DEFAULT_CHECK]] * 2)
    liked = comparison.cells[0][1]
    assert liked is not None
    rating = RatingRecord(liked.id, 1, 4, "", datetime(2026, 1, 1))
    base, other = grid.summarise(model, {liked.id: rating})
    assert (base.passed, base.scored, other.passed, other.scored) == (2, 3, 2, 3)
    assert other.pass_rate == pytest.approx(2 / 3)
    assert other.agreement == pytest.approx(1 / 3)  # "Positive." is the baseline's answer
    assert (other.generated, other.cached) == (2, 1)
    assert other.mean_latency_s == pytest.approx(0.5)  # the cached 9 s is not this run's
    assert (other.good, other.bad, other.mean_stars) == (1, 0, 4.0)
    lines = grid.summary_lines(other, baseline=False)
    assert lines[0] == "pass 2/3 (67%)"
    assert "1 cached (not timed)" in lines
    assert lines[-1] == "good 1 · bad 0 · stars 4.0"
    assert "baseline" in grid.summary_lines(base, baseline=True)


def test_verdict_labels_are_words() -> None:
    assert grid.verdict_label(None) == "not rated"
    rating = RatingRecord(1, -1, 2, "meh", datetime(2026, 1, 1))
    assert grid.verdict_label(rating) == "bad, 2/5 stars, commented"


@pytest.mark.parametrize(
    ("params", "selection"),
    [
        ({"prompt": "p", "v": "3", "base": "2"}, grid.Selection("p", 3, 2)),
        ({"prompt": "p", "v": "v3", "testset": "s"}, grid.Selection("p", 3, None, "s")),
        ({"prompt": "p", "run": "42"}, grid.Selection("p", run=42)),
        ({"v": "x", "base": "-1", "run": "a"}, grid.Selection()),
    ],
)
def test_url_selection(params: dict[str, str], selection: grid.Selection) -> None:
    assert grid.parse_selection(params) == selection
    assert grid.parse_selection(selection.params()) == selection


def test_previous_version_link() -> None:
    assert grid.previous_version("p", 3).params() == {"prompt": "p", "v": "3", "base": "2"}
    assert grid.previous_version("p", 1, testset="s").params() == {
        "prompt": "p",
        "v": "1",
        "base": "1",
        "testset": "s",
    }


PROMPT = ECHO_PROMPT


def test_a_file_that_fits_no_variable_is_refused_naming_its_columns(two_versions: Library) -> None:
    reviews = Dataset("reviews.csv", ("review", "label"), ({"review": "good", "label": "pos"},))
    with pytest.raises(WorkbenchError) as info:
        compare.check_columns(two_versions, [ColumnSpec("echo@1", "m")], reviews)
    assert "reviews.csv" in str(info.value) and "(its columns: review, label)" in str(info.value)


def test_compare_runs_keep_their_dataset_name_and_suggest_it_again(
    two_versions: Library, tiny_backend: Any
) -> None:
    specs = [ColumnSpec(f"echo@{n}", "tiny", {"max_new_tokens": 2}) for n in (1, 2)]
    rows = Dataset("reviews.csv", ("text",), ({"text": "one"}, {"text": "two"}))
    compare.run_columns(two_versions, specs, rows, lambda spec: Runner(two_versions, tiny_backend))
    store = two_versions.store
    from workbench.runs import list_runs

    runs = list_runs(store)
    assert {r.dataset for r in runs} == {"reviews.csv"}
    suggested = grid.suggest_source(store, "echo")
    assert suggested.run == runs[0].id and suggested.testset is None
    again = grid.run_dataset(store, runs[0].id)
    assert again.name == "reviews.csv" and [r["text"] for r in again.rows] == ["one", "two"]

    # A stored test set the prompt ran on is preferred.
    testsets.save_test_set(store, "echoes", Dataset("x", ("text",), ({"text": "a"},)))
    ts = grid.testset_rows(store, "echoes")
    compare.run_columns(two_versions, specs, ts, lambda spec: Runner(two_versions, tiny_backend))
    assert grid.suggest_source(store, "echo") == grid.Selection(testset="echoes")
    assert grid.suggest_source(store, "other") == grid.Selection()


def test_column_checks(two_versions: Library) -> None:
    with_expected = _comparison([{"text": "a", "expected": "b"}], [[_out("b"), _out("c")]])
    with_expected = Comparison(
        [Column("a", "echo@1", "m", {}, 1), Column("b", "echo@2", "m", {}, 2)],
        with_expected.rows,
        with_expected.cells,
    )
    assert grid.column_checks(two_versions, with_expected) == [[grid.DEFAULT_CHECK]] * 2
    plain = Comparison(with_expected.columns, [{"text": "a"}], with_expected.cells)
    assert grid.column_checks(two_versions, plain) == [[], []]


def test_the_prompts_own_assertions_judge_without_a_model(library: Library) -> None:
    text = PROMPT.replace(
        "    default: hi\n",
        "    default: hi\nmetadata:\n  assert:\n  - not-contains:zzz\n  - type: perplexity\n"
        "    threshold: 50\n  - exact-match\n",
    )
    library.save(text, "with assertions")
    columns = [Column("a", "echo@1", "m", {}, 1)]
    plain = Comparison(columns, [{"text": "a"}], [[_out("x")]])
    # No model is loaded to draw the grid, and exact-match waits for an expected answer.
    assert [c.type for c in grid.column_checks(library, plain)[0]] == ["contains"]
    labelled = Comparison(columns, [{"text": "a", "expected": "x"}], [[_out("x")]])
    assert [c.type for c in grid.column_checks(library, labelled)[0]] == ["contains", "exact-match"]


# --- constrained and free side by side ------------------------------------------------------
def _figures(**kw: Any) -> compare.ConstraintFigures:
    base: dict[str, Any] = dict(
        label="p@1 · m · constrained",
        decoding="JSON Schema from input schema",
        answers=4,
        checked=4,
        valid=3,
        json_checked=4,
        json_parsed=3,
        cut=1,
        mean_tokens=12.5,
        mean_latency_s=0.25,
        generated=4,
    )
    base.update(kw)
    return compare.ConstraintFigures(**base)


def _summary(passed: int, scored: int) -> grid.ColumnSummary:
    return grid.ColumnSummary("x", 4, scored, passed, None, 4, 0, 0.25, 12.5, 0, 0, None)


def test_constraint_lines_say_what_a_column_decoded_under_and_flag_cut_answers() -> None:
    assert grid.constraint_lines(_figures()) == [
        "decoded under JSON Schema from input schema",
        "follows the constraint 3/4 (75%)",
        "parses as JSON 3/4 (75%)",
        "1 answer cut at max_new_tokens (incomplete)",
    ]
    free = grid.constraint_lines(_figures(decoding="free", cut=0, json_checked=0))
    assert free == ["decoded free", "follows the constraint 3/4 (75%)"]
    assert grid.constraint_lines(_figures(decoding=None, checked=0)) == []


def test_constraint_table_puts_rates_pass_tokens_latency_and_cuts_side_by_side() -> None:
    free = _figures(
        label="p@1 · m · free",
        decoding="free",
        valid=1,
        json_parsed=2,
        cut=0,
        mean_latency_s=None,
        generated=0,
    )
    rows = grid.constraint_table([_figures(), free], [_summary(2, 4), _summary(3, 4)])
    assert rows[0] == {
        "column": "1: p@1 · m · constrained",
        "decoded": "JSON Schema from input schema",
        "parses as JSON": "3/4 (75%)",
        "constraint-valid": "3/4 (75%)",
        "pass": "2/4 (50%)",
        "mean tokens": "12.5",
        "mean latency": "0.25 s over 4",
        "cut (length)": "1",
    }
    assert rows[1]["constraint-valid"] == "1/4 (25%)" and rows[1]["pass"] == "3/4 (75%)"
    assert rows[1]["mean latency"] == "cached (not timed)"
    nothing = grid.constraint_table(
        [_figures(decoding=None, checked=0, json_checked=0)], [_summary(0, 0)]
    )
    assert nothing[0]["decoded"] == "nothing declared" and nothing[0]["pass"] == "–"
