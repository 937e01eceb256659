"""A prompt's output constraint sent to OpenAI-compatible servers: the fields each kind is sent
as on each endpoint, servers that refuse some of them, and answers that ignore it (marked, and
stored as the output's error, never as valid).

Against the stub (tests/openai_stub.py), which never follows a constraint, and against
llama-cpp-python's real server on the default model (the `llama_url` fixture of conftest.py),
which decodes under the forms it reads: `response_format` json_object with a schema, `grammar`.
"""

from __future__ import annotations

import json
import time
from typing import Any

import jsonschema
import pytest
from openai_stub import StubBehaviour, stub_server
from servers import ALIAS
from test_remote_llama import wait_until_idle

from workbench.backends.base import Generation, ModelInput
from workbench.backends.openai_wire import CONSTRAINT_FIELDS, gbnf_choices
from workbench.backends.remote import RemoteBackend, ServerSpec, ignored_constraint
from workbench.config import OpenAISettings
from workbench.constraints import Constraint, ConstraintError, choices, json_schema, regex
from workbench.params import GenerationParams
from workbench.runner import Runner
from workbench.runs import run_outputs
from workbench.templates import Message, Rendered

SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
SCHEMA_C = json_schema(SCHEMA, "metadata.json_schema")
LABELS = ["Positive", 'Ne"g\\ative']
CHOICES_C = choices(LABELS, "metadata.choices")
PATTERN_C = regex("[0-9]{3}", "metadata.output_pattern")
GREEDY = GenerationParams(max_new_tokens=16)
RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True},
}
JSON_OBJECT = {"type": "json_object", "schema": SCHEMA}
CHOICE_FIELDS = {
    "structured_outputs": {"choice": LABELS},
    "guided_choice": LABELS,
    "grammar": 'root ::= "Positive" | "Ne\\"g\\\\ative"',
}
PATTERN_FIELDS = {"structured_outputs": {"regex": "[0-9]{3}"}, "guided_regex": "[0-9]{3}"}


def backend_for(url: str, **settings: Any) -> RemoteBackend:
    return RemoteBackend(
        ServerSpec(url, ""), OpenAISettings(base_url=url, **settings), backoff_s=0.01
    )


def model_input(backend: RemoteBackend, mode: str, text: str = "Answer, please.") -> ModelInput:
    return backend.model_input(Rendered("p", mode, (Message("user", text),), {}))  # type: ignore[arg-type]


def sent(request: dict[str, Any]) -> dict[str, Any]:
    """The constraint fields of a request body."""
    return {k: v for k, v in request.items() if k in CONSTRAINT_FIELDS}


def generate(backend: RemoteBackend, mi: ModelInput, params: GenerationParams) -> Generation:
    [g] = backend.generate([mi], params)
    assert g is not None
    return g


@pytest.fixture
def stub() -> Any:
    behaviour = StubBehaviour()
    with stub_server(behaviour) as url:
        yield behaviour, url


# --- what is sent ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["chat", "completion"])
@pytest.mark.parametrize(
    ("constraint", "chat_fields", "extra_for_text"),
    [
        (SCHEMA_C, {"response_format": RESPONSE_FORMAT}, {"json_schema": SCHEMA}),
        (CHOICES_C, CHOICE_FIELDS, {}),
        (PATTERN_C, PATTERN_FIELDS, {}),
        (None, {}, {}),
    ],
    ids=["json_schema", "choices", "regex", "none"],
)
def test_each_kind_is_sent_in_the_forms_servers_read(
    stub: tuple[StubBehaviour, str],
    mode: str,
    constraint: Constraint | None,
    chat_fields: dict[str, Any],
    extra_for_text: dict[str, Any],
) -> None:
    behaviour, url = stub
    backend = backend_for(url)
    assert backend.capabilities.constrained
    params = GREEDY.with_(constraint=constraint) if constraint is not None else GREEDY
    mi = model_input(backend, mode)
    generate(backend, mi, params)
    "".join(backend.stream(mi, params))
    behaviour.usage = False  # streams without usage: `generate` asks for whole answers
    generate(backend, mi, params)
    generate(backend, mi, params)
    expected = chat_fields | (extra_for_text if mode == "completion" else {})
    assert [sent(r) for r in behaviour.requests] == [expected] * 4
    assert [r["stream"] for r in behaviour.requests] == [True, True, True, False]


def test_choices_are_a_gbnf_alternation_with_escaped_literals() -> None:
    assert gbnf_choices(["a b", "tab\there", "line\nnew", "bell\x07", "é ✓"]) == (
        'root ::= "a b" | "tab\\there" | "line\\nnew" | "bell\\x07" | "é ✓"'
    )


def test_check_constraint_refuses_only_what_cannot_be_sent(
    stub: tuple[StubBehaviour, str],
) -> None:
    behaviour, url = stub
    backend = backend_for(url)
    for constraint in (SCHEMA_C, CHOICES_C, PATTERN_C):
        backend.check_constraint(constraint)
    with pytest.raises(
        ConstraintError,
        match=r"^metadata.choices: the choices are not a JSON list of text; it cannot be sent",
    ):
        backend.check_constraint(Constraint("choices", "Positive", "metadata.choices"))
    with pytest.raises(
        ConstraintError, match=r"^input schema: the JSON Schema is not a JSON object"
    ):
        backend.check_constraint(Constraint("json_schema", "[1]", "input schema"))
    assert not behaviour.requests  # nothing asked of the server


# --- servers that refuse a form -------------------------------------------------------------------


@pytest.mark.parametrize("how", ["streamed", "whole"])
def test_llama_cpp_python_gets_its_json_object_form_after_refusing_json_schema(
    stub: tuple[StubBehaviour, str], how: str
) -> None:
    """llama-cpp-python answers OpenAI's json_schema form with HTTP 500 naming response_format:
    asked again at once (not retried as a fault) in its own form, which is kept from then on."""
    behaviour, url = stub
    behaviour.json_object_only = True
    behaviour.answer = '{"ok": true}'
    backend = backend_for(url)
    if how == "whole":
        backend._streams_usage = False
    params = GREEDY.with_(constraint=SCHEMA_C)
    mi = model_input(backend, "chat")
    first, second = generate(backend, mi, params), generate(backend, mi, params)
    assert [r["response_format"] for r in behaviour.requests] == [
        RESPONSE_FORMAT,
        JSON_OBJECT,
        JSON_OBJECT,
    ]
    assert first.text == second.text == '{"ok": true}' and first.notice is None


@pytest.mark.parametrize("how", ["streamed", "whole"])
def test_a_strict_server_is_asked_again_without_the_fields_it_does_not_know(
    stub: tuple[StubBehaviour, str], how: str
) -> None:
    behaviour, url = stub
    behaviour.unknown_fields = {"structured_outputs", "guided_choice", "grammar"}
    backend = backend_for(url)
    if how == "whole":
        backend._streams_usage = False
    params = GREEDY.with_(constraint=CHOICES_C)
    mi = model_input(backend, "chat")
    first = generate(backend, mi, params)
    generate(backend, mi, params)
    assert [sent(r) for r in behaviour.requests] == [CHOICE_FIELDS, {}, {}]
    # sent free, so checked after: the stub's answer is not one of the choices
    assert first.notice == (
        f"the server at {url} did not follow the constraint (choices from metadata.choices): "
        "not one of the choices; such answers are stored with the reason as their error"
    )


# --- answers that ignore it -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("constraint", "answer", "reason"),
    [
        (SCHEMA_C, "Hello from the stub", "not JSON"),
        (SCHEMA_C, '{"ok": 3}', "not valid against the schema"),
        (SCHEMA_C, '{"ok": false}', None),
        (PATTERN_C, "Hello", "does not match the pattern"),
        (PATTERN_C, "123", None),
        (CHOICES_C, "Maybe", "not one of the choices"),
        (CHOICES_C, "Positive", None),
    ],
)
def test_an_answer_that_ignores_the_constraint_says_so(
    stub: tuple[StubBehaviour, str], constraint: Constraint, answer: str, reason: str | None
) -> None:
    behaviour, url = stub
    behaviour.answer = answer
    backend = backend_for(url)
    g = generate(backend, model_input(backend, "chat"), GREEDY.with_(constraint=constraint))
    label = f"({constraint.kind} from {constraint.source})"
    if reason is None:
        assert g.notice is None
        return
    assert g.notice == (
        f"the server at {url} did not follow the constraint {label}: {reason}; such answers are "
        "stored with the reason as their error"
    )
    stored = ignored_constraint(constraint, g.text, g.finish_reason)
    assert stored is not None
    assert stored.startswith(f"the server did not follow the constraint {label}: {reason}")


def test_only_a_finished_answer_is_judged() -> None:
    assert ignored_constraint(SCHEMA_C, '{"ok": tr', "length") is None  # says incomplete itself
    assert ignored_constraint(SCHEMA_C, '{"ok"', "cancelled") is None  # redone on resume
    assert ignored_constraint(PATTERN_C, "12", "stop") == (
        "an answer the server ended at a stop string does not follow the constraint (regex "
        "from metadata.output_pattern): does not match the pattern"
    )


def constrained_prompt(library: Any, prompt_text: Any) -> Any:
    text = prompt_text(
        "jsonish",
        "Reply with JSON about {{ text }}.",
        metadata={"technique": "zero-shot", "json_schema": SCHEMA},
    )
    return library.save(text).version


def test_the_runner_stores_an_ignored_constraint_as_the_outputs_error(
    stub: tuple[StubBehaviour, str], library: Any, prompt_text: Any
) -> None:
    behaviour, url = stub
    runner = Runner(library, backend_for(url))
    version = constrained_prompt(library, prompt_text)
    rows = [{"text": "a"}, {"text": "b"}]
    summary = runner.run([version], rows, overrides={"constrain": True})  # no longer refused
    assert [o.text for o in summary.outputs] == ["Hello from the stub"] * 2  # kept, as answered
    assert [o.error for o in summary.outputs] == [
        "the server did not follow the constraint (json_schema from metadata.json_schema): not JSON"
    ] * 2
    assert summary.notices == (
        f"the server at {url} did not follow the constraint "
        "(json_schema from metadata.json_schema): not JSON; such answers are stored with the "
        "reason as their error",
    )
    assert [o.error for o in run_outputs(runner.store, summary.run.id)] == [
        o.error for o in summary.outputs
    ]
    assert all(o.params["constraint"]["kind"] == "json_schema" for o in summary.outputs)
    # never answered from the cache: the next run asks the server again
    again = runner.run([version], rows)
    assert not any(o.cached for o in again.outputs) and len(behaviour.requests) == 4
    # a streamed answer is marked alike, and its note comes with it
    streamed = runner.stream(version, {"text": "c"})
    "".join(streamed)
    assert streamed.output is not None and (streamed.output.error or "").endswith("not JSON")
    assert streamed.notice is not None and "did not follow the constraint" in streamed.notice
    # an answer that follows it is valid, and cached as usual
    behaviour.answer = '{"ok": true}'
    valid = runner.run([version], [{"text": "d"}])
    assert valid.outputs[0].error is None and valid.notices == ()
    assert runner.run([version], [{"text": "d"}]).outputs[0].cached
    # free (--no-constrain): nothing sent, nothing judged
    free = runner.run([version], [{"text": "e"}], overrides={"constrain": False})
    assert free.outputs[0].error is None and not sent(behaviour.requests[-1])


# --- llama-cpp-python's real server ---------------------------------------------------------------


@pytest.fixture
def llama(llama_url: str) -> RemoteBackend:
    """Without log-probabilities (llama-cpp-python computes them in Python: slow), after the
    server has finished what earlier tests left it doing."""
    wait_until_idle(llama_url)
    settings = OpenAISettings(base_url=llama_url, context_window=2048, top_logprobs=0)
    return RemoteBackend(ServerSpec(llama_url, ALIAS), settings)


def test_llama_cpp_python_answers_schema_valid_json(llama: RemoteBackend) -> None:
    started = time.perf_counter()
    mi = model_input(llama, "chat", 'Is the sky blue? Reply with JSON like {"ok": true}.')
    g = generate(llama, mi, GenerationParams(max_new_tokens=24).with_(constraint=SCHEMA_C))
    assert g.finish_reason == "eos" and g.notice is None, (g.text, g.notice)
    jsonschema.validate(json.loads(g.text), SCHEMA)
    assert "response_format" in llama._refused_fields  # its own json_object form was used
    assert time.perf_counter() - started < 60


@pytest.mark.parametrize("mode", ["chat", "completion"])
def test_llama_cpp_python_answers_one_of_the_choices_under_its_grammar(
    llama: RemoteBackend, mode: str
) -> None:
    labels = ["Positive", "Negative"]
    constraint = choices(labels, "metadata.choices")
    text = "Review: I loved it, a wonderful film. Sentiment:"
    mi = model_input(llama, mode, text)
    g = generate(llama, mi, GenerationParams(max_new_tokens=8).with_(constraint=constraint))
    assert g.text in labels and g.finish_reason == "eos" and g.notice is None, g.text
    stream = llama.stream(mi, GenerationParams(max_new_tokens=8).with_(constraint=constraint))
    assert "".join(stream) in labels
    assert stream.result is not None and stream.result.notice is None
