"""Background jobs: results, errors as messages, cancellation."""

from __future__ import annotations

import threading
from typing import Any

from workbench import jobs
from workbench.errors import WorkbenchError


def test_result_and_lookup() -> None:
    job = jobs.start_job("sum", lambda job: 1 + 2)
    assert job.wait(10)
    assert job.result == 3 and job.error is None
    assert jobs.get_job(job.id) is job
    assert jobs.get_job(None) is None and jobs.get_job("nope") is None


def test_errors_become_messages() -> None:
    def expected(job: jobs.Job) -> None:
        raise WorkbenchError("the dataset has no rows")

    def unexpected(job: jobs.Job) -> None:
        raise KeyError("boom")

    a, b = jobs.start_job("a", expected), jobs.start_job("b", unexpected)
    assert a.wait(10) and b.wait(10)
    assert a.error == "the dataset has no rows"
    assert b.error == "KeyError: 'boom'"


def test_cancel_reaches_the_work() -> None:
    started = threading.Event()

    def work(job: jobs.Job) -> str:
        started.set()
        while not job.cancel.is_set():
            job.cancel._event.wait(0.01)
        return "stopped"

    job = jobs.start_job("loop", work)
    assert started.wait(10)
    assert not job.done
    job.cancel.set()
    assert job.wait(10) and job.cancelled and job.result == "stopped"


def test_a_single_answer_streams_into_the_job_and_is_found_by_its_run(runner: Any) -> None:
    version = runner.library.get("zero-shot-sentiment-chat")
    job = jobs.stream_answer(
        runner, version, {"text": "I love it"}, overrides={"max_new_tokens": 4}, use_cache=False
    )
    assert job.wait(60) and job.error is None, job.error
    answer = job.result
    assert job.kind == "answer" and answer.output is not None and not answer.cached
    assert job.text == answer.output.text  # the streamed pieces add up to the stored answer
    assert job.run_id == answer.output.run_id
    assert jobs.find_run_job(job.run_id) is job
    assert jobs.find_run_job(-1) is None


def test_a_stopped_answer_keeps_what_was_written(runner: Any) -> None:
    version = runner.library.get("zero-shot-sentiment-chat")
    job = jobs.stream_answer(runner, version, {"text": "x"}, overrides={"max_new_tokens": 400})
    job.cancel.set()  # at once: it ends at the first check, the empty answer stored
    assert job.wait(60) and job.error is None, job.error
    assert job.result.output.finish_reason == "cancelled"
    assert job.result.output.text == job.text
