"""Long work (a dataset run, a comparison) in a background thread that a page can watch.

A Streamlit script that generates for minutes cannot show a working Cancel button: clicking it
reruns the script, which kills the generation mid-row. So pages start a job here, keep only its
id, and redraw its progress every second; Cancel sets the job's `Cancel`, which the runner checks
between tokens, and everything already finished stays stored. Jobs live in this process (one
server), so a second browser tab sees only its own.
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
from .runner import Progress
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

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends (tests and the CLI); True when it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.done


_jobs: dict[str, Job] = {}
_jobs_lock = threading.Lock()


def start_job(title: str, work: Callable[[Job], Any]) -> Job:
    """Run `work(job)` in a daemon thread; its return value becomes `job.result`.

    A WorkbenchError becomes `job.error` as written; anything else is logged with its traceback
    and summarised, so the page can show a message instead of a traceback.
    """
    job = Job(id=uuid.uuid4().hex, title=title)

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


def _forget_old() -> None:
    now = time.monotonic()
    for key in [
        k
        for k, j in _jobs.items()
        if j.finished_at is not None and now - j.finished_at > KEEP_FINISHED_S
    ]:
        del _jobs[key]
