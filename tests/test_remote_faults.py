"""A server that misbehaves, against the OpenAI-compatible backend: slow to answer, hanging,
sending keep-alive comments forever, cutting an answer short, or sending what is not an OpenAI
answer; and a person who presses Ctrl+C or Cancel meanwhile.

Times are bounds with wide margins (a request held for 60 s must end in under 5 s), never
tight figures; where it can, a test counts requests instead.
"""

from __future__ import annotations

import csv
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT, child_env
from openai_stub import StubBehaviour, stub_server

from workbench.backends import remote
from workbench.backends.base import Cancel, Generation, ModelError
from workbench.backends.remote import RemoteBackend, ServerSpec
from workbench.config import OpenAISettings, Settings
from workbench.errors import WorkbenchError
from workbench.params import GenerationParams
from workbench.templates import Message, Rendered

GREEDY = GenerationParams(max_new_tokens=16)
HELD_S = 60.0  # how long the stub holds a request it does not answer


def backend_for(url: str, **settings: Any) -> RemoteBackend:
    return RemoteBackend(
        ServerSpec(url, ""), OpenAISettings(base_url=url, **settings), backoff_s=0.01
    )


def chat(text: str) -> Rendered:
    return Rendered("p", "chat", (Message("user", text),), {})


def wait_for(condition: Any, seconds: float = 20.0) -> None:
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "waited too long"
        time.sleep(0.02)


@pytest.fixture
def stub() -> Iterator[tuple[StubBehaviour, str]]:
    behaviour = StubBehaviour()
    with stub_server(behaviour) as url:
        yield behaviour, url


# --- cancel: requests in flight are closed at once ----------------------------------------------


def test_cancel_closes_requests_the_server_has_not_started_answering(
    stub: tuple[StubBehaviour, str],
) -> None:
    """Two rows answer, four wait on a server that holds them for a minute: a cancel ends the
    call at once, closes those four connections, and keeps the two finished rows."""
    behaviour, url = stub
    behaviour.stall_after, behaviour.stall_s = 2, HELD_S
    backend = backend_for(url, max_concurrency=4)
    inputs = [backend.model_input(chat(f"row {i}")) for i in range(12)]
    cancel = Cancel()
    stored: list[tuple[int, Generation]] = []

    def cancel_when_held() -> None:
        wait_for(lambda: len(behaviour.requests) >= 6)
        time.sleep(0.3)  # the four held requests are waiting for their first byte
        cancel.set()

    threading.Thread(target=cancel_when_held, daemon=True).start()
    started = time.monotonic()
    out = backend.generate(inputs, GREEDY, cancel=cancel, on_batch=stored.extend)
    assert time.monotonic() - started < 5 + 20  # 20: the wait for six requests
    done = [g for g in out if g is not None and g.finish_reason != "cancelled"]
    assert len(done) == 2 and all(g.text == "Hello from the stub" for g in done)
    assert {i for i, g in stored if g.finish_reason != "cancelled"} == {
        i for i, g in enumerate(out) if g in done
    }
    assert len(behaviour.requests) == 6  # no row was sent after the cancel
    wait_for(lambda: behaviour.closed_by_client == 4, seconds=5)


def test_cancel_is_prompt_measured_from_the_cancel(stub: tuple[StubBehaviour, str]) -> None:
    behaviour, url = stub
    behaviour.stall_after, behaviour.stall_s = 0, HELD_S
    backend = backend_for(url, max_concurrency=2)
    cancel = Cancel()
    inputs = [backend.model_input(chat(f"row {i}")) for i in range(4)]
    result: list[list[Generation | None]] = []
    worker = threading.Thread(
        target=lambda: result.append(backend.generate(inputs, GREEDY, cancel=cancel)),
        daemon=True,
    )
    worker.start()
    wait_for(lambda: len(behaviour.requests) == 2)
    time.sleep(0.3)
    cancelled_at = time.monotonic()
    cancel.set()
    worker.join(HELD_S)
    assert time.monotonic() - cancelled_at < 5
    [out] = result
    assert [g.finish_reason if g else None for g in out] == ["cancelled", "cancelled", None, None]
    wait_for(lambda: behaviour.closed_by_client == 2, seconds=5)


def test_cancelling_a_stream_closes_it_between_two_pieces(
    stub: tuple[StubBehaviour, str],
) -> None:
    """The Playground's Stop: the server is silent, yet the stream ends at once."""
    behaviour, url = stub
    behaviour.stall_after, behaviour.stall_s = 0, HELD_S
    backend = backend_for(url)
    stream = backend.stream(backend.model_input(chat("hi")), GREEDY)
    threading.Timer(0.5, stream.cancel).start()
    started = time.monotonic()
    assert list(stream) == []
    assert time.monotonic() - started < 5
    assert stream.result is not None and stream.result.finish_reason == "cancelled"
    wait_for(lambda: behaviour.closed_by_client == 1, seconds=5)


# --- Ctrl+C in the CLI --------------------------------------------------------------------------


def write_rows(path: Path, n: int) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text"])
        writer.writerows([f"review {i}"] for i in range(n))
    return path


def start_cli(url: str, tmp_path: Path, setup: str = "") -> subprocess.Popen[bytes]:
    """`workbench run … --dataset` against the stub, in a child that `setup` may patch first.

    Its stderr goes to a file, never a pipe nobody reads (a full pipe would block the child in
    a write, where no Ctrl+C reaches it); SIGUSR1 makes it print every thread's stack there,
    which `ended_within` asks for before it kills a child that did not end."""
    code = (
        "import faulthandler, runpy, signal, sys\n"
        # Ctrl+C as in a terminal, however the suite was started: a command started in the
        # background by a non-interactive shell (`… &`) inherits SIGINT ignored, and so would
        # this child, which would then never see the Ctrl+C these tests send.
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "faulthandler.register(signal.SIGUSR1, all_threads=True)\n"
        f"{setup}\n"
        "sys.argv = ['workbench', *sys.argv[1:]]\n"
        "runpy.run_module('workbench.cli', run_name='__main__', alter_sys=True)\n"
    )
    rows = write_rows(tmp_path / "rows.csv", 12)
    args = ["run", "zero-shot-sentiment-chat", "--dataset", str(rows), "--model", f"openai:@{url}"]
    env = child_env()
    err = (tmp_path / "stderr.txt").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=err,
    )
    err.close()  # the child has its own copy
    CHILD_STDERR[proc.pid] = tmp_path / "stderr.txt"
    return proc


CHILD_STDERR: dict[int, Path] = {}


def stderr_of(proc: subprocess.Popen[bytes]) -> str:
    path = CHILD_STDERR.get(proc.pid)
    return path.read_text(errors="replace")[-6000:] if path and path.exists() else ""


def query(sql: str) -> list[tuple[Any, ...]]:
    path = Settings.from_env().database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


def ended_within(proc: subprocess.Popen[bytes], seconds: float) -> bool:
    """Whether the child ended in time; one that did not prints its threads' stacks to its
    stderr file (see start_cli) and is killed."""
    try:
        proc.wait(seconds)
        return True
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)
        time.sleep(1.0)
        proc.kill()
        proc.wait(10)
        return False


def test_ctrl_c_on_a_dataset_run_ends_it_at_once_and_keeps_finished_rows(
    stub: tuple[StubBehaviour, str], tmp_path: Path
) -> None:
    behaviour, url = stub
    behaviour.stall_after, behaviour.stall_s = 2, HELD_S
    proc = start_cli(url, tmp_path)
    try:
        wait_for(lambda: len(behaviour.requests) >= 6)  # 2 answered, 4 held by the server
        wait_for(lambda: query("select count(*) from output")[0][0] == 2)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        assert ended_within(proc, 5), "Ctrl+C waited for the requests in flight\n" + stderr_of(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 130, stderr_of(proc)
    kept = query("select finish_reason, text from output order by row_index")
    assert kept == [("eos", "Hello from the stub")] * 2
    assert query("select status from run") != [("running",)]


# A row's thread stuck where closing connections cannot reach it: a name lookup that never ends.
HUNG_LOOKUP = """
import socket, threading
_lookup = socket.getaddrinfo
def _hung_in_rows(*args, **kwargs):
    if threading.current_thread().name.startswith("workbench-remote"):
        threading.Event().wait()
    return _lookup(*args, **kwargs)
socket.getaddrinfo = _hung_in_rows
"""


def test_ctrl_c_ends_a_run_whose_rows_hang_where_no_close_reaches(
    stub: tuple[StubBehaviour, str], tmp_path: Path
) -> None:
    behaviour, url = stub
    proc = start_cli(url, tmp_path, HUNG_LOOKUP)
    try:
        wait_for(lambda: query("select count(*) from run")[0][0] == 1)
        time.sleep(1.0)  # the rows' threads are in their lookups
        proc.send_signal(signal.SIGINT)
        assert ended_within(proc, 5), "Ctrl+C waited for threads that hang\n" + stderr_of(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 130 and not behaviour.requests


def test_a_second_ctrl_c_ends_the_wait_for_hung_rows(
    stub: tuple[StubBehaviour, str], tmp_path: Path
) -> None:
    """The first Ctrl+C gives the rows' threads a moment to end (a minute here); a second one
    ends that moment, and the process, at once."""
    behaviour, url = stub
    setup = HUNG_LOOKUP + "import workbench.backends.remote as r; r.CANCEL_GRACE_S = 60.0\n"
    proc = start_cli(url, tmp_path, setup)
    try:
        wait_for(lambda: query("select count(*) from run")[0][0] == 1)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        time.sleep(1.5)
        assert proc.poll() is None  # the first Ctrl+C still waits for the hung rows
        proc.send_signal(signal.SIGINT)
        assert ended_within(proc, 5), "a second Ctrl+C did not end the command\n" + stderr_of(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 130 and not behaviour.requests


# --- limits: the gap, the whole answer, the probes ---------------------------------------------


def test_keep_alive_comments_are_not_an_answer(stub: tuple[StubBehaviour, str]) -> None:
    """A server that sends `: ping` forever keeps its connection alive, not the run."""
    behaviour, url = stub
    behaviour.keepalive_s = 0.1
    backend = backend_for(url, timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(ModelError) as info:
        backend.generate([backend.model_input(chat("hi"))], GREEDY)
    assert str(info.value) == (
        f"the server at {url} sent only keep-alive comments for 1 s, no answer "
        "(WORKBENCH_OPENAI_TIMEOUT)"
    )
    assert time.monotonic() - started < 10
    assert len(behaviour.requests) == 1
    wait_for(lambda: behaviour.closed_by_client == 1, seconds=5)


def test_an_answer_that_never_ends_meets_the_deadline(stub: tuple[StubBehaviour, str]) -> None:
    """Real pieces, each well within the gap, but no end: the whole answer has a limit."""
    behaviour, url = stub
    behaviour.answer, behaviour.delay_s = " ".join(["word"] * 10_000), 0.05
    backend = backend_for(url, timeout_s=30.0, request_timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(ModelError, match=r"^the server at .* did not finish an answer within 1 s "):
        backend.generate([backend.model_input(chat("hi"))], GREEDY.with_(max_new_tokens=256))
    assert time.monotonic() - started < 10
    assert len(behaviour.requests) == 1  # text had arrived: not retried


def test_the_deadline_ends_a_silent_request_before_the_gap_does(
    stub: tuple[StubBehaviour, str],
) -> None:
    behaviour, url = stub
    behaviour.stall_after, behaviour.stall_s = 0, HELD_S
    backend = backend_for(url, timeout_s=HELD_S, request_timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(ModelError) as info:
        backend.generate([backend.model_input(chat("hi"))], GREEDY)
    assert time.monotonic() - started < 10
    assert str(info.value) == (
        f"the server at {url} did not finish an answer within 1 s "
        "(WORKBENCH_OPENAI_REQUEST_TIMEOUT; 0 pieces had arrived)"
    )
    assert len(behaviour.requests) == 1


def test_a_whole_answer_has_the_deadline_too(stub: tuple[StubBehaviour, str]) -> None:
    behaviour, url = stub
    backend = backend_for(url, timeout_s=HELD_S, request_timeout_s=1.0)
    backend._streams_usage = False  # whole answers, as for llama-cpp-python
    behaviour.stall_after, behaviour.stall_s = 0, HELD_S
    started = time.monotonic()
    with pytest.raises(ModelError, match="did not finish an answer within 1 s"):
        backend.generate([backend.model_input(chat("hi"))], GREEDY)
    assert time.monotonic() - started < 10


def test_a_server_that_hangs_but_lists_its_models_fails_in_about_one_timeout(
    stub: tuple[StubBehaviour, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """llama.cpp-like (its model entry has `meta`, so /props is asked), and every endpoint but
    /v1/models hangs. Each optional probe used to wait the full timeout: 4 of them."""
    behaviour, url = stub
    behaviour.models = {"data": [{"id": "stub", "meta": {"n_ctx_train": 2048}}]}
    behaviour.hang_paths = {"/props", "/tokenize", "/extras/tokenize"}
    behaviour.stall_after, behaviour.stall_s = 0, HELD_S
    monkeypatch.setattr(remote, "PROBE_TIMEOUT_S", 0.5)
    started = time.monotonic()
    backend = backend_for(url, timeout_s=3.0)
    completion = backend.model_input(Rendered("p", "completion", (Message("user", "Q:"),), {}))
    for _ in range(3):  # a pre-run check counts every row
        assert backend.count_tokens(completion) == 1  # an estimate: "Q:" is 2 characters
    assert backend.count_is_estimate(completion)
    with pytest.raises(ModelError) as info:
        backend.generate([completion], GREEDY)
    assert sorted(behaviour.held) == ["/props", "/tokenize"]  # one probe each, then no more
    assert str(info.value) == (
        f"the server at {url} sent nothing for 3 s (WORKBENCH_OPENAI_TIMEOUT); raise it or "
        "lower WORKBENCH_OPENAI_MAX_CONCURRENCY"
    )
    assert time.monotonic() - started < 3.0 + 2 * 0.5 + 4  # one timeout, two probes, margin


@pytest.mark.parametrize(("value", "expected"), [("", 600.0), ("0", 0.0), ("45.5", 45.5)])
def test_the_request_timeout_setting(value: str, expected: float) -> None:
    settings = Settings.from_env({"WORKBENCH_OPENAI_REQUEST_TIMEOUT": value}).openai
    assert settings.request_timeout_s == expected


def test_a_negative_request_timeout_is_refused() -> None:
    with pytest.raises(WorkbenchError, match="WORKBENCH_OPENAI_REQUEST_TIMEOUT must be at least"):
        Settings.from_env({"WORKBENCH_OPENAI_REQUEST_TIMEOUT": "-1"})


def test_no_request_timeout_leaves_only_the_gap(stub: tuple[StubBehaviour, str]) -> None:
    behaviour, url = stub
    behaviour.delay_s = 0.3  # four pieces: over a second in all, each well within the gap
    backend = backend_for(url, timeout_s=5.0, request_timeout_s=0)
    [generation] = backend.generate([backend.model_input(chat("hi"))], GREEDY)
    assert generation is not None and generation.text == "Hello from the stub"


# --- what the server sends ----------------------------------------------------------------------


def sse(*payloads: str) -> str:
    return "".join(f"data: {p}\n\n" for p in payloads)


GOOD_PIECE = '{"choices": [{"delta": {"content": "Hi"}, "finish_reason": null}]}'


MALFORMED_STREAMS = [
    (sse('{"choices": 5}'), "a streamed piece whose choices is not a list (got 5)"),
    (sse('["x"]'), 'a streamed piece that is not a JSON object: ["x"]'),
    (sse('{"choices": [{"delta": {"con'), 'a streamed piece that is not JSON: {"choices"'),
    (sse(GOOD_PIECE, "garbage"), "a streamed piece that is not JSON: garbage"),
    (sse('{"choices": [5]}'), "a streamed piece whose choices.0 is not an object (got 5)"),
    (
        sse('{"choices": [{"delta": {"content": 5}}]}'),
        "a streamed piece whose choices.0.delta.content is not text (got 5)",
    ),
    (
        sse('{"choices": [], "usage": {"prompt_tokens": "many"}}'),
        'a streamed piece whose usage.prompt_tokens is not a whole number (got "many")',
    ),
    ("<html>\n<body>Bad gateway</body>\n", "a stream without any data; it began: <html>"),
]
MALFORMED_STREAM_IDS = [
    "choices-not-a-list",
    "not-an-object",
    "broken-json",
    "garbage-data-line",
    "choice-not-an-object",
    "content-not-text",
    "usage-not-a-number",
    "not-sse",
]
MALFORMED_ANSWERS = [
    ('{"choices": 5}', "a completion whose choices is not a list (got 5)"),
    ('["x"]', 'a completion that is not a JSON object: ["x"]'),
    ('{"choices": [{"text": "Hi"', 'a completion that is not JSON: {"choices"'),
    ('{"object": "text_completion"}', "a completion without choices"),
    ('{"choices": []}', "a completion without choices"),
    ('{"choices": [{"index": 0}]}', "a completion whose choice has neither text nor message"),
    (
        '{"choices": [{"message": {"content": ["a"]}}]}',
        'a completion whose choices.0.message.content is not text (got ["a"])',
    ),
]
MALFORMED_ANSWER_IDS = [
    "choices-not-a-list",
    "not-an-object",
    "broken-json",
    "no-choices",
    "empty",
    "no-text",
    "content-not-text",
]


@pytest.mark.parametrize(
    ("whole", "raw", "problem"),
    [(False, *case) for case in MALFORMED_STREAMS] + [(True, *case) for case in MALFORMED_ANSWERS],
    ids=[f"stream-{i}" for i in MALFORMED_STREAM_IDS]
    + [f"whole-{i}" for i in MALFORMED_ANSWER_IDS],
)
def test_a_malformed_answer_is_one_line_naming_the_server(
    stub: tuple[StubBehaviour, str], whole: bool, raw: str, problem: str
) -> None:
    """Streamed, or whole as llama-cpp-python sends it (its streams carry no token counts)."""
    behaviour, url = stub
    behaviour.raw = raw
    backend = backend_for(url)
    if whole:
        backend._streams_usage = False
    with pytest.raises(ModelError) as info:
        backend.generate([backend.model_input(chat("hi"))], GREEDY)
    assert str(info.value).startswith(f"the server at {url} sent {problem}")
    assert "\n" not in str(info.value)
    assert len(behaviour.requests) == 1  # not retried: the server will send the same


@pytest.mark.parametrize(
    ("models", "problem"),
    [
        ({"data": 5}, "a model list whose data is not a list (got 5)"),
        ({"data": [{"name": "m"}]}, 'a model list with an entry without an id: {"name": "m"}'),
        (["stub"], 'a model list that is not a JSON object: ["stub"]'),
    ],
    ids=["data-not-a-list", "entry-without-id", "not-an-object"],
)
def test_a_malformed_model_list_is_one_line_naming_the_server(
    stub: tuple[StubBehaviour, str], models: Any, problem: str
) -> None:
    behaviour, url = stub
    behaviour.models = models
    with pytest.raises(ModelError) as info:
        backend_for(url)
    assert str(info.value) == (
        f"the server at {url} sent {problem} from /models: is this an OpenAI-compatible server?"
    )


def test_a_final_usage_piece_with_null_fields_is_read(stub: tuple[StubBehaviour, str]) -> None:
    """What real servers send stays accepted: a role-only first delta, `usage: null` pieces."""
    behaviour, url = stub
    behaviour.raw = sse(
        '{"choices": [{"index": 0, "delta": {"role": "assistant"}}], "usage": null}',
        '{"choices": [{"index": 0, "delta": {"content": "Hi"}, "logprobs": null}], "usage": null}',
        '{"choices": [{"index": 0, "delta": {}, "finish_reason": "length", "stop_reason": null}]}',
        '{"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": null}}',
        "[DONE]",
    )
    backend = backend_for(url)
    [generation] = backend.generate([backend.model_input(chat("hi"))], GREEDY)
    assert generation is not None
    assert (generation.text, generation.finish_reason) == ("Hi", "length")
    assert (generation.prompt_tokens, generation.completion_tokens) == (9, 1)


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "ends-at-close"])
def test_a_connection_cut_mid_answer_says_so_and_is_not_retried(
    stub: tuple[StubBehaviour, str], chunked: bool
) -> None:
    behaviour, url = stub
    behaviour.answer, behaviour.cut_after, behaviour.chunked = "one two three four", 2, chunked
    backend = backend_for(url, max_retries=3)
    with pytest.raises(ModelError) as info:
        backend.generate([backend.model_input(chat("hi"))], GREEDY)
    assert str(info.value).startswith(
        f"the server at {url} closed the connection in the middle of an answer, after 2 pieces"
    )
    assert "no OpenAI-compatible server answers" not in str(info.value)
    assert len(behaviour.requests) == 1  # text had arrived: a retry could repeat it


def test_a_connection_cut_before_any_text_is_retried(stub: tuple[StubBehaviour, str]) -> None:
    behaviour, url = stub
    behaviour.answer, behaviour.cut_after = "one two", 0
    backend = backend_for(url, max_retries=2)
    with pytest.raises(
        ModelError, match="closed the connection in the middle of an answer, after 0 pieces"
    ):
        backend.generate([backend.model_input(chat("hi"))], GREEDY)
    assert len(behaviour.requests) == 3
