"""Evaluate page: versions × rows × assertions → a report, scores stored, mistakes refused early."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import app_test, shown

from workbench import jobs
from workbench.evaluate import stored_scores
from workbench.runs import list_runs
from workbench.workspace import open_library

PAGE = "pages/6_Evaluate.py"
CHAT, COMPLETION = "zero-shot-sentiment-chat@1", "zero-shot-sentiment@1"


def _page_with_rows(refs: list[str]) -> Any:
    at = app_test(PAGE).run()
    assert not at.exception, at.exception
    at.multiselect(key="eval_refs").set_value(refs).run()
    at.session_state["eval_rows:rows"] = {
        "edited_rows": {0: {"text": "I love it", "expected": "Positive"}},
        "added_rows": [{"text": "I hate it", "expected": "Negative"}],
        "deleted_rows": [],
    }
    at.text_input(key="eval_params").set_value("max_new_tokens=3").run()
    return at


def _evaluate(at: Any) -> Any:
    """Click Evaluate, wait for the job, redraw: the finished job."""
    at.button(key="eval_run").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    job = jobs.get_job(at.session_state["eval_job"])
    assert job is not None and job.wait(120) and job.error is None, job and job.error
    at.run()
    assert not at.exception, at.exception
    return job


def test_two_versions_report_and_stored_scores(app_env: Path) -> None:
    at = _page_with_rows([CHAT, COMPLETION])
    at.text_area(key="eval_asserts").set_value("exact-match\nnot-contains:zzzz").run()
    job = _evaluate(at)
    summary = at.dataframe[-2].value
    assert list(summary["version"]) == [CHAT, COMPLETION]
    assert list(summary["rows"]) == [2, 2]
    # The tiny random model never answers "Positive": exact-match fails, not-contains passes.
    assert list(summary["pass rate"]) == [0.0, 0.0]
    assert "not-contains (mean · pass)" in summary.columns
    assert set(summary["not-contains (mean · pass)"]) == {"1.00 · 100%"}
    detail = at.dataframe[-1].value
    assert len(detail) == 4 and not detail["passed"].any()
    assert all("exact-match" in f for f in detail["failed"])
    # Scores are stored with the outputs; the report downloads in three formats.
    report = job.result
    ids = [r.output_id for v in report.versions for r in v.rows]
    assert all(len(s) == 2 for s in stored_scores(open_library().store, ids).values())
    assert len(at.get("download_button")) == 3
    # The pass-rate chart is on a 0–100% axis whatever the rates are (here 0%).
    (chart,) = at.get("plotly_chart")
    figure = json.loads(chart.proto.spec)
    assert figure["layout"]["yaxis"]["range"] == [0, 105]
    assert figure["layout"]["yaxis"]["ticksuffix"] == "%"
    assert figure["data"][0]["y"] == [0.0, 0.0]


def test_bad_assertion_is_refused_before_anything_runs(app_env: Path) -> None:
    at = _page_with_rows([CHAT])
    at.text_area(key="eval_asserts").set_value("regex:(unclosed").run()
    at.button(key="eval_run").click().run()
    assert not at.exception, at.exception
    assert at.error and "regex" in at.error[0].value.lower()
    assert "eval_job" not in at.session_state
    assert list_runs(open_library().store) == []


def test_rows_without_an_expected_answer_fail_with_a_reason(app_env: Path) -> None:
    at = app_test(PAGE).run()
    at.multiselect(key="eval_refs").set_value([CHAT]).run()
    at.session_state["eval_rows:rows"] = {
        "edited_rows": {0: {"text": "I love it"}},  # the expected cell is left empty
        "added_rows": [],
        "deleted_rows": [],
    }
    at.text_input(key="eval_params").set_value("max_new_tokens=3").run()
    at.text_area(key="eval_asserts").set_value(json.dumps({"type": "rouge-l"})).run()
    at.button(key="eval_run").click().run()
    assert not at.exception, at.exception
    job = jobs.get_job(at.session_state["eval_job"])
    assert job is not None and job.wait(120) and job.error is None
    at.run()
    detail = at.dataframe[-1].value
    assert list(detail["passed"]) == [False]
    assert "expected" in detail["failed"][0]


def test_rows_saved_as_a_test_set_and_evaluated_from_it(app_env: Path) -> None:
    from workbench.testsets import get_test_set

    at = _page_with_rows([CHAT])
    at.text_input(key="eval_save_name").set_value("reviews").run()
    at.button(key="eval_save_set").click().run()
    assert not at.exception, at.exception
    assert at.success and "reviews@1 (2 rows)" in shown(at.success[0].value)
    stored = get_test_set(open_library().store, "reviews@1")
    assert [r["expected"] for r in stored.rows] == ["Positive", "Negative"]
    at.button(key="eval_save_set").click().run()
    assert at.info and "Unchanged" in at.info[-1].value

    page = app_test(PAGE).run()
    page.multiselect(key="eval_refs").set_value([CHAT]).run()
    page.radio(key="eval_source").set_value("A stored test set").run()
    assert page.selectbox(key="eval_test_set").value == "reviews@1"
    page.text_input(key="eval_params").set_value("max_new_tokens=3").run()
    page.text_area(key="eval_asserts").set_value("exact-match").run()
    page.button(key="eval_run").click().run()
    assert not page.exception, page.exception
    job = jobs.get_job(page.session_state["eval_job"])
    assert job is not None and job.wait(120) and job.error is None
    assert job.result.dataset == "reviews@1"
    assert [r.variables["text"] for r in job.result.versions[0].rows] == ["I love it", "I hate it"]


def test_stability_across_seeds_report_and_charts(app_env: Path) -> None:
    at = _page_with_rows([CHAT, COMPLETION])
    at.radio(key="eval_measure").set_value("Stability across seeds").run()
    assert not at.exception, at.exception
    assert not any(t.key == "eval_asserts" for t in at.text_area)  # no assertions here
    at.number_input(key="eval_seeds").set_value(3).run()
    job = _evaluate(at)
    assert any("3 seeds" in s.value for s in at.subheader)
    tables = [d.value for d in at.dataframe]
    summary = next(t for t in tables if "agreement" in t.columns and "seeds" in t.columns)
    assert list(summary["version"]) == [CHAT, COMPLETION]
    assert list(summary["seeds"]) == [3, 3]
    report = job.result
    for v, agreement in zip(report.versions, summary["agreement"], strict=True):
        assert agreement == v.mean_agreement
        assert 1 / 3 <= agreement <= 1.0
    assert "majority accuracy" in summary.columns  # the rows carry an expected column
    charts = at.get("plotly_chart")
    assert len(charts) == 2  # agreement per row, and one sample vs majority vote
    matrix = next(t for t in tables if CHAT in t.columns)
    assert list(matrix["row"]) == [1, 2] and CHAT in matrix.columns and COMPLETION in matrix.columns
    # all samples are stored: 2 versions × 2 rows × 3 seeds in one run
    runs = list_runs(open_library().store)
    assert len(runs) == 1 and runs[0].total == 12 and runs[0].done == 12
    assert len(at.get("download_button")) == 2


def test_constrained_and_free_side_by_side(app_env: Path) -> None:
    """json-answer declares a JSON Schema (its schema input): the page offers the switch and
    the side-by-side run, and the report shows the same version constrained and free."""
    at = app_test(PAGE).run()
    at.multiselect(key="eval_refs").set_value(["json-answer@1"]).run()
    assert not at.exception, at.exception
    assert at.toggle(key="eval_constrain").value is True
    at.checkbox(key="eval_vs_free").check().run()
    # json-answer's own schema is longer than the tiny model's context: a small one per row
    schema = json.dumps(
        {
            "type": "object",
            "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 9}},
            "required": ["a"],
            "additionalProperties": False,
        }
    )
    at.session_state["eval_rows:rows"] = {
        "edited_rows": {0: {"question": "A digit?", "schema": schema, "expected": "x"}},
        "added_rows": [],
        "deleted_rows": [],
    }
    at.text_area(key="eval_asserts").set_value("is-json").run()
    at.text_input(key="eval_params").set_value("max_new_tokens=24").run()
    _evaluate(at)
    summary = at.dataframe[-2].value
    assert list(summary["version"]) == ["json-answer@1 (constrained)", "json-answer@1 (free)"]
    assert list(summary["decoded under"]) == ["json_schema (input schema)", "free"]
    assert summary["constraint-valid"].iloc[0] == 1.0
    assert {"cut (length)", "mean tokens", "mean latency (s)"} <= set(summary.columns)
    detail = at.dataframe[-1].value
    assert detail["constraint"].iloc[0] == "follows it"


def test_no_constrain_switch_for_a_prompt_that_declares_no_constraint(app_env: Path) -> None:
    at = app_test(PAGE).run()
    at.multiselect(key="eval_refs").set_value([CHAT]).run()
    assert not [t for t in at.toggle if t.key == "eval_constrain"]
    assert not [c for c in at.checkbox if c.key == "eval_vs_free"]
