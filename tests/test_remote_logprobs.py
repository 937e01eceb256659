"""Token log-probabilities from OpenAI-compatible servers: the WLP2 format that stores token
texts, the backend asking for them and reading both answer shapes (chat and completion,
streamed and whole), a server that refuses them and one that omits them (said once).

The same against a real server (llama-cpp-python) is in test_remote_llama.py.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from openai_stub import StubBehaviour, stub_logprob, stub_server

from workbench.backends.base import Generation, ModelInput
from workbench.backends.openai_wire import TokenStep, WireError, token_steps
from workbench.backends.remote import RemoteBackend, ServerSpec
from workbench.config import OpenAISettings
from workbench.logprobs import UNKNOWN_ID, LogprobsFormatError, TokenLogprobs
from workbench.params import GenerationParams
from workbench.templates import Message, Rendered

GREEDY = GenerationParams(max_new_tokens=16)

# --- the stored format ----------------------------------------------------------------------------

SERVER_RECORD = TokenLogprobs.from_texts(
    ["Pos", "itive", "!", " é", "\ufffd"],
    [-0.25, -0.5, -1.5, -2.0, -3.0],
    [
        [("Pos", -0.25), ("Neg", -1.75), ("Neutral", -3.0)],
        [("itive", -0.5), ("ative", -1.0)],
        [("!", -1.5), (".", -1.625), ("", -2.0), (" ", -4.0), ("\n", -5.0), ("x", -9.0)],
        [(" é", -2.0)],
        [],
    ],
)


def test_a_server_record_has_texts_and_unknown_ids_padded_to_k() -> None:
    record = SERVER_RECORD
    assert record.k == 5 and record.after == "server" and record.processors == ()
    assert record.tokens == (UNKNOWN_ID,) * 5
    assert record.top_texts is not None and record.top_texts[1] == ("itive", "ative", "", "", "")
    assert record.top_logprobs[1][2:] == (float("-inf"),) * 3
    assert record.top_texts[2] == ("!", ".", "", " ", "\n")  # kept to k
    assert all(len(step) == 5 for step in record.top_ids)


@pytest.mark.parametrize(
    "record",
    [
        SERVER_RECORD,
        SERVER_RECORD.head(2),
        TokenLogprobs.from_texts([], [], []),
        # texts with ids (a backend that knows both), and odd texts: a lone surrogate from JSON
        TokenLogprobs(
            (5, 9),
            (-0.5, -1.25),
            ((5, 1), (9, 2)),
            ((-0.5, -1.0), (-1.25, -2.5)),
            2,
            "processors",
            ("temperature",),
            ("a", "\ud83d"),
            (("a", "b"), ("\ud83d", "")),
        ),
    ],
    ids=["server", "head", "empty", "with-ids"],
)
def test_wlp2_round_trips(record: TokenLogprobs) -> None:
    blob = record.to_bytes()
    assert blob[:4] == b"WLP2"
    assert TokenLogprobs.from_bytes(blob) == record


def test_wlp1_is_still_written_without_texts_and_read_as_before() -> None:
    record = TokenLogprobs(
        (5, 9),
        (-0.5, -1.25),
        ((5, 1, 2, 3, 4), (7, 9, 1, 2, 3)),
        ((-0.5, -1.0, -2.0, -3.0, float("-inf")), (-0.125, -1.25, -2.5, -3.5, -4.5)),
    )
    blob = record.to_bytes()
    assert blob[:4] == b"WLP1" and len(blob) == len(record.to_bytes())
    back = TokenLogprobs.from_bytes(blob)
    assert back == record and back.texts is None and back.top_texts is None


def test_a_wlp1_blob_written_by_hand_reads() -> None:
    """The bytes the previous version wrote, built here by hand from its documented layout."""
    header = b'{"k":2,"after":"processors","processors":["top_p"]}'
    blob = (
        b"WLP1"
        + struct.pack("<I", len(header))
        + header
        + struct.pack("<i", 42)
        + struct.pack("<f", -0.5)
        + struct.pack("<ii", 42, 7)
        + struct.pack("<ff", -0.5, float("-inf"))
    )
    assert TokenLogprobs.from_bytes(blob) == TokenLogprobs(
        (42,), (-0.5,), ((42, 7),), ((-0.5, float("-inf")),), 2, "processors", ("top_p",)
    )


def test_wlp2_is_compact_each_text_stored_once() -> None:
    """36 bytes a token at k = 5 without ids, plus each distinct text once."""
    words = ["Pos", "itive", "Neg", "ative", "!", ".", " the"]

    def record(steps: int) -> TokenLogprobs:
        return TokenLogprobs.from_texts(
            [words[i % 7] for i in range(steps)],
            [-0.5] * steps,
            [[(words[(i + j) % 7], -1.0 - j) for j in range(5)] for i in range(steps)],
        )

    assert len(record(201).to_bytes()) - len(record(200).to_bytes()) == 36
    assert len(record(200).to_bytes()) < 200 * 36 + 200  # header and 7 texts


@pytest.mark.parametrize(
    "bad",
    [
        b"WLP2",
        b"WLP2\x02\x00\x00\x00{}",
        b"WLP2\x05\x00\x00\x00[1,2]",
        SERVER_RECORD.to_bytes()[:-1],
        SERVER_RECORD.to_bytes() + b"x",
    ],
    ids=["short", "no-fields", "not-an-object", "cut", "trailing"],
)
def test_a_damaged_wlp2_blob_is_refused(bad: bytes) -> None:
    with pytest.raises(LogprobsFormatError):
        TokenLogprobs.from_bytes(bad)


def test_a_text_index_out_of_range_is_refused() -> None:
    blob = bytearray(TokenLogprobs.from_texts(["a"], [-1.0], [[("a", -1.0)]], k=1).to_bytes())
    blob[-4] = 7  # the high byte of the alternative's text index: 1792, of 1 text
    with pytest.raises(LogprobsFormatError):
        TokenLogprobs.from_bytes(bytes(blob))


# --- asked of a server, read from both shapes, streamed and whole ---------------------------------

ANSWER = "Hello from the stub"
PIECES = ["Hello", " from", " the", " stub"]


def backend_for(url: str) -> RemoteBackend:
    return RemoteBackend(ServerSpec(url, ""), OpenAISettings(base_url=url), backoff_s=0.01)


def chat_input(backend: RemoteBackend) -> ModelInput:
    return backend.model_input(Rendered("p", "chat", (Message("user", "hi"),), {}))


def completion_input(backend: RemoteBackend) -> ModelInput:
    return backend.model_input(Rendered("p", "completion", (Message("user", "Q:"),), {}))


def as_stub_sent(record: TokenLogprobs | None, pieces: list[str] = PIECES) -> None:
    """The record holds what the stub sent: each token's text and log-probability, and its k
    alternatives best first, whichever shape they came in."""
    assert record is not None and record.after == "server" and record.k == 5
    assert record.texts == tuple(pieces)
    assert record.logprobs == tuple(stub_logprob(i) for i in range(len(pieces)))
    assert record.tokens == (UNKNOWN_ID,) * len(pieces)
    assert record.top_texts == tuple((p, "alt1", "alt2", "alt3", "alt4") for p in pieces)
    assert record.top_logprobs == tuple(
        tuple(stub_logprob(i) - j for j in range(5)) for i in range(len(pieces))
    )


def answer(backend: RemoteBackend, mi: ModelInput, how: str) -> Generation:
    """One answer by `how`: the Playground's stream, a streamed row of `generate`, or a whole
    (non-streamed) row, as `generate` asks of a server whose streams carry no usage."""
    if how == "stream":
        stream = backend.stream(mi, GREEDY)
        assert "".join(stream) == stream.result.text  # type: ignore[union-attr]
        result = stream.result
    else:
        if how == "whole":
            backend._streams_usage = False
        [result] = backend.generate([mi], GREEDY)
    assert result is not None
    return result


@pytest.mark.parametrize("how", ["stream", "streamed", "whole"])
@pytest.mark.parametrize("endpoint", ["chat", "completion"])
def test_a_server_is_asked_and_its_logprobs_kept(
    stub: tuple[StubBehaviour, str], endpoint: str, how: str
) -> None:
    behaviour, url = stub
    backend = backend_for(url)
    mi = chat_input(backend) if endpoint == "chat" else completion_input(backend)
    g = answer(backend, mi, how)
    sent = behaviour.requests[-1]
    assert sent["stream"] is (how != "whole")
    if endpoint == "chat":
        assert (sent["logprobs"], sent["top_logprobs"]) == (True, 5)
    else:
        assert sent["logprobs"] == 5 and "top_logprobs" not in sent
    assert g.text == ANSWER and g.notice is None
    as_stub_sent(g.logprobs)
    assert TokenLogprobs.from_bytes(g.logprobs.to_bytes()) == g.logprobs  # type: ignore[union-attr]
    assert backend.capabilities.has("logprobs")


@pytest.mark.parametrize("how", ["stream", "whole"])
def test_a_stop_string_cut_by_the_workbench_keeps_the_tokens_of_the_text_kept(
    stub: tuple[StubBehaviour, str], how: str
) -> None:
    """The stub ignores stop strings; the workbench cuts "Hello from " and keeps the tokens
    that begin in it (" the" brings the space)."""
    _, url = stub
    backend = backend_for(url)
    mi = chat_input(backend)
    if how == "stream":
        stream = backend.stream(mi, GREEDY.with_(stop=("the",)))
        "".join(stream)
        g = stream.result
    else:
        backend._streams_usage = False
        [g] = backend.generate([mi], GREEDY.with_(stop=("the",)))
    assert g is not None and g.text == "Hello from "
    as_stub_sent(g.logprobs, PIECES[:3])


@pytest.mark.parametrize("endpoint", ["chat", "completion"])
def test_how_many_alternatives_is_a_setting_and_0_asks_for_none(
    stub: tuple[StubBehaviour, str], endpoint: str
) -> None:
    behaviour, url = stub
    three = RemoteBackend(ServerSpec(url, ""), OpenAISettings(base_url=url, top_logprobs=3))
    mi = chat_input(three) if endpoint == "chat" else completion_input(three)
    [g] = three.generate([mi], GREEDY)
    assert g is not None and g.logprobs is not None and g.logprobs.k == 3
    assert g.logprobs.top_texts is not None and g.logprobs.top_texts[0] == ("Hello", "alt1", "alt2")
    off = RemoteBackend(ServerSpec(url, ""), OpenAISettings(base_url=url, top_logprobs=0))
    [g] = off.generate([mi], GREEDY)
    assert g is not None and g.text == ANSWER and g.logprobs is None and g.notice is None
    assert not {"logprobs", "top_logprobs"} & set(behaviour.requests[-1])  # as it always was
    assert not off.capabilities.has("logprobs")


@pytest.mark.parametrize(
    ("value", "expected"), [("", 5), ("0", 0), ("20", 20), ("21", None), ("-1", None)]
)
def test_the_top_logprobs_setting(value: str, expected: int | None) -> None:
    from workbench.config import Settings
    from workbench.errors import WorkbenchError

    env = {"WORKBENCH_OPENAI_TOP_LOGPROBS": value}
    if expected is None:
        with pytest.raises(WorkbenchError, match="WORKBENCH_OPENAI_TOP_LOGPROBS must be"):
            Settings.from_env(env)
    else:
        assert Settings.from_env(env).openai.top_logprobs == expected


def test_tokens_of_a_stop_string_the_server_cut_are_left_out(
    stub: tuple[StubBehaviour, str],
) -> None:
    """llama-cpp-python cuts a stop string from the text and still reports its tokens."""
    behaviour, url = stub
    steps = [("Positive", -0.5), ("\n", -0.25), ("Text", -1.0), (":", -0.125)]
    behaviour.raw = json.dumps(
        {
            "choices": [
                {
                    "text": "Positive\n",
                    "finish_reason": "stop",
                    "logprobs": {
                        "tokens": [t for t, _ in steps],
                        "token_logprobs": [v for _, v in steps],
                        "top_logprobs": [{t: v} for t, v in steps],
                    },
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4},
        }
    )
    backend = backend_for(url)
    backend._streams_usage = False
    [g] = backend.generate([completion_input(backend)], GREEDY.with_(stop=("Text:",)))
    assert g is not None and g.logprobs is not None and g.text == "Positive\n"
    assert g.logprobs.texts == ("Positive", "\n") and g.logprobs.logprobs == (-0.5, -0.25)


def test_the_token_view_reads_a_servers_record_by_its_texts(
    stub: tuple[StubBehaviour, str],
) -> None:
    """What the Playground and Compare show for a server's answer: its tokens' texts and
    alternatives, padding left out, and a caption that says whose probabilities they are."""
    from workbench import token_view

    _, url = stub
    backend = backend_for(url)
    [g] = backend.generate([chat_input(backend)], GREEDY)
    assert g is not None and g.logprobs is not None
    pieces = token_view.stored_pieces(g.logprobs)
    assert pieces is not None
    steps = token_view.token_steps(g.logprobs, pieces)
    assert "".join(s.text for s in steps) == g.text
    assert [s.rank for s in steps] == [1, 1, 1, 1]  # chosen by text: ids are unknown
    assert [a.text for a in steps[0].alternatives] == ["Hello", "alt1", "alt2", "alt3", "alt4"]
    padded = token_view.token_steps(SERVER_RECORD, token_view.stored_pieces(SERVER_RECORD))
    assert [len(s.alternatives) for s in padded] == [3, 2, 5, 1, 0]
    assert "server reported" in token_view.distribution_text(g.logprobs)


# --- servers that give none -----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["streamed", "whole"])
@pytest.mark.parametrize("endpoint", ["chat", "completion"])
def test_a_server_that_refuses_them_is_asked_again_without_once_and_remembered(
    stub: tuple[StubBehaviour, str],
    caplog: pytest.LogCaptureFixture,
    endpoint: str,
    how: str,
) -> None:
    behaviour, url = stub
    behaviour.logprobs = "refuse"
    backend = backend_for(url)
    mi = chat_input(backend) if endpoint == "chat" else completion_input(backend)
    with caplog.at_level("WARNING", logger="workbench.backends.remote"):
        first = answer(backend, mi, how)
        second = answer(backend, mi, how)
    assert first.text == second.text == ANSWER
    assert first.logprobs is None and second.logprobs is None
    asked = ["logprobs" in r for r in behaviour.requests]
    assert asked == [True, False, False]  # refused, retried without, then never asked again
    assert first.notice == second.notice
    assert first.notice == (
        f"the server at {url} refused token log-probabilities (HTTP 400: logprobs and "
        "top_logprobs are not supported by this server); its answers are stored without them"
    )
    assert caplog.text.count("refused token log-probabilities") == 1
    assert not backend.capabilities.has("logprobs")


@pytest.mark.parametrize("how", ["stream", "streamed", "whole"])
def test_a_server_that_omits_them_is_said_once(
    stub: tuple[StubBehaviour, str], caplog: pytest.LogCaptureFixture, how: str
) -> None:
    behaviour, url = stub
    behaviour.logprobs = "omit"
    backend = backend_for(url)
    mi = completion_input(backend)
    with caplog.at_level("WARNING", logger="workbench.backends.remote"):
        answers = [answer(backend, mi, how) for _ in range(3)]
        [*rows] = backend.generate([mi] * 4, GREEDY)
    assert all(g is not None and g.text == ANSWER and g.logprobs is None for g in answers + rows)
    notices = {g.notice for g in answers + rows if g is not None}
    assert notices == {
        f"the server at {url} answers without token log-probabilities (it ignores `logprobs`); "
        "its answers are stored without them"
    }
    assert caplog.text.count("answers without token log-probabilities") == 1
    assert "logprobs" in behaviour.requests[0]
    assert all("logprobs" not in r for r in behaviour.requests[1:])  # not asked again
    assert not backend.capabilities.has("logprobs")


def test_an_empty_answer_does_not_say_the_server_omits_them(
    stub: tuple[StubBehaviour, str],
) -> None:
    behaviour, url = stub
    behaviour.answer, behaviour.logprobs = "", "omit"
    backend = backend_for(url)
    [g] = backend.generate([chat_input(backend)], GREEDY)
    assert g is not None and g.notice is None and backend.capabilities.has("logprobs")


@pytest.mark.parametrize("how", ["streamed", "whole"])
@pytest.mark.parametrize("endpoint", ["chat", "completion"])
def test_unreadable_logprobs_cost_only_themselves(
    stub: tuple[StubBehaviour, str], endpoint: str, how: str
) -> None:
    behaviour, url = stub
    behaviour.logprobs = "garbled"
    backend = backend_for(url)
    mi = chat_input(backend) if endpoint == "chat" else completion_input(backend)
    g = answer(backend, mi, how)
    assert g.text == ANSWER and g.logprobs is None
    assert g.notice is not None and g.notice.startswith(f"the server at {url} sent log-probabil")
    assert g.notice.endswith("its answers are stored without token log-probabilities")
    assert not backend.capabilities.has("logprobs")


@pytest.mark.parametrize(
    ("raw", "steps"),
    [
        (None, []),
        ({"content": None, "refusal": None}, []),
        (
            {"content": [{"token": "bytes:\\xe2\\x80", "logprob": -1.0, "bytes": [226, 128]}]},
            [TokenStep("\ufffd", -1.0, ())],
        ),
        (
            {"tokens": ["a"], "token_logprobs": [None], "top_logprobs": [{"b": -2.0, "a": -1}]},
            [TokenStep("a", math.nan, (("a", -1.0), ("b", -2.0)))],
        ),
        ({"tokens": ["a"], "token_logprobs": [-0.5], "top_logprobs": None}, None),
    ],
    ids=["null", "no-content", "part-of-a-character", "null-logprob", "no-alternatives"],
)
def test_what_servers_send_is_read(raw: Any, steps: list[TokenStep] | None) -> None:
    got = token_steps(raw)
    if steps is None:
        assert got == [TokenStep("a", -0.5, ())]
        return
    assert len(got) == len(steps)
    for a, b in zip(got, steps, strict=True):
        assert a.text == b.text and a.top == b.top
        assert a.logprob == b.logprob or (math.isnan(a.logprob) and math.isnan(b.logprob))


@pytest.mark.parametrize(
    "raw",
    [[1], {"content": [{"logprob": -1}]}, {"tokens": ["a", "b"], "token_logprobs": [-1.0]}],
    ids=["not-an-object", "no-token", "lengths-differ"],
)
def test_what_cannot_be_read_is_a_wire_error(raw: Any) -> None:
    with pytest.raises(WireError):
        token_steps(raw)


# --- through the runner and the CLI: stored with texts, said once per run ------------------------


def test_a_servers_logprobs_are_stored_with_texts_and_kept_by_the_cache(
    stub: tuple[StubBehaviour, str], prompt_text: Any
) -> None:
    from workbench.runner import Runner
    from workbench.runs import token_logprobs
    from workbench.workspace import open_library

    behaviour, url = stub
    library = open_library()
    version = library.save(prompt_text("greet")).version
    runner = Runner(library, backend_for(url))
    first = runner.run([version], [{"text": "a"}, {"text": "b"}])
    stored = token_logprobs(runner.store, [o.id for o in first.outputs])
    assert set(stored) == {o.id for o in first.outputs} and first.notices == ()
    for record in stored.values():
        as_stub_sent(record)
    again = runner.run([version], [{"text": "a"}, {"text": "b"}])
    assert all(o.cached for o in again.outputs) and len(behaviour.requests) == 2
    kept = token_logprobs(runner.store, [o.id for o in again.outputs])
    assert set(kept) == {o.id for o in again.outputs}
    assert all(record.texts == tuple(PIECES) for record in kept.values())


def test_a_run_on_a_server_that_omits_them_says_so_once(
    stub: tuple[StubBehaviour, str],
    prompt_text: Any,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from workbench.cli import main
    from workbench.workspace import open_library

    behaviour, url = stub
    behaviour.logprobs = "omit"
    library = open_library()
    library.save(prompt_text("greet"))
    rows = tmp_path / "rows.csv"
    rows.write_text("text\n" + "".join(f"row {i}\n" for i in range(5)))
    model = f"openai:stub@{url}"
    assert main(["run", "greet", "--dataset", str(rows), "--model", model]) == 0
    first = capsys.readouterr().err
    assert first.count("answers without token log-probabilities") == 1, first
    assert first.count("note: the server at") == 1
    # the next run on the same backend (reused in this process) says it again, once
    assert main(["run", "greet", "--dataset", str(rows), "--model", model, "--no-cache"]) == 0
    assert capsys.readouterr().err.count("answers without token log-probabilities") == 1
    # one streamed answer, and a JSON summary
    assert main(["run", "greet", "--var", "text=hi", "--model", model, "--no-cache"]) == 0
    assert capsys.readouterr().err.count("note: the server at") == 1
    assert main(["run", "greet", "--dataset", str(rows), "--model", model, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["notices"] == []  # every answer cached: nothing was asked of the server
    assert (
        main(["run", "greet", "--dataset", str(rows), "--model", model, "--no-cache", "--json"])
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert len(data["notices"]) == 1 and "without token log-probabilities" in data["notices"][0]


def shown_info(at: Any) -> list[str]:
    """The info boxes' text as a reader sees it (the server's words are escaped Markdown)."""
    return [i.value.replace("\\", "") for i in at.info]


def test_the_playground_says_once_that_a_server_gives_none(
    stub: tuple[StubBehaviour, str], app_env: Any
) -> None:
    """One answer, then three rows: each shows the notice once (as text), never per row."""
    from conftest import app_test

    from workbench import jobs

    behaviour, url = stub
    behaviour.logprobs = "omit"
    at = app_test("pages/2_Playground.py").run()
    at.radio(key="model_source").set_value("OpenAI-compatible server").run()
    at.text_input(key="model_server_url").set_value(url).run()
    at.selectbox(key="play_prompt").set_value("zero-shot-sentiment-chat").run()
    at.button(key="play_run").click().run()
    job = jobs.get_job(at.session_state["play_single_job"])
    assert job is not None and job.wait(60) and job.error is None, job and job.error
    at.run()
    assert not at.exception, at.exception
    said = [i for i in shown_info(at) if "without token log-probabilities" in i]
    assert len(said) == 1 and f"the server at `{url}`" in said[0]
    at.session_state["play_ds:zero-shot-sentiment-chat@1:rows"] = {
        "edited_rows": {0: {"text": "great"}},
        "added_rows": [{"text": "awful"}, {"text": "fine"}],
        "deleted_rows": [],
    }
    at.run()
    at.button(key="play_run_dataset").click().run()
    job = jobs.get_job(at.session_state["play_dataset_job"])
    assert job is not None and job.wait(60) and job.error is None, job and job.error
    at.run()
    assert not at.exception, at.exception
    said = [i for i in shown_info(at) if "without token log-probabilities" in i]
    assert len(said) == 2  # the answer's, still shown, and the run's: one for three rows
    assert len(behaviour.requests) == 4


@pytest.fixture
def stub() -> Iterator[tuple[StubBehaviour, str]]:
    behaviour = StubBehaviour()
    with stub_server(behaviour) as url:
        yield behaviour, url
