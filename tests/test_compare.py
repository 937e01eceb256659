"""Comparison service: columns run as ordinary runs, rows aligned, word diffs, agreement."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import ECHO_PROMPT, make_output

from workbench import compare, evaluate, scorers
from workbench.app import charts
from workbench.compare import Column, ColumnSpec, Comparison
from workbench.errors import WorkbenchError
from workbench.library import Library
from workbench.runner import Runner
from workbench.runs import OutputRecord, list_runs
from workbench.scorers import AssertionConfigError, Score


def _output(text: str, *, id: int = 1, answer: str | None = None, **kw: Any) -> OutputRecord:
    return make_output(text, id=id, answer=answer, **kw)  # type: ignore[no-any-return]


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


PROMPT = ECHO_PROMPT


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
    runs = list_runs(two_versions.store)
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
    pairs = compare.stored_columns(runner.store, [first.run.id, second.run.id])
    assert pairs == [(first.run.id, "echo@1"), (second.run.id, "echo@1"), (second.run.id, "echo@2")]
    result = compare.compare_runs(runner.store, pairs)
    assert [r["text"] for r in result.rows] == ["a", "b", "c"]
    assert result.cells[0][1] is None and result.cells[2][0] is None  # no such row in that run
    assert result.cells[1][0].variables == result.cells[1][2].variables == {"text": "b"}  # type: ignore[union-attr]
    with pytest.raises(WorkbenchError, match="no outputs for echo@2"):
        compare.compare_runs(runner.store, [(first.run.id, "echo@2")])


# --- scores -------------------------------------------------------------------------------------
def _score(metric: str, passed: bool, value: float | None = None, weight: float = 1.0) -> Score:
    if value is None:
        value = 1.0 if passed else 0.0
    return Score(metric, value, passed, "ok" if passed else "nope", weight)


def test_column_scores_totals() -> None:
    comparison = _comparison([["a", "b"], ["c", "d"], ["e", None]])
    scores = {
        0: [_score("exact-match", True), _score("rouge-l", True, 0.8)],  # row 1, column 1
        10: [_score("exact-match", False), _score("rouge-l", True, 0.6)],  # row 2, column 1
        20: [],  # row 3, column 1: nothing stored counts as unscored
        1: [_score("exact-match", True), _score("rouge-l", False, 0.2, weight=0)],  # column 2
    }
    first, second = compare.column_scores(comparison, scores)
    assert (first.label, first.scored, first.passed) == ("c0", 2, 1)
    assert first.pass_rate == 0.5
    assert first.mean_score == pytest.approx((1.0 + 0.5) / 2)
    em, rouge = first.metrics
    assert (em.metric, em.n, em.mean, em.pass_rate) == ("exact-match", 2, 0.5, 0.5)
    assert rouge.mean == pytest.approx(0.7) and rouge.pass_rate == 1.0
    # A weight-0 check is reported but decides nothing.
    assert (second.scored, second.passed, second.pass_rate, second.mean_score) == (1, 1, 1.0, 1.0)
    assert second.metric("rouge-l") is not None and second.metric("rouge-l").pass_rate == 0.0  # type: ignore[union-attr]
    assert second.metric("bleu") is None
    assert compare.score_metrics([first, second]) == ["exact-match", "rouge-l"]


def test_column_scores_without_scores() -> None:
    comparison = _comparison([["a", "b"]])
    totals = compare.column_scores(comparison, {})
    assert [(t.scored, t.passed, t.pass_rate, t.mean_score, t.metrics) for t in totals] == [
        (0, 0, None, None, [])
    ] * 2
    assert compare.score_metrics(totals) == []


def test_column_scores_skip_values_that_could_not_be_computed() -> None:
    comparison = _comparison([["a"], ["b"]])
    scores = {0: [Score("f1", None, False, "no expected")], 10: [_score("f1", True, 0.9)]}
    (total,) = compare.column_scores(comparison, scores)
    assert total.metrics[0].n == 2 and total.metrics[0].mean == pytest.approx(0.9)
    assert total.metrics[0].pass_rate == 0.5


def test_score_badges_are_one_plain_line() -> None:
    scores = [
        Score("exact-match", 1.0, True, "matches"),
        Score("is-json", 0.0, False, "not JSON: Expecting value: line 1 column 1 (char 0)\n<b>x"),
        Score("f1", None, False, "this row has no expected answer"),
    ]
    line = compare.score_badges(scores, detail_chars=32)
    assert line == (
        "✓ exact-match 1.00 · ✗ is-json 0.00 (not JSON: Expecting value: line…)"
        " · ✗ f1 (this row has no expected answer)"
    )
    assert "\n" not in compare.score_badges(scores)
    assert compare.score_badges([]) == ""


def test_parse_assertion_lines() -> None:
    checks = scorers.parse_assertion_lines(
        "icontains:positive\n\n# a comment\n  rouge-l>=0.5  \n"
        '{"type": "regex", "value": "^P", "weight": 2}\nnot-contains:sorry'
    )
    assert [c.name for c in checks] == ["icontains", "rouge-l", "regex", "not-contains"]
    assert checks[1].threshold == 0.5 and checks[2].weight == 2 and checks[3].negate
    assert scorers.parse_assertion_lines("  \n") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("is-json\nregex:(", "line 2: regex"),
        ("is-json\n\n{nope", "line 3: not a JSON object"),
        ('["is-json"]', "line 1"),
        ("no-such-scorer", "line 1"),
    ],
)
def test_parse_assertion_lines_names_the_bad_line(text: str, message: str) -> None:
    with pytest.raises(AssertionConfigError, match=message):
        scorers.parse_assertion_lines(text)


def test_score_charts() -> None:
    comparison = _comparison([["a", "b"], ["c", "d"]])
    scores = {
        0: [_score("exact-match", True), _score("rouge-l", True, 0.8)],
        10: [_score("exact-match", False), _score("rouge-l", False, 0.1)],
        1: [_score("exact-match", True)],
    }
    totals = compare.column_scores(comparison, scores)
    bar = charts.pass_rate_chart(totals)
    assert list(bar.data[0].y) == [50, 100]
    assert list(bar.data[0].text) == ["50%", "100%"]
    boxes = charts.metric_chart(comparison, scores)
    assert [list(t.x) for t in boxes.data] == [
        ["exact-match", "rouge-l", "exact-match", "rouge-l"],
        ["exact-match"],
    ]
    assert list(boxes.data[0].y) == [1.0, 0.8, 0.0, 0.1]
    scatter = charts.score_latency_chart(comparison, scores)
    assert [list(t.x) for t in scatter.data] == [[0.1, 0.1], [0.2]]
    assert [list(t.y) for t in scatter.data] == [[1.0, 0.0], [1.0]]
    assert list(scatter.data[0].hovertext) == ["c0 · row 1", "c0 · row 2"]


ASSERTING_PROMPT = PROMPT.replace(
    "    default: hi\n", "    default: hi\nmetadata:\n  assert:\n  - not-contains:qqqq\n"
)


def test_score_comparison_stores_scores_for_every_output(
    library: Library, tiny_backend: Any
) -> None:
    library.save(PROMPT, "v1")
    library.save(ASSERTING_PROMPT, "v2 asserts")
    runner = Runner(library, tiny_backend)
    rows = [{"text": "a", "expected": "a"}, {"text": "b", "expected": "b"}]
    run = runner.run(
        [library.get("echo@1"), library.get("echo@2")], rows, overrides={"max_new_tokens": 2}
    )
    comparison = compare.compare_runs(
        runner.store, [(run.run.id, "echo@1"), (run.run.id, "echo@2")]
    )
    checks = scorers.parse_assertion_lines("is-json\nexact-match")

    def no_model(spec: str) -> Any:
        raise AssertionError("no scorer here needs a model")

    result = compare.score_comparison(library, comparison, checks, model_for=no_model)
    assert result.outputs == 4
    assert [[c.name for c in cs] for cs in result.checks] == [
        ["is-json", "exact-match"],
        ["not-contains", "is-json", "exact-match"],
    ]
    stored = evaluate.stored_scores(library.store, comparison.output_ids)
    assert [len(stored[o.id]) for o in comparison.column(0)] == [2, 2]
    assert [len(stored[o.id]) for o in comparison.column(1)] == [3, 3]
    totals = compare.column_scores(comparison, stored)
    assert result.passed == sum(t.passed for t in totals)
    assert [t.scored for t in totals] == [2, 2]

    # Scoring again replaces the same metrics instead of adding to them.
    compare.score_comparison(library, comparison, checks[:1])
    again = evaluate.stored_scores(library.store, comparison.output_ids)
    assert {o: len(s) for o, s in again.items()} == {o: len(s) for o, s in stored.items()}


def test_score_comparison_refuses_before_scoring(library: Library, tiny_backend: Any) -> None:
    library.save(PROMPT, "v1")
    runner = Runner(library, tiny_backend)
    run = runner.run([library.get("echo@1")], [{"text": "a"}], overrides={"max_new_tokens": 2})
    comparison = compare.compare_runs(runner.store, [(run.run.id, "echo@1")])
    with pytest.raises(WorkbenchError, match="no assertions"):
        compare.score_comparison(library, comparison, [])
    with pytest.raises(WorkbenchError, match="no row has an 'expected'"):
        compare.score_comparison(
            library, comparison, scorers.parse_assertion_lines("is-json\nexact-match")
        )
    assert evaluate.stored_scores(library.store, comparison.output_ids) == {}


# --- constrained and free side by side ------------------------------------------------------------
SCHEMA = {
    "type": "object",
    "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 9}},
    "required": ["a"],
    "additionalProperties": False,
}
UNDER = {"kind": "json_schema", "spec": json.dumps(SCHEMA, sort_keys=True), "source": "s"}


def _schema_prompt(library: Library, prompt_text: Any, **metadata: Any) -> str:
    text = prompt_text(
        "js",
        "user:\nJSON for {{ text }}:\n",
        model={"options": {"maxOutputTokens": 24}},
        metadata={"technique": "zero-shot", **metadata},
    )
    return library.save(text).version.ref


def test_a_constrain_override_is_labelled_constrained_or_free() -> None:
    assert compare.column_label("p@1", "m", {"constrain": True}) == "p@1 · m · constrained"
    assert compare.column_label("p@1", "m", {"constrain": False, "seed": 2}) == (
        "p@1 · m · free, seed=2"
    )


def test_declared_constraint_is_what_the_runner_decodes_under(
    library: Library, prompt_text: Any
) -> None:
    plain = _schema_prompt(library, prompt_text)
    assert compare.declared_constraint(library.get(plain)) is None
    ref = _schema_prompt(library, prompt_text, json_schema=SCHEMA)
    found = compare.declared_constraint(library.get(ref))
    assert found is not None and found.kind == "json_schema"
    assert compare.describe(found) == "JSON Schema from metadata.json_schema"
    choices = _schema_prompt(library, prompt_text, choices=["Yes", "No"])
    assert compare.declared_constraint(library.get(choices)) is None  # scored, not generated


def test_json_answer_declares_its_schema_input(builtin_library: Library) -> None:
    builtin = compare.declared_constraint(builtin_library.get("json-answer"))
    assert builtin is not None and compare.describe(builtin) == "JSON Schema from input schema"
    # a row's own schema is the one its answer decodes under
    row = compare.declared_constraint(
        builtin_library.get("json-answer"), {"schema": json.dumps(SCHEMA)}
    )
    assert row is not None and row.spec == json.dumps(SCHEMA, sort_keys=True)


def test_constrained_and_free_adds_a_free_twin_of_each_constrained_column(
    library: Library, prompt_text: Any
) -> None:
    ref = _schema_prompt(library, prompt_text, json_schema=SCHEMA)
    plain = _schema_prompt(library, prompt_text)
    rows = [{"text": "a"}]
    same = [ColumnSpec(ref, "m"), ColumnSpec(ref, "m")]  # json-answer has one version
    specs = compare.constrained_and_free(library, same, rows)
    assert [s.overrides for s in specs] == [{"constrain": True}, {"constrain": False}]
    assert [s.label for s in specs] == [f"{ref} · m · constrained", f"{ref} · m · free"]
    kept = [
        ColumnSpec(plain, "m"),  # declares nothing
        ColumnSpec(ref, "m", {"constrain": False}),  # already free
    ]
    assert compare.constrained_and_free(library, kept, rows) == kept
    server = [ColumnSpec(ref, "openai:x@http://h/v1")]  # a server is sent the constraint too
    assert [s.overrides for s in compare.constrained_and_free(library, server, rows)] == [
        {"constrain": True},
        {"constrain": False},
    ]
    with pytest.raises(WorkbenchError, match="at most 4"):
        compare.constrained_and_free(
            library, [ColumnSpec(ref, "m", {"seed": s}) for s in range(3)], rows
        )


def test_answers_are_checked_against_their_constraint_and_counted_per_column(
    library: Library, prompt_text: Any
) -> None:
    ref = _schema_prompt(library, prompt_text, json_schema=SCHEMA)
    constrained = [
        _output('{"a": 1}', id=1, params={"constraint": UNDER}, completion_tokens=6),
        _output('{"a": ', id=2, params={"constraint": UNDER}, finish_reason="length"),
        # a server's answer that did not follow the constraint: stored with the reason as its error
        _output("Sure", id=6, params={"constraint": UNDER}, error="the server ignored it"),
    ]
    free = [
        _output('{"a": 3}', id=3, cached=True, completion_tokens=6),
        _output("Sure! here", id=4, finish_reason="length", completion_tokens=24),
        _output(None, id=5, error="boom"),
    ]
    cells: list[list[OutputRecord | None]] = [
        [a, b] for a, b in zip(constrained, free, strict=True)
    ]
    columns = [
        Column(f"{ref} · m · constrained", ref, "m", {"constrain": True}, 1),
        Column(f"{ref} · m · free", ref, "m", {"constrain": False}, 2),
    ]
    comparison = Comparison(columns, [{"text": str(i)} for i in range(3)], cells)
    checks = compare.check_answers(library, comparison)
    assert set(checks) == {1, 2, 3, 4, 6}  # not the error without an answer
    assert checks[6].problem == "not JSON"
    assert checks[1].problem is None and checks[1].decoded is not None
    assert checks[2].problem is not None and checks[2].problem.startswith("incomplete")
    assert checks[1].line == "under JSON Schema from s · follows it"
    assert checks[2].line.startswith("under JSON Schema from s · does not: incomplete")
    assert checks[3].decoded is None and checks[3].problem is None
    assert checks[3].line == "free · follows JSON Schema from metadata.json_schema"
    assert checks[4].problem is not None
    under, loose = compare.constraint_figures(comparison, checks)
    assert (under.decoding, loose.decoding) == ("JSON Schema from s", "free")
    assert (under.answers, under.checked, under.valid, under.cut) == (3, 3, 1, 1)
    assert (under.json_checked, under.json_parsed) == (3, 1)
    assert under.valid_rate == under.json_parse_rate == pytest.approx(1 / 3)
    assert (loose.answers, loose.checked, loose.valid, loose.cut) == (2, 2, 1, 1)
    assert loose.mean_tokens == 15.0
    assert loose.generated == 1 and loose.mean_latency_s == 0.5  # the cached one is not timed


def test_a_version_constrained_and_free_side_by_side_on_the_tiny_model(
    library: Library, prompt_text: Any, tiny_backend: Any
) -> None:
    ref = _schema_prompt(library, prompt_text, json_schema=SCHEMA)
    rows = [{"text": "a"}, {"text": "bb"}]
    specs = compare.constrained_and_free(library, [ColumnSpec(ref, "tiny")], rows)
    comparison = compare.run_columns(
        library, specs, rows, lambda spec: Runner(library, tiny_backend)
    )
    under, free = comparison.column(0), comparison.column(1)
    assert all(o.params["constraint"]["source"] == "metadata.json_schema" for o in under)
    assert all("constraint" not in o.params for o in free)
    figures = compare.constraint_figures(comparison, compare.check_answers(library, comparison))
    assert figures[0].valid == figures[0].checked == 2 and figures[0].cut == 0
    assert figures[0].json_parse_rate == 1.0
    assert figures[1].decoding == "free" and figures[1].checked == 2
