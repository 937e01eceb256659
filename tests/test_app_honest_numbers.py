"""Honest numbers on the pages other files test in depth: a cached answer in the Playground
shows its original time as such, never as this answer's latency or rate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import app_test

from workbench import jobs
from workbench.runner import Runner
from workbench.runs import list_runs, run_outputs
from workbench.workspace import open_library

PLAYGROUND = "pages/2_Playground.py"
# where the Playground keeps the job of a run: one per run before runs became jobs, then one
# for a single answer and one for a dataset run
JOB_KEYS = (
    "play_job:zero-shot-sentiment-chat@1",
    "play_single_job",
    "play_dataset_job",
)


def click_and_wait(at: Any, button: str) -> None:
    """Click a Run button and wait for what it started (a background job, when it is one)."""
    before = {k: at.session_state[k] for k in JOB_KEYS if k in at.session_state}
    at.button(key=button).click().run()
    assert not at.exception, at.exception
    for key in JOB_KEYS:
        if key in at.session_state and at.session_state[key] != before.get(key):
            job = jobs.get_job(at.session_state[key])
            assert job is not None and job.wait(120) and job.error is None, job and job.error
    at.run()
    assert not at.exception, at.exception


def test_a_cached_playground_answer_shows_its_original_latency_as_such(app_env: Path) -> None:
    at = app_test(PLAYGROUND).run()
    at.selectbox(key="play_prompt").set_value("zero-shot-sentiment-chat").run()
    at.text_area(key="play_var:zero-shot-sentiment-chat@1:text").set_value("I love it").run()
    at.number_input(key="param:zero-shot-sentiment-chat@1:max_new_tokens").set_value(5).run()
    click_and_wait(at, "play_run")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Latency"].endswith(" s") and "cached" not in metrics["Latency"]
    assert metrics["Tokens/s"] != "cached"

    click_and_wait(at, "play_run")  # the same request: answered from the cache
    store = Runner(open_library()).store
    first = run_outputs(store, list_runs(store)[-1].id)[0]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Latency"] == f"cached (original {first.latency_s:.2f} s)"
    assert metrics["Tokens/s"] == "cached"


def test_a_playground_dataset_table_names_batched_and_cached_rows(app_env: Path) -> None:
    at = app_test(PLAYGROUND).run()
    at.selectbox(key="play_prompt").set_value("zero-shot-sentiment-chat").run()
    rows = {"edited_rows": {0: {"text": "great"}}, "added_rows": [{"text": "awful"}]}
    at.number_input(key="param:zero-shot-sentiment-chat@1:max_new_tokens").set_value(3).run()
    store = Runner(open_library()).store
    for expected in ("batch of 2, ", "cached (original "):  # generated, then from the cache
        at.session_state["play_ds:zero-shot-sentiment-chat@1:rows"] = {
            **rows,
            "deleted_rows": [],
        }
        click_and_wait(at, "play_run_dataset")
        frame = at.dataframe[-1].value
        assert all(text.startswith(expected) for text in frame["latency"]), list(frame["latency"])
    first, second = (run_outputs(store, r.id) for r in reversed(list_runs(store)))
    assert [o.latency_s for o in first] == [o.latency_s for o in second]  # the original times
