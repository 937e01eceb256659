"""The OpenAI-compatible backend against a real server: llama-cpp-python's, on the default
model's GGUF file (SmolLM2-135M-Instruct), started once per session on a free port.

Without llama-cpp-python these tests skip and say why, except in CI (CI=true) or with
WORKBENCH_REQUIRE_REMOTE=1, where a missing server is a failure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import build_prompt_text
from servers import ALIAS
from sqlalchemy import select

from workbench.backends.base import Cancel, ModelError
from workbench.backends.remote import RemoteBackend, ServerSpec
from workbench.config import OpenAISettings
from workbench.library import Library
from workbench.params import GenerationParams
from workbench.runner import Runner
from workbench.store import Output, Run
from workbench.templates import Message, Rendered

COUNTING = "Count from one to twenty: 1, 2, 3, 4, 5,"


@pytest.fixture(scope="session")
def llama(llama_url: str) -> RemoteBackend:
    settings = OpenAISettings(base_url=llama_url, context_window=2048, max_concurrency=4)
    return RemoteBackend(ServerSpec(llama_url, ALIAS), settings)


def chat(text: str) -> Rendered:
    return Rendered("p", "chat", (Message("user", text),), {})


def completion(text: str) -> Rendered:
    return Rendered("p", "completion", (Message("user", text),), {})


GREEDY = GenerationParams(max_new_tokens=24)


def test_the_server_is_described(llama: RemoteBackend, llama_url: str) -> None:
    info = llama.info
    assert (info.backend, info.name, info.path) == (
        "openai",
        f"openai:{ALIAS}@{llama_url}",
        llama_url,
    )
    assert info.revision.startswith(ALIAS + "#") and info.context_window == 2048


def test_chat_and_completion(llama: RemoteBackend) -> None:
    chat_out, completion_out = llama.generate(
        [
            llama.model_input(chat("What is the capital of France?")),
            llama.model_input(completion(COUNTING)),
        ],
        GREEDY,
    )
    assert chat_out is not None and "Paris" in chat_out.text
    assert completion_out is not None and completion_out.text.startswith(" 6, 7")
    for g in (chat_out, completion_out):
        assert g.prompt_tokens > 5 and 0 < g.completion_tokens <= 24
        assert g.finish_reason in ("eos", "length")


def warm(llama: RemoteBackend, mi: Any, params: GenerationParams = GREEDY) -> None:
    """Send `mi` once first, so the requests a test compares all reuse its KV cache.

    llama.cpp keeps the previous request's tokens and computes only what is new; a prompt
    computed in one pass and the same prompt reused from the cache can give slightly different
    logits (batched and single-token kernels differ), so the first request of a prompt may
    answer differently from the next ones even when greedy.
    """
    llama.generate([mi], params)


def test_streaming(llama: RemoteBackend) -> None:
    mi = llama.model_input(completion(COUNTING))
    warm(llama, mi)
    stream = llama.stream(mi, GREEDY)
    pieces = list(stream)
    assert len(pieces) > 3
    [batch] = llama.generate([mi], GREEDY)
    assert stream.result is not None and batch is not None
    assert "".join(pieces) == stream.result.text == batch.text
    assert stream.result.finish_reason == "length"


def test_stop_strings(llama: RemoteBackend) -> None:
    mi = llama.model_input(completion(COUNTING))
    [g] = llama.generate([mi], GREEDY.with_(stop=(" 9",)))
    assert g is not None and g.text == " 6, 7, 8," and g.finish_reason == "stop"
    stream = llama.stream(mi, GREEDY.with_(stop=(" 9",)))
    assert "".join(stream) == " 6, 7, 8,"


def test_seeds_fix_sampled_answers(llama: RemoteBackend) -> None:
    mi = llama.model_input(chat("Write a short poem about the sea."))
    params = GenerationParams(max_new_tokens=24, temperature=1.2)
    warm(llama, mi, params)
    out = llama.generate([mi, mi, mi], params, seeds=[1, 1, 2])
    texts = [g.text if g else None for g in out]
    assert texts[0] == texts[1] and texts[0] != texts[2]


def test_token_counts_come_from_the_server(llama: RemoteBackend) -> None:
    mi = llama.model_input(completion(COUNTING))
    assert not llama.count_is_estimate(mi)  # llama-cpp-python tokenizes (/extras/tokenize)
    list(llama.stream(mi, GREEDY))
    # Its streams carry no usage, so generate asks for whole answers, which do.
    assert llama._streams_usage is False
    [g] = llama.generate([mi], GREEDY)
    assert g is not None and llama.count_tokens(mi) == g.prompt_tokens
    assert g.completion_tokens == GREEDY.max_new_tokens and g.finish_reason == "length"
    question = llama.model_input(chat("hi"))
    assert llama.count_is_estimate(question)  # the chat template is the server's
    [answer] = llama.generate([question], GREEDY)
    assert answer is not None and answer.prompt_tokens > 10  # its default system line counts


def test_cancel(llama: RemoteBackend) -> None:
    cancel = Cancel()
    stream = llama.stream(
        llama.model_input(chat("Tell me a long story.")), GREEDY.with_(max_new_tokens=200), cancel
    )
    pieces = []
    for piece in stream:
        pieces.append(piece)
        if len(pieces) == 3:
            cancel.set()
    assert stream.result is not None and stream.result.finish_reason == "cancelled"
    assert stream.result.completion_tokens < 50


def test_a_dataset_run_is_stored_and_cached(
    llama: RemoteBackend, llama_url: str, builtin_library: Library
) -> None:
    runner = Runner(builtin_library, llama)
    rows = [{"text": t} for t in ("I love it!", "It broke on day one.", "It is blue.")] * 2
    chat_version = builtin_library.get("zero-shot-sentiment-chat")
    raw_version = builtin_library.get("zero-shot-sentiment")
    first = runner.run([chat_version, raw_version], rows)
    assert first.run.status == "done" and len(first.outputs) == 12
    assert all(o.text and not o.cached and o.error is None for o in first.outputs)
    with builtin_library.store.read() as s:
        run = s.get_one(Run, first.run.id)
        assert (run.backend, run.model) == ("openai", f"openai:{ALIAS}@{llama_url}")
        stored = s.scalars(select(Output).where(Output.run_id == first.run.id)).all()
        assert {(o.backend, o.model, o.revision) for o in stored} == {
            ("openai", llama.info.name, llama.info.revision)
        }
        inputs = {o.model_input for o in stored}
        assert any(i.startswith('[{"role": "user"') for i in inputs)  # messages as sent
        assert any(i.startswith("Classify the sentiment") for i in inputs)  # raw text
    again = runner.run([chat_version, raw_version], rows)
    assert all(o.cached for o in again.outputs)
    # Each answer is one the server gave for that very request. (Rows repeat: llama.cpp may
    # answer a repeated request differently after reusing its cached prompt prefix, and an
    # identical request is then answered from either stored answer.)
    given: dict[tuple[str, int, str], set[str | None]] = {}
    for o in first.outputs:
        given.setdefault((o.prompt, o.version, o.variables["text"]), set()).add(o.text)
    assert all(o.text in given[(o.prompt, o.version, o.variables["text"])] for o in again.outputs)


def test_self_consistency_samples_with_seeds(
    llama: RemoteBackend, builtin_library: Library
) -> None:
    text = build_prompt_text(
        "sc-remote",
        body="user:\nPick a number from 1 to 3. {{ text }}\n",
        metadata={"technique": "self-consistency", "samples": 3, "answer_pattern": "([123])"},
    )
    version = builtin_library.save(text).version
    runner = Runner(builtin_library, llama)
    summary = runner.run([version], [{"text": "Just the number."}], overrides={"max_new_tokens": 8})
    assert len(summary.outputs) == 3 and len(summary.votes) == 1
    assert sorted(o.seed for o in summary.outputs) == [0, 1, 2]


def test_the_cli_runs_on_the_server(
    llama: RemoteBackend, llama_url: str, tiny_cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBENCH_OPENAI_BASE_URL", llama_url)
    code, out, err = tiny_cli(
        "run", "zero-shot-sentiment", "--model", f"openai:{ALIAS}", "--var", "text=I love it!"
    )
    assert code == 0, err
    assert out.strip()
    code, out, err = tiny_cli("runs", "list")
    assert f"openai:{ALIAS}@{llama_url}" in out


def test_a_server_that_stopped_gives_a_clear_error(tmp_path: Path) -> None:
    from servers import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(ModelError, match="no OpenAI-compatible server answers at"):
        RemoteBackend(ServerSpec(url, ALIAS), OpenAISettings(base_url=url, max_retries=0))
