"""Background jobs: results, errors as messages, cancellation."""

from __future__ import annotations

import threading

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
