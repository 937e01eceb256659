"""How the `workbench` command ends: without the interpreter's teardown (it cost 0.15-0.3 s of
CPU at every exit, and over 5 s of Ctrl+C's exit on a busy machine), but with everything a
command owes on the way out: its output, exit handlers, threads that are not daemons."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT, child_env


def workbench(setup: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the console script's `run()` in a child, after `setup`."""
    return workbench_to(subprocess.PIPE, *args, setup=setup)


def workbench_to(stdout: int, *args: str, setup: str = "") -> subprocess.CompletedProcess[str]:
    code = (
        f"{setup}\nimport sys\nsys.argv = ['workbench', *sys.argv[1:]]\n"
        "from workbench.cli import run\nrun()\n"
    )
    env = child_env()
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
    )


def test_output_exit_status_and_exit_handlers_survive_the_quick_exit(tmp_path: Path) -> None:
    mark = tmp_path / "handler-ran"
    setup = f"import atexit, pathlib\natexit.register(pathlib.Path({str(mark)!r}).touch)"
    done = workbench(setup, "prompts", "list")
    assert done.returncode == 0, done.stderr
    assert "zero-shot-sentiment-chat" in done.stdout  # buffered output written in full
    assert mark.exists()
    failed = workbench(setup, "prompts", "show", "no-such-prompt")
    assert failed.returncode == 1 and failed.stderr.startswith("error: ")


def test_a_thread_that_is_not_a_daemon_is_waited_for(tmp_path: Path) -> None:
    mark = tmp_path / "thread-finished"
    setup = (
        "import pathlib, threading, time\n"
        "def late():\n"
        "    time.sleep(0.5)\n"
        f"    pathlib.Path({str(mark)!r}).touch()\n"
        "threading.Thread(target=late).start()"
    )
    done = workbench(setup, "prompts", "list")
    assert done.returncode == 0, done.stderr
    assert mark.exists()


def test_a_closed_pipe_ends_quietly() -> None:
    """`workbench prompts list | head -1`: the reader has gone before the output is written."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = workbench_to(write_end, "prompts", "list")
    finally:
        os.close(write_end)
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
