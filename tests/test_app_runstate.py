"""Run state on the pages: a running state at once, Run disabled while its run works, Stop that
says what was kept, and jobs that outlive a page switch."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import app_test, shown

from workbench import jobs
from workbench.runner import Runner
from workbench.runs import list_runs
from workbench.workspace import open_library

PLAY = "pages/2_Playground.py"
REF = "zero-shot-sentiment-chat@1"
SINGLE, DATASET = "play_single_job", "play_dataset_job"


class _SlowStream:
    """A backend's token stream, 20 ms a token: long enough to click Stop while it runs."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __iter__(self) -> Iterator[str]:
        for piece in self._inner:
            time.sleep(0.02)
            yield piece

    @property
    def result(self) -> Any:
        return self._inner.result


class _SlowBackend:
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def stream(self, *args: Any, **kwargs: Any) -> _SlowStream:
        return _SlowStream(self._inner.stream(*args, **kwargs))

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """Rows one at a time, 0.2 s each (a dataset run or evaluation batches them)."""
        on_batch = kwargs.get("on_batch")

        def slowly(items: Any) -> None:
            time.sleep(0.2)
            if on_batch is not None:
                on_batch(items)

        return self._inner.generate(*args, **{**kwargs, "batch_size": 1, "on_batch": slowly})


@pytest.fixture
def slow_model(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tiny model answers in a few milliseconds; these tests need an answer that is still
    being written when the next click arrives."""
    from workbench.app import state

    real = state.backend
    monkeypatch.setattr(state, "backend", lambda choice: _SlowBackend(real(choice)))


def _playground(max_new_tokens: int) -> object:
    at = app_test("Home.py").run()  # the entry script: pages switch relative to it
    at.switch_page(PLAY).run()
    at.selectbox(key="play_prompt").set_value("zero-shot-sentiment-chat").run()
    at.number_input(key=f"param:{REF}:max_new_tokens").set_value(max_new_tokens).run()
    at.checkbox(key="play_use_cache").uncheck().run()
    assert not at.exception, at.exception
    return at


def _job(at: object, key: str) -> jobs.Job:
    job = jobs.get_job(at.session_state[key])  # type: ignore[attr-defined]
    assert job is not None
    return job


def _status(at: object) -> str:
    return " ".join(shown(i.value) for i in at.info)  # type: ignore[attr-defined]


def _click_into_running(at: Any, button: str, status: str, what: str) -> None:
    """Click Run: the rerun that click causes shows the running state and a disabled Run."""
    began = time.perf_counter()
    at.button(key=button).click().run()
    took = time.perf_counter() - began
    assert not at.exception, at.exception
    assert status in _status(at)
    assert at.button(key=button).disabled
    print(f"{what} click -> running state (AppTest): {took * 1000:.0f} ms")
    assert took < 2.0  # loose: the machine is shared; recorded exactly in the report


def _stop(at: Any, button: str, job: jobs.Job) -> None:
    """Click Stop; the job ends cancelled, without an error, and the page draws its end."""
    at.button(key=button).click().run()
    assert job.wait(60) and job.cancelled and job.error is None, job.error
    at.run()
    assert not at.exception, at.exception


def _stored_runs() -> int:
    return len(list_runs(Runner(open_library()).store))


def test_running_state_shows_in_the_rerun_the_click_causes(slow_model: None) -> None:
    at = _playground(400)
    _click_into_running(at, "play_run", "Running one answer from " + REF, "Run (whole page rerun)")
    assert at.button(key="play_stop")  # Stop is there while it runs
    job = _job(at, SINGLE)
    job.cancel.set()
    assert job.wait(60)


def test_a_double_run_starts_one_job(slow_model: None) -> None:
    at = _playground(400)
    at.button(key="play_run").click().run()
    first = _job(at, SINGLE)
    assert not first.done, (first.error, first.result, first.elapsed_s)
    # The second click of a double click reaches the server before the page shows the button
    # disabled: a click on the button as it was drawn before the first click's rerun.
    second = at.button(key="play_run")
    assert second.disabled
    second.proto.disabled = False
    second.click().run()
    assert _job(at, SINGLE) is first
    first.cancel.set()
    assert first.wait(60)
    assert _stored_runs() == 1


def test_stop_says_what_was_kept(slow_model: None) -> None:
    at = _playground(400)
    at.button(key="play_run").click().run()
    job = _job(at, SINGLE)
    while not job.text and not job.done:
        time.sleep(0.05)
    at.button(key="play_stop").click().run()
    assert job.wait(60) and job.cancelled
    at.run()
    assert not at.exception, at.exception
    answer = job.result
    assert answer.output is not None and answer.output.finish_reason == "cancelled"
    words = len(job.text.split())
    assert at.warning and shown(at.warning[0].value) == (
        f"Stopped: the answer so far ({words} words) was kept in run {job.run_id}."
    )
    assert answer.output.text in [c.value for c in at.code]
    assert not at.button(key="play_run").disabled


def test_a_dataset_run_stays_visible_after_leaving_and_returning(slow_model: None) -> None:
    at = _playground(20)
    at.session_state[f"play_ds:{REF}:rows"] = {
        "edited_rows": {},
        "added_rows": [{"text": f"row {i}"} for i in range(30)],
        "deleted_rows": [],
    }
    at.run()
    at.button(key="play_run_dataset").click().run()
    job = _job(at, DATASET)
    assert "Running " + REF in _status(at)
    at.switch_page("pages/1_Compose.py").run()
    assert not at.exception, at.exception
    at.switch_page(PLAY).run()
    assert not at.exception, at.exception
    assert _job(at, DATASET) is job
    assert not job.done  # 30 rows of 20 tokens at 20 ms a token
    assert "Running " + REF in _status(at)
    assert at.button(key="play_run_dataset").disabled
    at.button(key="play_cancel").click().run()
    assert job.wait(120)
    at.run()
    summary = job.result
    assert shown(at.warning[0].value).startswith(
        f"Stopped: {summary.run.done} of {summary.run.total} rows kept"
    )


def test_a_single_answer_keeps_running_while_the_person_is_away(app_env: Path) -> None:
    at = _playground(30)
    at.button(key="play_run").click().run()
    job = _job(at, SINGLE)
    at.switch_page("pages/5_Library.py").run()
    assert job.wait(60) and not job.cancelled and job.error is None
    at.switch_page(PLAY).run()
    assert not at.exception, at.exception
    assert job.result.output.text in [c.value for c in at.code]


def test_evaluate_shows_its_run_at_once_and_stop_keeps_the_scored_rows(slow_model: None) -> None:
    at = app_test("pages/6_Evaluate.py").run()
    at.multiselect(key="eval_refs").set_value(["zero-shot-sentiment-chat@1"]).run()
    at.session_state["eval_rows:rows"] = {
        "edited_rows": {0: {"text": "row 0", "expected": "Positive"}},
        "added_rows": [{"text": f"row {i}", "expected": "Negative"} for i in range(1, 20)],
        "deleted_rows": [],
    }
    at.text_input(key="eval_params").set_value("max_new_tokens=20").run()
    at.text_area(key="eval_asserts").set_value("exact-match").run()
    _click_into_running(
        at, "eval_run", "Running evaluate zero-shot-sentiment-chat@1 on 20 rows", "Evaluate"
    )
    job = _job(at, "eval_job")
    _stop(at, "eval_cancel", job)
    kept = sum(len(v.rows) for v in job.result.versions)
    assert kept < 20
    assert shown(at.warning[0].value) == f"Stopped: {kept} of 20 rows kept and scored."
    assert not at.button(key="eval_run").disabled


def test_history_runs_again_in_the_background_with_stop(
    slow_model: None, tiny_backend: Any
) -> None:
    lib = open_library()
    rows = [{"text": f"row {i}"} for i in range(20)]
    first = Runner(lib, tiny_backend).run([lib.get(REF)], rows, overrides={"max_new_tokens": 2})
    at = app_test("pages/4_History.py").run()
    at.selectbox(key="history:open").set_value(first.run.id).run()
    at.checkbox(key=f"history:rerun:cache:{first.run.id}").uncheck().run()
    _click_into_running(
        at, "history:rerun", f"Running run {first.run.id} again", "History 'Run again'"
    )
    job = _job(at, "history:job")
    _stop(at, "history:stop", job)
    warning = shown(at.warning[0].value)
    assert warning.startswith("Stopped: ") and f"kept in run {job.run_id}" in warning
    assert at.selectbox(key="history:open").value == job.run_id  # the new run is opened


def test_a_reload_during_an_answer_shows_it_running(slow_model: None) -> None:
    at = _playground(400)
    at.button(key="play_run").click().run()
    job = _job(at, SINGLE)
    while job.run_id is None and not job.done:
        time.sleep(0.05)
    at.run()  # the fragment's next poll: the run is recorded, the address names it
    assert at.query_params["run"] == str(job.run_id)
    reload = app_test(PLAY)  # a reload: a new session with the same address
    reload.query_params.update(dict(at.query_params.items()))
    reload.run()
    assert not reload.exception, reload.exception
    assert not job.done
    assert reload.session_state[SINGLE] == job.id
    assert "Running one answer from " + REF in _status(reload)
    reload.button(key="play_stop").click().run()
    assert job.wait(60) and job.cancelled


def test_compare_runs_at_once_once_and_stops(slow_model: None) -> None:
    from workbench import testsets
    from workbench.datasets import Dataset

    rows = tuple({"text": f"row {i}"} for i in range(20))
    testsets.save_test_set(open_library().store, "many", Dataset("many", ("text",), rows))
    at = app_test("pages/3_Compare.py")
    at.query_params.update(prompt="zero-shot-sentiment-chat", v="1", base="1", testset="many")
    at.run()
    assert not at.exception, at.exception
    at.text_input(key="cmp_params_0").set_value("max_new_tokens=4").run()
    at.text_input(key="cmp_params_1").set_value("max_new_tokens=5").run()
    at.checkbox(key="cmp_use_cache").uncheck().run()
    began = time.perf_counter()
    at.button(key="cmp_run").click().run()
    took = time.perf_counter() - began
    assert not at.exception, at.exception
    assert "Running compare 2 columns × 20 rows" in _status(at)
    print(f"Compare click -> running state (AppTest): {took * 1000:.0f} ms")
    first = _job(at, "cmp_job")
    second = at.button(key="cmp_run")  # the second click of a double click
    assert second.disabled
    second.proto.disabled = False
    second.click().run()
    assert _job(at, "cmp_job") is first
    at.button(key="cmp_cancel").click().run()
    assert first.wait(60) and first.cancelled
