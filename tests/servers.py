"""Servers the tests start: any server process (`serving`), and llama-cpp-python's
OpenAI-compatible server on the default model's GGUF file (`llama_server`).

The llama server is used by the real-server tests, the team browser tests and
benchmarks/remote.py. Every server runs in its own process group on a free port of 127.0.0.1
and is stopped (the whole group) when its context ends.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

ALIAS = "smollm2"
N_CTX = 2048
SERVER_MODULES = (
    "llama_cpp",
    "fastapi",
    "uvicorn",
    "sse_starlette",
    "pydantic_settings",
    "starlette_context",
)


def missing_modules() -> list[str]:
    """What the server needs and this Python does not have (empty: it can start)."""
    return [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def llama_server(
    gguf: Path, log_path: Path, *, threads: int | None = None, timeout_s: float = 120
) -> Iterator[str]:
    """Yields the base URL (http://127.0.0.1:PORT/v1) once /v1/models answers.

    The model is served as `smollm2` with a 2048-token context; its chat template (ChatML)
    comes from the GGUF file's metadata.
    """
    port = free_port()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf),
        "--model_alias",
        ALIAS,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(N_CTX),
        "--n_threads",
        str(threads or cores),
        # By default a new request interrupts the one being answered; queue them instead.
        "--interrupt_requests",
        "False",
    ]
    url = f"http://127.0.0.1:{port}/v1"
    with serving(command, log_path, f"{url}/models", timeout_s=timeout_s) as proc:
        if proc.poll() is not None:
            raise RuntimeError("llama_cpp.server stopped at once")
        yield url


@contextmanager
def serving(
    command: list[str],
    log_path: Path,
    ready_url: str,
    *,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server in its own process group (output to `log_path`), wait until `ready_url`
    answers 200, and stop the whole group afterwards — for every server the tests start."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    with urllib.request.urlopen(ready_url, timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log_path.read_text(errors="replace")[-3000:]
                    raise RuntimeError(
                        f"{command[2] if len(command) > 2 else command[0]} did "
                        f"not come up (log: {log_path}):\n{tail}"
                    )
                time.sleep(0.2)
            yield proc
        finally:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
            except ProcessLookupError:  # the test stopped the whole group itself
                pass
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
