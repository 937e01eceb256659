"""Stability across seeds: answer groups, per-row and per-version figures, reports, the command."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import CliResult, make_output

from workbench.answers import AnswerGroup, group_answers
from workbench.errors import WorkbenchError
from workbench.runs import run_outputs, run_votes
from workbench.stability import (
    measure,
    render_report,
    report_dict,
    run_stability,
    stability_report,
    summary_rows,
    version_stability,
)


def test_answers_equal_after_normalisation_form_one_group() -> None:
    groups = group_answers(["Positive.", "positive", "Negative", " POSITIVE ", "positive", None])
    assert groups == [
        AnswerGroup("positive", "positive", 4),  # the most frequent spelling names the group
        AnswerGroup("Negative", "negative", 1),
    ]


def test_groups_tie_in_order_of_first_appearance() -> None:
    assert [g.answer for g in group_answers(["b", "a", "a", "b", "c"])] == ["b", "a", "c"]


def test_articles_and_spacing_do_not_split_answers() -> None:
    (group,) = group_answers(["The answer is 42", "answer is  42!", "an answer is 42"])
    assert group.count == 3


def test_no_answers_no_groups() -> None:
    assert group_answers([None, None]) == []
    assert group_answers([]) == []


def _samples(answers: list[str | None], row: int = 0, **variables: Any) -> list[Any]:
    return [
        make_output(
            text=a if a is not None else "",
            answer=a,
            row_index=row,
            sample_index=i,
            variables={"text": f"row {row}", **variables},
            id=100 * row + i,
        )
        for i, a in enumerate(answers)
    ]


def test_row_agreement_counts_unanswered_samples_in_the_denominator() -> None:
    v = version_stability("p@1", 1, "m", _samples(["Yes", "yes", None, "No"]))
    (row,) = v.rows
    assert row.samples == 4 and row.unanswered == 1
    assert row.majority == "Yes" and row.agreement == pytest.approx(0.5)
    assert row.distinct == 2 and not row.unanimous


def test_version_figures_over_rows() -> None:
    outputs = (
        _samples(["A", "A", "A", "A"], row=0)
        + _samples(["A", "B", "B", "C"], row=1)
        + _samples(["x", "y", "z", "w"], row=2)
    )
    v = version_stability("p@1", 7, "m", outputs)
    assert [r.row_index for r in v.rows] == [0, 1, 2]
    assert v.samples == 4
    assert v.mean_agreement == pytest.approx((1 + 0.5 + 0.25) / 3)
    assert v.unanimous_rate == pytest.approx(1 / 3)
    assert v.mean_distinct == pytest.approx((1 + 3 + 4) / 3)
    assert v.majority_accuracy is None and v.sample_accuracy is None  # no expected column


def test_expected_column_gives_majority_and_one_sample_accuracy() -> None:
    outputs = (
        _samples(["Positive", "positive.", "Negative"], row=0, expected="Positive")
        + _samples(["Neutral", "Negative", "Negative"], row=1, expected="negative")
        + _samples(["Neutral", "Neutral", "Positive"], row=2, expected="Positive")
    )
    v = version_stability("p@1", 1, "m", outputs)
    assert [r.majority_correct for r in v.rows] == [True, True, False]
    assert v.majority_accuracy == pytest.approx(2 / 3)
    # single samples: 2/3, 2/3, 1/3 right → the vote gains over one sample
    assert v.sample_accuracy == pytest.approx((2 / 3 + 2 / 3 + 1 / 3) / 3)


def test_errors_are_no_answer() -> None:
    failed = make_output(text=None, error="boom", answer=None, sample_index=2, id=9)
    outputs = [*_samples(["A", "A"]), failed]
    (row,) = version_stability("p@1", 1, "m", outputs).rows
    assert row.samples == 3 and row.unanswered == 1 and row.agreement == pytest.approx(2 / 3)


def _report() -> Any:
    return stability_report(
        "reviews.csv",
        [
            ("p@1", 1, "m", _samples(["A", "A", "B"], row=0) + _samples(["C", "C", "C"], row=1)),
            ("p@2", 1, "m", _samples(["A", "A", "A"], row=0) + _samples(["C", "D", "E"], row=1)),
        ],
    )


def test_report_compares_versions_row_by_row() -> None:
    report = _report()
    assert report.seeds == 3
    assert report.majority_matrix() == [
        {"row": 1, "text": "row 0", "p@1": "A (67%)", "p@2": "A (100%)"},
        {"row": 2, "text": "row 1", "p@1": "C (100%)", "p@2": "C (33%)"},
    ]
    lines = summary_rows(report)
    assert [line["version"] for line in lines] == ["p@1", "p@2"]
    assert lines[0]["agreement"] == pytest.approx((2 / 3 + 1) / 2)
    assert lines[1]["unanimous"] == pytest.approx(0.5)


def test_report_as_json_and_csv() -> None:
    report = _report()
    data = json.loads(render_report(report, ".json"))
    assert data == json.loads(json.dumps(report_dict(report)))
    assert data["versions"][1]["results"][1]["answers"] == {"C": 1, "D": 1, "E": 1}
    rows = list(csv.DictReader(io.StringIO(render_report(report, ".csv").decode())))
    assert len(rows) == 4
    assert rows[0]["majority"] == "A" and rows[0]["agreement"] == "0.6667"
    with pytest.raises(WorkbenchError, match=r"use \.json, \.csv"):
        render_report(report, ".xml")


# --- on the tiny model, through the runner ------------------------------------------------------
def test_measure_runs_every_version_under_n_seeds_and_matches_the_votes(runner: Any) -> None:
    lib = runner.library
    versions = [lib.get("zero-shot-sentiment"), lib.get("zero-shot-sentiment-chat")]
    rows = [{"text": "great phone"}, {"text": "awful battery"}]
    report = measure(runner, versions, rows, 4, overrides={"max_new_tokens": 3})
    assert [v.ref for v in report.versions] == [v.ref for v in versions]
    assert report.seeds == 4
    run_id = report.versions[0].run_id
    outputs = run_outputs(runner.store, run_id)
    assert len(outputs) == 2 * 2 * 4
    assert len({o.seed for o in outputs}) == 4  # four seeds, the same four for every row
    votes = {(f"{v.prompt}@{v.version}", v.row_index): v for v in run_votes(runner.store, run_id)}
    for version in report.versions:
        for row in version.rows:
            vote = votes[(version.ref, row.row_index)]
            # the stored self-consistency vote and the stability report group answers alike
            assert vote.answer == row.majority
            assert vote.agreement == pytest.approx(row.agreement)
            assert vote.counts == {g.answer: g.count for g in row.groups}
    # the same report again from the stored run, nothing generated
    again = run_stability(runner.store, run_id)
    assert report_dict(again) == report_dict(report)


def test_measure_refuses_fewer_than_two_seeds(runner: Any) -> None:
    with pytest.raises(WorkbenchError, match="at least 2 seeds"):
        measure(runner, [runner.library.get("zero-shot-sentiment")], [{"text": "a"}], 1)


def test_stability_command_prints_the_table_and_writes_the_report(
    tiny_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    data = tmp_path / "rows.csv"
    data.write_text("text,expected\nI love it,Positive\nI hate it,Negative\n")
    out = tmp_path / "report.json"
    code, stdout, stderr = tiny_cli(
        "stability",
        "zero-shot-sentiment",
        "zero-shot-sentiment-chat",
        "--dataset",
        data,
        "--seeds",
        3,
        "--param",
        "max_new_tokens=3",
        "--output",
        out,
    )
    assert code == 0, stderr
    header = stdout.splitlines()[0]
    for column in ("VERSION", "AGREEMENT", "UNANIMOUS", "DISTINCT ANSWERS", "MAJORITY ACCURACY"):
        assert column in header
    assert "zero-shot-sentiment@1" in stdout and "zero-shot-sentiment-chat@1" in stdout
    report = json.loads(out.read_text())
    assert report["seeds"] == 3 and len(report["versions"]) == 2
    assert all(len(v["results"]) == 2 for v in report["versions"])
    run_id = report["versions"][0]["run_id"]
    code, stdout2, _ = tiny_cli("stability", "--run", run_id, "--json")
    assert code == 0
    assert json.loads(stdout2)["versions"] == report["versions"]
    # a pattern applied afterwards to the stored run: nothing generated, answers regrouped
    code, stdout3, _ = tiny_cli("stability", "--run", run_id, "--answer-pattern", "^$", "--json")
    assert code == 0
    regrouped = json.loads(stdout3)
    assert regrouped["answer_pattern"] == "^$"
    assert all(r["majority"] is None for v in regrouped["versions"] for r in v["results"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["zero-shot-sentiment", "--var", "text=a", "--seeds", "1"], "at least 2 seeds"),
        (["zero-shot-sentiment"], "give the input"),
        (["--seeds", "3"], "give one or more prompt versions"),
        (["zero-shot-sentiment", "--var", "text=a", "--output", "r.xml"], "use a file ending in"),
        (["zero-shot-sentiment", "--run", "1"], "give no REFS"),
        (["zero-shot-sentiment", "--dataset", "nowhere.csv"], "no such file"),
        (["zero-shot-sentiment", "--var", "text=a", "--answer-pattern", "(x"], "not a valid regex"),
    ],
)
def test_stability_command_bad_input(
    tiny_cli: Callable[..., CliResult], args: list[str], message: str
) -> None:
    code, _, stderr = tiny_cli("stability", *args)
    assert code != 0
    assert message in stderr
    assert "Traceback" not in stderr


def test_charts_show_every_rows_agreement_and_the_vote_gain() -> None:
    from workbench.app.charts import stability_chart, vote_gain_chart

    report = _report()
    fig = stability_chart(report)
    assert [t.name for t in fig.data] == ["1. p@1", "2. p@2"]
    assert list(fig.data[1].y) == pytest.approx([100.0, 100 / 3])
    labelled = stability_report(
        "r", [("p@1", 1, "m", _samples(["A", "A", "B"], row=0, expected="B"))]
    )
    gain = vote_gain_chart(labelled)
    assert [t.name for t in gain.data] == ["one sample", "majority vote"]
    assert list(gain.data[0].y) == pytest.approx([100 / 3]) and list(gain.data[1].y) == [0.0]


def test_an_answer_pattern_picks_the_answer_out_of_each_output() -> None:
    texts = ["Positive\n\nWhy is that?", "Label: positive.", "I think Negative", "no label"]
    outputs = [make_output(text=t, answer=t, sample_index=i, id=i) for i, t in enumerate(texts)]
    whole = version_stability("p@1", 1, "m", outputs)
    assert whole.rows[0].distinct == 4  # every whole text differs
    picked = stability_report("r", [("p@1", 1, "m", outputs)], r"(?i)(positive|negative)")
    (row,) = picked.versions[0].rows
    assert [(g.answer, g.count) for g in row.groups] == [("Positive", 2), ("Negative", 1)]
    assert row.unanswered == 1 and row.agreement == pytest.approx(0.5)
    assert report_dict(picked)["answer_pattern"] == "(?i)(positive|negative)"


def test_a_bad_answer_pattern_is_refused() -> None:
    with pytest.raises(WorkbenchError, match="not a valid regex"):
        stability_report("r", [], "(unclosed")
