"""The OpenAI-compatible backend against a stub server: what a real server will not do on demand
(429, 503, dropped connections, slow answers), the spec grammar, and what is stored.

The same backend against a real server (llama-cpp-python) is in test_remote_llama.py.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai_stub import StubBehaviour, stub_server

from workbench.backends import open_backend
from workbench.backends.base import (
    Cancel,
    Capabilities,
    CapabilityError,
    ModelError,
    ModelInput,
)
from workbench.backends.remote import RemoteBackend, ServerSpec, public_url
from workbench.config import OpenAISettings, Settings
from workbench.params import GenerationParams
from workbench.runner import cache_key
from workbench.runs import list_runs, run_outputs
from workbench.templates import Message, Rendered

GREEDY = GenerationParams(max_new_tokens=16)


def backend_for(url: str, **settings: Any) -> RemoteBackend:
    return RemoteBackend(
        ServerSpec(url, ""), OpenAISettings(base_url=url, **settings), backoff_s=0.01
    )


def chat(text: str) -> Rendered:
    return Rendered("p", "chat", (Message("system", "Be brief."), Message("user", text)), {})


@pytest.mark.parametrize(
    ("spec", "base_url", "model"),
    [
        ("openai", "http://127.0.0.1:8080/v1", ""),
        ("openai:", "http://127.0.0.1:8080/v1", ""),
        ("openai:llama3:8b", "http://127.0.0.1:8080/v1", "llama3:8b"),
        ("openai:smol@http://10.0.0.5:8000/v1/", "http://10.0.0.5:8000/v1", "smol"),
        ("openai:@https://models.example/v1", "https://models.example/v1", ""),
    ],
)
def test_spec_grammar(spec: str, base_url: str, model: str) -> None:
    assert ServerSpec.parse(spec, OpenAISettings()) == ServerSpec(base_url, model)


def test_spec_defaults_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {"WORKBENCH_OPENAI_BASE_URL": "http://gpu-box:8000/v1", "WORKBENCH_OPENAI_MODEL": "m"}
    ).openai
    assert ServerSpec.parse("openai", settings) == ServerSpec("http://gpu-box:8000/v1", "m")


def test_a_bad_url_is_refused_with_what_to_give() -> None:
    with pytest.raises(ModelError, match="not a server URL"):
        ServerSpec.parse("openai:m@http//nope", OpenAISettings(base_url="ftp://x"))


def test_what_is_stored_names_the_server_without_secrets() -> None:
    assert public_url("https://user:sk-123@host:8443/v1?key=sk-456#x") == "https://host:8443/v1"


def test_a_compare_column_names_the_server_model_not_its_url() -> None:
    from workbench.compare import column_label

    label = column_label("p@1", "openai:Qwen/Qwen2.5-7B@http://gpu:8000/v1", {})
    assert label == "p@1 · openai:Qwen/Qwen2.5-7B"


def test_chat_and_completion_requests(stub: tuple[StubBehaviour, str]) -> None:
    behaviour, url = stub
    backend = backend_for(url)
    assert backend.info.name == f"openai:stub@{url}"
    assert (backend.info.backend, backend.info.context_window) == ("openai", 512)
    chat_input = backend.model_input(chat("hi"))
    completion = backend.model_input(Rendered("p", "completion", (Message("user", "Q:"),), {}))
    out = backend.generate([chat_input, completion], GREEDY)
    assert [g.text if g else None for g in out] == ["Hello from the stub"] * 2
    first = next(r for r in behaviour.requests if "messages" in r)
    second = next(r for r in behaviour.requests if "prompt" in r)
    assert first["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]
    assert second["prompt"] == "Q:" and "messages" not in second
    assert first["stream_options"] == {"include_usage": True}
    assert out[0] is not None and (out[0].prompt_tokens, out[0].completion_tokens) == (7, 4)
    assert out[0].finish_reason == "eos" and out[0].ttft_s is not None


def test_the_revision_ignores_what_changes_per_request(stub: tuple[StubBehaviour, str]) -> None:
    _, url = stub
    assert backend_for(url).info.revision == backend_for(url).info.revision


def test_the_cache_key_includes_messages_only_for_servers(stub: tuple[StubBehaviour, str]) -> None:
    _, url = stub
    backend = backend_for(url)
    a, b = backend.model_input(chat("one")), backend.model_input(chat("two"))
    assert a.messages is not None
    assert cache_key(backend, a, GREEDY, 0) != cache_key(backend, b, GREEDY, 0)
    # The same text without messages (a local backend's input) keys as it always did.
    plain = ModelInput(a.text, False)
    assert cache_key(backend, plain, GREEDY, 0) != cache_key(backend, a, GREEDY, 0)


@pytest.mark.parametrize(
    ("failures", "expected_requests"),
    [
        ([(429, {"Retry-After": "0"})], 2),
        ([(503, {}), (502, {})], 3),
    ],
)
def test_retries_on_429_and_5xx(
    stub: tuple[StubBehaviour, str], failures: list[Any], expected_requests: int
) -> None:
    behaviour, url = stub
    backend = backend_for(url)
    behaviour.failures = list(failures)
    [generation] = backend.generate([backend.model_input(chat("hi"))], GREEDY)
    assert generation is not None and generation.text == "Hello from the stub"
    assert len(behaviour.requests) == expected_requests


def test_retry_after_is_honoured(stub: tuple[StubBehaviour, str]) -> None:
    behaviour, url = stub
    backend = backend_for(url)
    behaviour.failures = [(429, {"Retry-After": "1"})]
    started = time.monotonic()
    backend.generate([backend.model_input(chat("hi"))], GREEDY)
    assert time.monotonic() - started >= 1.0


def test_retries_are_bounded_and_then_the_error_is_clear(stub: tuple[StubBehaviour, str]) -> None:
    behaviour, url = stub
    backend = backend_for(url, max_retries=2)
    behaviour.failures = [(503, {})] * 5
    with pytest.raises(ModelError, match="refused the request: HTTP 503"):
        backend.generate([backend.model_input(chat("hi"))], GREEDY)
    assert len(behaviour.requests) == 3


def test_a_dropped_connection_is_retried(stub: tuple[StubBehaviour, str]) -> None:
    behaviour, url = stub
    backend = backend_for(url)
    behaviour.drop_connections = 1
    [generation] = backend.generate([backend.model_input(chat("hi"))], GREEDY)
    assert generation is not None and generation.text == "Hello from the stub"


def test_client_errors_are_not_retried(stub: tuple[StubBehaviour, str]) -> None:
    behaviour, url = stub
    backend = backend_for(url)
    behaviour.failures = [(401, {})]
    with pytest.raises(ModelError, match="HTTP 401 \\(check WORKBENCH_OPENAI_API_KEY\\)"):
        backend.generate([backend.model_input(chat("hi"))], GREEDY)
    assert len(behaviour.requests) == 1


def nobody_listens() -> str:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


class CountingTransport(httpx.HTTPTransport):
    """A real transport that counts the attempts made through it."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.attempts += 1
        return super().handle_request(request)


def test_a_server_that_is_down_gives_a_clear_error_at_the_first_attempt() -> None:
    """A refused connection is not transient: no retries, no backoff, one line."""
    url = nobody_listens()
    transport = CountingTransport()
    started = time.monotonic()
    with pytest.raises(
        ModelError, match=f"no OpenAI-compatible server answers at {url} — "
    ) as info:
        RemoteBackend(
            ServerSpec(url, ""),
            OpenAISettings(base_url=url, max_retries=3),
            transport=transport,
            backoff_s=1.0,  # three retries would take 7 s
        )
    assert transport.attempts == 1
    assert "\n" not in str(info.value) and "Connection refused" in str(info.value)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("streams_usage", [None, False], ids=["streamed", "whole"])
def test_a_server_that_went_away_fails_the_next_answer_at_once(
    stub: tuple[StubBehaviour, str], streams_usage: bool | None
) -> None:
    _, url = stub
    backend = backend_for(url, max_retries=3)
    backend._streams_usage = streams_usage  # False: whole answers (as for llama-cpp-python)
    transport = CountingTransport()
    backend.server, backend._transport = ServerSpec(nobody_listens(), ""), transport
    with pytest.raises(ModelError, match="no OpenAI-compatible server answers at"):
        backend.generate([backend.model_input(chat("hi"))], GREEDY)
    assert transport.attempts == 1


def test_the_concurrency_limit_is_respected(stub: tuple[StubBehaviour, str]) -> None:
    behaviour, url = stub
    behaviour.delay_s = 0.05
    backend = backend_for(url, max_concurrency=3)
    inputs = [backend.model_input(chat(f"row {i}")) for i in range(12)]
    seen: list[int] = []
    out = backend.generate(inputs, GREEDY, on_batch=lambda rows: seen.extend(i for i, _ in rows))
    assert all(g is not None for g in out) and sorted(seen) == list(range(12))
    assert behaviour.max_in_flight == 3


def test_cancel_stops_requests_in_flight_and_rows_not_started(
    stub: tuple[StubBehaviour, str],
) -> None:
    behaviour, url = stub
    behaviour.delay_s = 0.1
    behaviour.answer = " ".join(["word"] * 50)
    backend = backend_for(url, max_concurrency=2)
    cancel = Cancel()
    inputs = [backend.model_input(chat(f"row {i}")) for i in range(6)]
    timer = threading.Timer(0.35, cancel.set)
    timer.start()
    started = time.monotonic()
    out = backend.generate(inputs, GREEDY.with_(max_new_tokens=64), cancel=cancel)
    assert time.monotonic() - started < 2
    assert [g.finish_reason if g else None for g in out[:2]] == ["cancelled", "cancelled"]
    assert out[2:] == [None] * 4


def test_streaming_holds_back_a_stop_string_the_server_ignored(
    stub: tuple[StubBehaviour, str],
) -> None:
    behaviour, url = stub
    behaviour.answer = "one two three four"
    backend = backend_for(url)
    stream = backend.stream(backend.model_input(chat("count")), GREEDY.with_(stop=(" three",)))
    pieces = list(stream)
    assert "".join(pieces) == "one two"
    assert stream.result is not None and stream.result.finish_reason == "stop"


def test_without_usage_in_streams_generate_asks_for_whole_answers(
    stub: tuple[StubBehaviour, str],
) -> None:
    behaviour, url = stub
    behaviour.usage = False  # streams end without usage, as llama-cpp-python's do
    backend = backend_for(url)
    mi = backend.model_input(chat("hi"))
    [streamed] = backend.generate([mi], GREEDY)
    assert streamed is not None and streamed.completion_tokens == 4  # one piece per token
    assert streamed.prompt_tokens == backend.count_tokens(mi)  # an estimate: no tokenizer
    assert backend.count_is_estimate(mi)
    [whole] = backend.generate([mi], GREEDY)
    assert behaviour.requests[-1]["stream"] is False
    assert whole is not None and whole.text == streamed.text
    assert (whole.prompt_tokens, whole.completion_tokens, whole.ttft_s) == (7, 4, None)
    stream = backend.stream(mi, GREEDY)  # the Playground still streams
    assert "".join(stream) == "Hello from the stub" and behaviour.requests[-1]["stream"] is True


def test_open_backend_picks_the_server_from_the_spec(
    stub: tuple[StubBehaviour, str], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = stub
    monkeypatch.setenv("WORKBENCH_OPENAI_BASE_URL", url)
    backend = open_backend("openai", tmp_path)
    assert backend.info.name == f"openai:stub@{url}"
    assert open_backend(f"openai:stub@{url}", tmp_path) is backend


def test_the_api_key_is_sent_and_never_part_of_the_name(stub: tuple[StubBehaviour, str]) -> None:
    behaviour, url = stub
    backend = RemoteBackend(ServerSpec(url, ""), OpenAISettings(base_url=url), api_key="sk-test")
    backend.generate([backend.model_input(chat("hi"))], GREEDY)
    assert behaviour.authorizations == ["Bearer sk-test"]
    assert "sk-test" not in backend.info.name + backend.info.path + backend.info.revision


def test_the_playground_runs_on_a_server_it_contacts_only_then(
    stub: tuple[StubBehaviour, str], app_env: Path
) -> None:
    from conftest import app_test

    from workbench import jobs
    from workbench.runner import Runner
    from workbench.workspace import open_library

    behaviour, url = stub
    at = app_test("pages/2_Playground.py").run()
    at.radio(key="model_source").set_value("OpenAI-compatible server").run()
    at.text_input(key="model_server_url").set_value(url).run()
    at.selectbox(key="play_prompt").set_value("zero-shot-sentiment-chat").run()
    assert not at.exception, at.exception
    assert behaviour.model_lists == 0 and not behaviour.requests  # nothing contacted yet
    at.button(key="play_run").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    job = jobs.get_job(at.session_state["play_single_job"])  # the answer is a background job
    assert job is not None and job.wait(60) and job.error is None, job and job.error
    runner = Runner(open_library())
    [run] = list_runs(runner.store)
    [output] = run_outputs(runner.store, run.id)
    assert (output.model, output.text) == (f"openai:stub@{url}", "Hello from the stub")
    assert behaviour.requests[0]["messages"][-1]["role"] == "user"


def test_the_evaluate_page_refuses_perplexity_on_a_server_before_anything_runs(
    stub: tuple[StubBehaviour, str], app_env: Path
) -> None:
    from conftest import app_test

    from workbench.workspace import open_library

    behaviour, url = stub
    at = app_test("pages/6_Evaluate.py").run()
    at.radio(key="model_source").set_value("OpenAI-compatible server").run()
    at.text_input(key="model_server_url").set_value(url).run()
    at.multiselect(key="eval_refs").set_value(["zero-shot-sentiment-chat@1"]).run()
    at.session_state["eval_rows:rows"] = {
        "edited_rows": {0: {"text": "I love it"}},
        "added_rows": [],
        "deleted_rows": [],
    }
    at.text_area(key="eval_asserts").set_value("perplexity<=50").run()
    at.button(key="eval_run").click().run()
    assert not at.exception, at.exception
    assert at.error and "perplexity needs a local model" in at.error[0].value
    assert "eval_job" not in at.session_state
    assert not behaviour.requests and list_runs(open_library().store) == []


def test_runs_resume_finds_the_server_a_run_named(
    stub: tuple[StubBehaviour, str], capsys: pytest.CaptureFixture[str], prompt_text: Any
) -> None:
    from workbench.cli import main
    from workbench.runner import Runner
    from workbench.workspace import open_library

    behaviour, url = stub
    library = open_library()
    version = library.save(prompt_text("greet")).version
    runner = Runner(library, backend_for(url))
    run_id = runner.start([version], [{"text": "a"}, {"text": "b"}])  # planned, not generated
    assert not behaviour.requests
    assert main(["runs", "resume", str(run_id)]) == 0, capsys.readouterr().err
    assert len(behaviour.requests) == 2
    outputs = run_outputs(runner.store, run_id)
    assert [o.text for o in outputs] == ["Hello from the stub"] * 2
    assert {o.model for o in outputs} == {f"openai:stub@{url}"}
    # two requests sent at once: each row's time is its own request's, beside the other
    from workbench import wording

    assert [o.backend for o in outputs] == ["openai", "openai"]
    assert all(wording.latency_text(o).startswith("2 requests at once, ") for o in outputs)


# --- options sent --------------------------------------------------------------------------------


def test_penalties_are_sent_only_when_set(stub: tuple[StubBehaviour, str]) -> None:
    behaviour, url = stub
    backend = backend_for(url)
    mi = backend.model_input(chat("hi"))
    backend.generate([mi], GREEDY.with_(frequency_penalty=0.5, presence_penalty=-0.25))
    list(backend.stream(mi, GREEDY.with_(presence_penalty=1.0)))
    backend.generate([mi], GREEDY.with_(frequency_penalty=0.0))
    sent = [(r.get("frequency_penalty"), r.get("presence_penalty")) for r in behaviour.requests]
    assert sent == [(0.5, -0.25), (None, 1.0), (None, None)]
    assert "frequency_penalty" not in behaviour.requests[-1]  # a request as it always was


# --- what a server can do -----------------------------------------------------------------------


def test_a_server_declares_no_logits_and_refuses_to_score_text(
    stub: tuple[StubBehaviour, str],
) -> None:
    _, url = stub
    backend = backend_for(url)
    # declared by the backend, nothing probed: generated tokens' log-probabilities, and a
    # constraint sent with each request
    assert backend.capabilities == Capabilities(logprobs=True, constrained=True)
    assert not backend.capabilities.has("logits")
    with pytest.raises(CapabilityError, match="scoring a text needs a local model"):
        backend.log_likelihood("some text")


def test_a_server_without_a_tokenizer_cuts_text_by_a_labelled_estimate(
    stub: tuple[StubBehaviour, str],
) -> None:
    _, url = stub
    backend = backend_for(url)
    cut = backend.truncate_to_tokens("abcdefghij" * 10, 5)
    assert (cut.text, cut.exact) == ("abcdefghij" * 2, False)  # 4 characters a token
    short = backend.truncate_to_tokens("abc", 5)
    assert (short.text, short.exact) == ("abc", False)


def test_perplexity_on_a_server_says_it_needs_a_local_model(
    stub: tuple[StubBehaviour, str],
) -> None:
    from workbench.scorers import Context, parse_check, run_check

    behaviour, url = stub
    backend = backend_for(url)
    result = run_check(parse_check("perplexity<=50"), Context("Some answer.", model=backend))
    assert (result.passed, result.value) == (False, None)
    assert result.detail == (
        "perplexity needs a local model: it reads the model's own log-probabilities of a text, "
        f"which openai:stub@{url} does not give"
    )
    assert not behaviour.requests


def test_evaluating_perplexity_on_a_server_is_refused_before_anything_runs(
    stub: tuple[StubBehaviour, str], library: Any, prompt_text: Any
) -> None:
    from workbench.datasets import Dataset
    from workbench.evaluate import EvaluationError, evaluate
    from workbench.runner import Runner

    behaviour, url = stub
    library.save(prompt_text("greet"))
    runner = Runner(library, backend_for(url))
    rows = Dataset("rows", ("text",), ({"text": "a"}, {"text": "b"}))
    with pytest.raises(EvaluationError, match="greet@1: perplexity needs a local model"):
        evaluate(library, runner, ["greet"], rows, ["contains:Hello", "perplexity"])
    assert not behaviour.requests and not list_runs(runner.store)
    # what a server can do still runs: model-graded asks the server itself
    report = evaluate(
        library, runner, ["greet"], rows, [{"type": "model-graded", "value": "Is it polite?"}]
    )
    assert [r.scores[0].detail.startswith("grader said ") for r in report.versions[0].rows] == [
        True,
        True,
    ]


@pytest.mark.parametrize(("answer", "passed"), [("Yes.", True), ("no", False)])
def test_model_graded_asks_the_server_for_a_verdict(
    stub: tuple[StubBehaviour, str], answer: str, passed: bool
) -> None:
    from workbench.scorers import Context, parse_check, run_check

    behaviour, url = stub
    backend = backend_for(url)
    behaviour.answer = answer
    check = parse_check({"type": "model-graded", "value": "Is the answer polite?"})
    result = run_check(check, Context("Thank you so much!", model=backend))
    assert (result.passed, result.value) == (passed, 1.0 if passed else 0.0)
    assert result.detail.startswith(f"grader said {answer!r} (a small model's judgement")
    [request] = behaviour.requests
    assert request["max_tokens"] == 4 and request["temperature"] == 0.0
    assert request["messages"][0]["role"] == "system"
    assert "Rubric: Is the answer polite?" in request["messages"][1]["content"]
    assert "Thank you so much!" in request["messages"][1]["content"]


def test_model_graded_cuts_a_long_answer_to_fit_the_servers_window(
    stub: tuple[StubBehaviour, str],
) -> None:
    from workbench.scorers import Context, parse_check, run_check

    behaviour, url = stub
    backend = backend_for(url)  # the stub reports a 512-token window and cannot tokenize
    behaviour.answer = "yes"
    check = parse_check({"type": "model-graded", "value": "Is it short?"})
    result = run_check(check, Context("word " * 5000, model=backend))
    assert result.passed and "by an estimate (the server does not tokenize)" in result.detail
    [request] = behaviour.requests
    messages = tuple((m["role"], m["content"]) for m in request["messages"])
    assert 0 < messages[1][1].count("word") < 512  # cut, yet the start of the answer is there
    sent = ModelInput(json.dumps(request["messages"]), False, messages=messages)
    assert backend.count_tokens(sent) + 4 <= 512  # the question and its 4-token reply fit


@pytest.fixture
def stub() -> Any:
    behaviour = StubBehaviour()
    with stub_server(behaviour) as url:
        yield behaviour, url
