"""Long work (a dataset run, a comparison) in a background thread that a page can watch.

A Streamlit script that generates for minutes cannot show a working Cancel button: clicking it
reruns the script, which kills the generation mid-row. So pages start a job here, keep only its
id, and redraw its progress every second; Cancel sets the job's `Cancel`, which the runner checks
between tokens, and everything already finished stays stored. Jobs live in this process (one
server), so a second browser tab sees only its own — unless its address names the job's run
(`?run=42`): `find_run_job` lets a reloaded page pick up the run it was watching.

A single answer is a job too (`stream_answer`): its text grows in `job.text` as tokens arrive,
so a page can show the answer streaming while the person is free to leave and come back.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .backends.base import Cancel
from .errors import WorkbenchError
from .library import VersionInfo
from .runner import Progress, Runner
from .runs import OutputRecord

log = logging.getLogger(__name__)

KEEP_FINISHED_S = 3600  # finished jobs are forgotten after an hour


@dataclass
class Job:
    id: str
    title: str
    cancel: Cancel = field(default_factory=Cancel)
    progress: Progress | None = None
    outputs: list[OutputRecord] = field(default_factory=list)
    result: Any = None
    error: str | None = None
    run_id: int | None = None  # the stored run, once the job has recorded it
    text: str = ""  # a single answer's text so far
    kind: str = "job"  # "answer" for a single streamed answer
    started_at: float = field(default_factory=time.monotonic)
    finished_at: float | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def done(self) -> bool:
        return self.finished_at is not None

    @property
    def cancelled(self) -> bool:
        return self.cancel.is_set()

    def report(self, progress: Progress) -> None:
        self.progress = progress

    def add_output(self, output: OutputRecord) -> None:
        with self._lock:
            self.outputs.append(output)

    def outputs_so_far(self) -> list[OutputRecord]:
        with self._lock:
            return list(self.outputs)

    def add_text(self, piece: str) -> None:
        with self._lock:
            self.text += piece

    @property
    def elapsed_s(self) -> float:
        return (self.finished_at or time.monotonic()) - self.started_at

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends (tests and the CLI); True when it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.done


_jobs: dict[str, Job] = {}
_jobs_lock = threading.Lock()


def start_job(title: str, work: Callable[[Job], Any], *, kind: str = "job") -> Job:
    """Run `work(job)` in a daemon thread; its return value becomes `job.result`.

    A WorkbenchError becomes `job.error` as written; anything else is logged with its traceback
    and summarised, so the page can show a message instead of a traceback.
    """
    job = Job(id=uuid.uuid4().hex, title=title, kind=kind)

    def target() -> None:
        try:
            job.result = work(job)
        except WorkbenchError as exc:
            job.error = str(exc)
        except Exception as exc:
            log.exception("job %r failed", title)
            job.error = f"{type(exc).__name__}: {exc}"
        finally:
            job.finished_at = time.monotonic()

    job._thread = threading.Thread(target=target, name=f"workbench-job-{job.id[:8]}", daemon=True)
    with _jobs_lock:
        _forget_old()
        _jobs[job.id] = job
    job._thread.start()
    return job


def get_job(job_id: str | None) -> Job | None:
    if job_id is None:
        return None
    with _jobs_lock:
        return _jobs.get(job_id)


def find_run_job(run_id: int) -> Job | None:
    """The newest job that works on stored run `run_id` (a reloaded page finds it by its URL)."""
    with _jobs_lock:
        found = [j for j in _jobs.values() if j.run_id == run_id]
    return max(found, key=lambda j: j.started_at) if found else None


@dataclass(frozen=True)
class Answer:
    """What a single-answer job ends with: the stored output (None if it failed before one was
    stored) and whether it came from the cache."""

    output: OutputRecord | None
    cached: bool
    notice: str | None = None  # what the backend said about it (a server without logprobs)


def stream_answer(
    runner: Runner,
    version: VersionInfo,
    variables: dict[str, Any],
    *,
    overrides: dict[str, Any] | None = None,
    use_cache: bool = True,
) -> Job:
    """Generate one answer in the background, its text growing in `job.text`.

    The model loads inside the job (on the first answer), so the page that started it can show
    the running state at once. Stop sets the job's cancel: the answer so far is stored, marked
    cancelled, as a dataset run keeps its finished rows.
    """

    def work(job: Job) -> Answer:
        streamed = runner.stream(
            version, variables, overrides=overrides, use_cache=use_cache, cancel=job.cancel
        )
        job.run_id = streamed.run_id
        for piece in streamed:
            job.add_text(piece)
        return Answer(streamed.output, streamed.cached, streamed.notice)

    return start_job(f"one answer from {version.ref}", work, kind="answer")


def _forget_old() -> None:
    now = time.monotonic()
    for key in [
        k
        for k, j in _jobs.items()
        if j.finished_at is not None and now - j.finished_at > KEEP_FINISHED_S
    ]:
        del _jobs[key]
