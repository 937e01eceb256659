"""Who runs a run: Ctrl+C is a cancel, a run whose process is gone is "interrupted" (and
resumable), and a run that a live process is generating is not resumed a second time.

The processes are real: a child Python that is alive, or one that has exited and been reaped
(so its id names no process). Another host cannot be asked, so its runs are judged by their
heartbeat, which these tests set directly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from workbench.history import search_runs
from workbench.ownership import RunBusyError, executing, this_host
from workbench.runner import Progress, Runner
from workbench.runs import get_run, list_runs
from workbench.store import Run, Store, utcnow

ROWS = [{"text": f"review {i}"} for i in range(3)]


def start(runner: Runner) -> int:
    version = runner.library.get("zero-shot-sentiment")
    return runner.start([version], ROWS, overrides={"max_new_tokens": 2})


def set_owner(store: Store, run_id: int, **values: Any) -> None:
    with store.write() as s:
        s.execute(update(Run).where(Run.id == run_id).values(**values))


def stored(store: Store, run_id: int) -> Run:
    with store.read() as s:
        return s.get_one(Run, run_id)


@pytest.fixture
def live_process() -> Iterator[subprocess.Popen[bytes]]:
    """A process of this machine that stays alive until the test ends (or kills it)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield child
    if child.poll() is None:
        child.kill()
    child.wait(10)


def dead_pid() -> int:
    """The id of a process that has ended and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(30)
    return child.pid


# --- Ctrl+C ------------------------------------------------------------------------------------


def test_ctrl_c_cancels_the_run_and_it_resumes(runner: Runner) -> None:
    version = runner.library.get("zero-shot-sentiment")

    def interrupt(p: Progress) -> None:
        if p.done >= 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.run(
            [version], ROWS, overrides={"max_new_tokens": 2}, progress=interrupt, batch_size=1
        )
    (record,) = list_runs(runner.store)
    assert record.status == "cancelled"
    assert record.error is None
    assert 1 <= record.done < 3 and record.resumable
    assert runner.resume(record.id).run.status == "done"


# --- a run whose process is gone -----------------------------------------------------------------


def test_a_run_whose_process_was_killed_is_interrupted_and_resumes(runner: Runner) -> None:
    run_id = start(runner)
    pid = dead_pid()
    set_owner(runner.store, run_id, owner_pid=pid, owner_host=this_host())

    (record,) = list_runs(runner.store)
    assert record.status == "interrupted" and record.resumable
    row = stored(runner.store, run_id)
    assert row.status == "interrupted"  # recorded, so History's filter finds it
    assert row.error == (
        f"process {pid} on {this_host()} stopped without finishing it (killed, or crashed); "
        "resume it to finish the missing outputs"
    )
    assert row.finished_at is not None
    assert [r.id for r in search_runs(runner.store, status="interrupted").rows] == [run_id]
    assert search_runs(runner.store, status="running").rows == []

    summary = runner.resume(run_id)
    assert summary.run.status == "done" and summary.run.done == 3
    assert stored(runner.store, run_id).owner_pid == os.getpid()


def test_a_process_id_reused_by_a_newer_process_does_not_keep_a_run_alive(
    runner: Runner, live_process: subprocess.Popen[bytes]
) -> None:
    """The run was taken an hour before this process started: the id is the same, the
    process is not."""
    if not os.path.exists(f"/proc/{os.getpid()}/stat"):
        pytest.skip("needs /proc to know when a process started")
    run_id = start(runner)
    set_owner(
        runner.store,
        run_id,
        owner_pid=live_process.pid,
        owner_host=this_host(),
        owner_since=utcnow() - timedelta(hours=1),
    )
    assert get_run(runner.store, run_id).status == "interrupted"


@pytest.mark.parametrize(
    ("host", "heard_minutes_ago", "status"),
    [
        ("gpu-box", 11, "interrupted"),
        ("gpu-box", 1, "running"),
        (None, 60, "interrupted"),  # a run from before owners were recorded
    ],
    ids=["other host, silent", "other host, heard from", "no owner, old"],
)
def test_a_run_on_another_host_is_judged_by_its_heartbeat(
    runner: Runner, host: str | None, heard_minutes_ago: int, status: str
) -> None:
    run_id = start(runner)
    heard = utcnow() - timedelta(minutes=heard_minutes_ago)
    set_owner(
        runner.store,
        run_id,
        owner_pid=4711 if host else None,
        owner_host=host,
        owner_since=heard if host else None,
        heartbeat_at=heard if host else None,
        created_at=heard,
    )
    assert get_run(runner.store, run_id).status == status
    if status == "running":
        with pytest.raises(RunBusyError) as caught:
            runner.resume(run_id)
        assert str(caught.value) == (
            f"run {run_id} is being run by process 4711 on gpu-box (last heard from 1 min ago); "
            "wait for it to finish or stop it there. A run unheard of for 10 minutes counts as "
            "interrupted and can be resumed"
        )


# --- a run that a live process is generating ---------------------------------------------------


def test_resuming_a_run_that_a_live_process_runs_is_refused_until_it_is_killed(
    runner: Runner, live_process: subprocess.Popen[bytes]
) -> None:
    run_id = start(runner)
    pid = live_process.pid
    set_owner(runner.store, run_id, owner_pid=pid, owner_host=this_host())
    with pytest.raises(RunBusyError) as caught:
        runner.resume(run_id)
    assert str(caught.value) == (
        f"run {run_id} is being run by process {pid} on this machine; wait for it to finish, "
        f"or stop that process (Ctrl+C in its terminal, or kill {pid}) and resume it then"
    )
    assert get_run(runner.store, run_id).status == "running"
    assert stored(runner.store, run_id).owner_pid == pid  # not taken over

    live_process.send_signal(signal.SIGKILL)
    live_process.wait(30)
    assert get_run(runner.store, run_id).status == "interrupted"
    assert runner.resume(run_id).run.status == "done"


def test_a_second_resume_in_the_same_process_is_refused_while_the_first_runs(
    runner: Runner, tiny_backend: Any
) -> None:
    run_id = start(runner)
    refusals: list[str] = []

    def resume_again(p: Progress) -> None:
        if p.done == 1 and not refusals:
            try:
                Runner(runner.library, tiny_backend).resume(run_id)
            except RunBusyError as exc:
                refusals.append(str(exc))

    summary = runner.execute(run_id, progress=resume_again, batch_size=1)
    assert refusals == [f"run {run_id} is already being run by this process (another page or tab)"]
    assert summary.run.status == "done" and summary.run.done == 3


def test_a_planned_run_is_not_interrupted_in_its_own_process(runner: Runner) -> None:
    """Started here and not executed yet (the app starts, then a job executes): running."""
    run_id = start(runner)
    assert get_run(runner.store, run_id).status == "running"


def test_the_heartbeat_is_renewed_while_a_run_executes(runner: Runner) -> None:
    run_id = start(runner)
    first = utcnow() - timedelta(hours=1)
    set_owner(runner.store, run_id, heartbeat_at=first)
    deadline = time.monotonic() + 30
    with executing(runner.store, run_id, every_s=0.01):
        while stored(runner.store, run_id).heartbeat_at == first:
            assert time.monotonic() < deadline, "no heartbeat"
            time.sleep(0.01)


def test_a_stored_output_renews_the_heartbeat(runner: Runner) -> None:
    run_id = start(runner)
    old = utcnow() - timedelta(hours=1)
    set_owner(runner.store, run_id, heartbeat_at=old)
    runner.execute(run_id)
    heartbeat = stored(runner.store, run_id).heartbeat_at
    assert heartbeat is not None and heartbeat > old
