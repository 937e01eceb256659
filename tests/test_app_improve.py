"""Improve page: a technique ablation with intervals, its chart, and saving the best variant."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import app_test

from workbench import jobs, testsets
from workbench.datasets import Dataset
from workbench.runs import list_runs
from workbench.workspace import open_library

PAGE = "pages/7_Improve.py"


def _page(prompt: str, rows: list[dict[str, str]]) -> Any:
    at = app_test(PAGE).run()
    assert not at.exception, at.exception
    at.selectbox(key="improve_version").set_value(prompt).run()
    at.session_state["improve_rows:rows"] = {
        "edited_rows": {0: rows[0]},
        "added_rows": rows[1:],
        "deleted_rows": [],
    }
    at.number_input(key="improve_resamples").set_value(200).run()
    return at


def test_an_ablation_shows_every_variant_with_intervals_and_a_chart(app_env: Path) -> None:
    at = _page(
        "few-shot-sentiment",
        [
            {"text": "I love it", "expected": "Positive"},
            {"text": "I hate it", "expected": "Negative"},
        ],
    )
    at.text_area(key="improve_asserts").set_value("not-contains:zzzz").run()
    at.button(key="improve_run").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    job = jobs.get_job(at.session_state["improve_job"])
    assert job is not None and job.wait(300) and job.error is None, job and job.error
    at.run()
    assert not at.exception, at.exception
    table = at.dataframe[-1].value
    assert table["VARIANT"].iloc[0] == "original"
    assert len(table) >= 3 and "without examples (0-shot)" in list(table["VARIANT"])
    assert set(table["95% CI"]) >= {"[100%, 100%]"}  # not-contains passes on every row
    (chart,) = at.get("plotly_chart")
    figure = json.loads(chart.proto.spec)
    assert figure["layout"]["yaxis"]["range"] == [0, 105]
    assert "error_y" in figure["data"][0]
    # Every variant ran as an ordinary stored run; none of them is in the Library list.
    assert len(list_runs(open_library().store)) >= 3
    assert "few-shot-sentiment.trials" not in [p.name for p in open_library().list_prompts()]


def test_a_bad_assertion_is_refused_before_anything_runs(app_env: Path) -> None:
    at = _page("zero-shot-sentiment", [{"text": "I love it", "expected": "Positive"}])
    at.text_area(key="improve_asserts").set_value("regex:(unclosed").run()
    at.button(key="improve_run").click().run()
    assert not at.exception, at.exception
    assert at.error and "regex" in at.error[0].value.lower()
    assert "improve_job" not in at.session_state
    assert list_runs(open_library().store) == []


def _search_page(train: list[dict[str, str]], dev: list[dict[str, str]]) -> Any:
    store = open_library().store
    testsets.save_test_set(store, "train", Dataset("train", ("text", "expected"), tuple(train)))
    testsets.save_test_set(store, "dev", Dataset("dev", ("text", "expected"), tuple(dev)))
    at = app_test(PAGE).run()
    at.selectbox(key="improve_version").set_value("zero-shot-sentiment").run()
    at.radio(key="improve_method").set_value("Few-shot search").run()
    assert not at.exception, at.exception
    at.selectbox(key="improve_train").set_value("train@1").run()
    at.selectbox(key="improve_dev").set_value("dev@1").run()
    return at


TRAIN = [
    {"text": "Great!", "expected": "Positive"},
    {"text": "Awful.", "expected": "Negative"},
    {"text": "It is blue.", "expected": "Neutral"},
]
DEV = [
    {"text": "I love it", "expected": "Positive"},
    {"text": "I hate it", "expected": "Negative"},
]


def test_a_few_shot_search_shows_dev_and_test_of_original_and_winner(app_env: Path) -> None:
    at = _search_page(TRAIN, DEV)
    at.number_input(key="improve_budget").set_value(2).run()
    at.button(key="improve_search_run").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    job = jobs.get_job(at.session_state["improve_search_job"])
    assert job is not None and job.wait(300) and job.error is None, job and job.error
    at.run()
    assert not at.exception, at.exception
    outcomes = at.dataframe[0].value
    assert list(outcomes[""]) == ["original", "winner"]
    assert outcomes["trial"].iloc[0] == "zero-shot-sentiment@1"
    trials = at.dataframe[1].value
    assert 1 <= len(trials) <= 2  # the budget
    assert "zero-shot-sentiment.trials" not in [p.name for p in open_library().list_prompts()]


def test_train_rows_that_are_also_dev_rows_are_refused_before_anything_runs(
    app_env: Path,
) -> None:
    at = _search_page(TRAIN, TRAIN[:1] + DEV)
    at.button(key="improve_search_run").click().run()
    assert not at.exception, at.exception
    assert at.error and "dev" in at.error[0].value
    assert "improve_search_job" not in at.session_state
    assert list_runs(open_library().store) == []
