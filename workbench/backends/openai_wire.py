"""What an OpenAI-compatible server sends, checked before the backend reads it.

Servers differ and some misbehave: a proxy answers with an HTML page, a half-finished server
sends `{"choices": 5}` or `["x"]`, a stream carries a `data:` line that is not JSON. Every answer
is validated here (pydantic) into a few small typed records, so the backend reads only fields it
can trust, and anything else becomes a `WireError` that says in a few words what was wrong —
the backend puts the server's URL in front ("the server at URL sent a completion without
choices"), instead of an `unexpected TypeError` from deep inside it.

Fields the workbench does not read are allowed and ignored; the fields it reads must have the
type OpenAI's API gives them, with `null` accepted wherever real servers send it (vLLM's
`usage: null` in every streamed piece but the last, a first `delta` with only a role).

A choice's `logprobs` comes in two shapes: /chat/completions sends `content`, a list of
{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}; /completions sends parallel
lists `tokens`, `token_logprobs` and `top_logprobs` ([{token: logprob}]). `token_steps` reads
either into `TokenStep`s, whole or one streamed piece at a time; it is kept apart from the
answer's own validation so that log-probabilities the workbench cannot read cost only
themselves, never the answer.

The other way, `constraint_fields` writes a prompt's output constraint as the request fields
the main server families read (see its docstring), and `refused_fields` finds which of them an
error answer names, so the backend can send the request again without them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .. import json_text
from ..constraints import Constraint, ConstraintError

R = TypeVar("R", bound=BaseModel)


class WireError(ValueError):
    """What a server sent that the workbench cannot read, phrased to follow "the server sent"."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Usage(_Record):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class _Content(_Record):
    content: str | None = None  # null: a piece with only a role, or no text


class Choice(_Record):
    text: str | None = None  # /completions
    delta: _Content | None = None  # /chat/completions, streamed
    message: _Content | None = None  # /chat/completions, whole
    finish_reason: str | None = None
    stop_reason: int | str | None = None  # vLLM: the stop string, or the token id that ended it
    logprobs: Any = None  # read by `token_steps`, apart: see the module's docstring

    @property
    def content(self) -> str:
        """The text this choice carries, whichever endpoint sent it."""
        for part in (self.delta, self.message):
            if part is not None:
                return part.content or ""
        return self.text or ""


class Chunk(_Record):
    """One streamed piece (one SSE `data:` line)."""

    choices: list[Choice] = []
    usage: Usage | None = None
    error: Any = None


class Completion(_Record):
    """A whole, non-streamed answer."""

    choices: list[Choice]
    usage: Usage | None = None


@dataclass(frozen=True)
class TokenStep:
    """One generated token as a server reports it: its text, its natural log-probability (NaN
    when the server sent null) and its alternatives, best first."""

    text: str
    logprob: float
    top: tuple[tuple[str, float], ...]


class _TopLogprob(_Record):
    token: str
    logprob: float | None = None
    utf8: list[int] | None = Field(None, alias="bytes")

    @property
    def text(self) -> str:
        """The token's text from its bytes when the server gives them: OpenAI writes a token
        that is part of a character as `bytes:\\xe2\\x80`, which `bytes` shows as "\ufffd"."""
        if self.utf8 is not None and all(isinstance(b, int) and 0 <= b < 256 for b in self.utf8):
            return bytes(self.utf8).decode("utf-8", "replace")
        return self.token


class _TokenLogprob(_TopLogprob):
    top_logprobs: list[_TopLogprob] | None = None


class _ChatLogprobs(_Record):
    content: list[_TokenLogprob] | None = None


class _CompletionLogprobs(_Record):
    tokens: list[str] = []
    token_logprobs: list[float | None] = []
    top_logprobs: list[dict[str, float | None] | None] | None = None


def token_steps(raw: Any) -> list[TokenStep]:
    """The tokens a choice's `logprobs` reports, in either shape (nothing for null)."""
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise WireError(f"log-probabilities that are not a JSON object: {_show(raw)}")
    if "content" in raw or "tokens" not in raw:
        chat = _parse(_ChatLogprobs, raw, "log-probabilities")
        return [
            TokenStep(
                t.text,
                _value(t.logprob),
                _best_first((a.text, _value(a.logprob)) for a in t.top_logprobs or []),
            )
            for t in chat.content or []
        ]
    plain = _parse(_CompletionLogprobs, raw, "log-probabilities")
    if len(plain.token_logprobs) != len(plain.tokens) or (
        plain.top_logprobs is not None and len(plain.top_logprobs) != len(plain.tokens)
    ):
        raise WireError(
            f"log-probabilities for {len(plain.tokens)} tokens with lists of other lengths"
        )
    tops = plain.top_logprobs or [None] * len(plain.tokens)
    return [
        TokenStep(
            token,
            _value(value),
            _best_first((t, _value(v)) for t, v in (top or {}).items()),
        )
        for token, value, top in zip(plain.tokens, plain.token_logprobs, tops, strict=True)
    ]


def _value(logprob: float | None) -> float:
    return math.nan if logprob is None else float(logprob)


def _best_first(pairs: Any) -> tuple[tuple[str, float], ...]:
    """Alternatives most likely first (a /completions dict has no order to trust); NaN last."""
    return tuple(sorted(pairs, key=lambda p: -p[1] if not math.isnan(p[1]) else math.inf))


class ModelList(BaseModel):
    """/v1/models. Entries keep every field: the context window and the revision read several."""

    model_config = ConfigDict(extra="ignore")
    data: list[dict[str, Any]] = []


def parse_chunk(payload: str) -> Chunk:
    """A streamed piece from the text after `data:`."""
    return _parse(Chunk, _json(payload, "a streamed piece"), "a streamed piece")


def parse_completion(body: bytes) -> Completion:
    completion = _parse(Completion, _json(body, "a completion"), "a completion")
    if not completion.choices:
        raise WireError("a completion without choices")
    first = completion.choices[0]
    if first.text is None and first.message is None:
        raise WireError("a completion whose choice has neither text nor message")
    return completion


def parse_models(body: bytes) -> list[dict[str, Any]]:
    """The entries of a /v1/models answer, each with a text `id`.

    An object without `data` lists nothing (then a model must be named), as before."""
    models = _parse(ModelList, _json(body, "a model list"), "a model list")
    for entry in models.data:
        if not isinstance(entry.get("id"), str) or not entry["id"]:
            raise WireError(f"a model list with an entry without an id: {_show(entry)}")
    return models.data


def _json(raw: str | bytes, what: str) -> Any:
    try:
        return json_text.loads(raw)
    except (ValueError, UnicodeDecodeError):
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        raise WireError(f"{what} that is not JSON: {_show(text.strip())}") from None


def _parse(model: type[R], data: Any, what: str) -> R:
    if not isinstance(data, dict):
        raise WireError(f"{what} that is not a JSON object: {_show(data)}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise WireError(describe(exc, what)) from None


_PROBLEMS = {
    "list_type": "is not a list",
    "string_type": "is not text",
    "int_type": "is not a whole number",
    "int_parsing": "is not a whole number",
    "int_from_float": "is not a whole number",
    "model_type": "is not an object",
    "model_attributes_type": "is not an object",
    "dict_type": "is not an object",
}


def describe(exc: ValidationError, what: str) -> str:
    """The first problem pydantic found, in words: "a completion whose choices is not a list
    (got 5)", "a completion without choices"."""
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in error["loc"] if not str(part).startswith("function"))
    if error["type"] == "missing":
        return f"{what} without {where}"
    problem = _PROBLEMS.get(error["type"], str(error["msg"]).lower())
    got = json.dumps(error.get("input"), default=str)
    return f"{what} whose {where} {problem} (got {_show(got)})"


def _show(value: Any, limit: int = 120) -> str:
    """A short, one-line rendering of what the server sent."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- constraints, as requests carry them ---------------------------------------------------------

SCHEMA_NAME = "answer"  # OpenAI's json_schema form needs a name; servers only echo it
# Every field a constraint may be sent as; `response_format` has a second form (JSON_OBJECT).
CONSTRAINT_FIELDS = (
    "response_format",
    "json_schema",
    "structured_outputs",
    "guided_choice",
    "guided_regex",
    "grammar",
)
JSON_OBJECT = "response_format:json_object"  # llama-cpp-python's form of response_format


def constraint_fields(
    constraint: Constraint,
    *,
    chat: bool,
    refused: Collection[str] = (),
) -> dict[str, Any]:
    """The request fields that ask a server to decode under `constraint`, less `refused` ones.

    One request carries every form the main server families read, because each family ignores
    the others' fields (vLLM logs them, llama.cpp, llama-cpp-python and Ollama drop them) and
    nothing else tells which server this is:

    - json_schema: OpenAI's `response_format: {"type": "json_schema", "json_schema": {name,
      schema, strict}}`, which OpenAI, vLLM, llama.cpp's llama-server and Ollama read. A server
      that refuses it (llama-cpp-python: HTTP 500 naming `response_format`) is sent
      `{"type": "json_object", "schema": …}` instead (`JSON_OBJECT` in `refused`), which
      llama-cpp-python turns into a grammar. On /completions also llama.cpp's own `json_schema`.
    - choices: vLLM's `structured_outputs.choice` (v0.10.2 on) and `guided_choice` (before
      v0.12; newer ones ignore it, and it gives way to `structured_outputs` where both exist),
      and a GBNF `grammar` of the alternatives for llama.cpp and llama-cpp-python.
    - regex: vLLM's `structured_outputs.regex` and `guided_regex`. llama.cpp has no regular
      expressions, and no maintained regex-to-GBNF converter exists, so there the answer is
      checked after it comes.

    A strict server (OpenAI's) refuses fields it does not know with HTTP 400 naming them; the
    backend then sends the request again without them (`refused_fields`). Raises
    ConstraintError for a spec that is not what its kind says (a JSON list of text for choices,
    a JSON object for a schema): that cannot be sent at all."""
    fields: dict[str, Any] = {}
    if constraint.kind == "json_schema":
        schema = _spec(constraint, dict, "the JSON Schema is not a JSON object")
        if not chat:
            fields["json_schema"] = schema
        fields = {k: v for k, v in fields.items() if k not in refused}
        if "response_format" not in refused:
            fields["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": SCHEMA_NAME, "schema": schema, "strict": True},
            }
        elif JSON_OBJECT not in refused:
            fields["response_format"] = {"type": "json_object", "schema": schema}
        return fields
    if constraint.kind == "regex":
        fields["structured_outputs"] = {"regex": constraint.spec}
        fields["guided_regex"] = constraint.spec
    else:
        choices = _spec(constraint, list, "the choices are not a JSON list of text")
        fields["structured_outputs"] = {"choice": choices}
        fields["guided_choice"] = choices
        fields["grammar"] = gbnf_choices(choices)
    return {k: v for k, v in fields.items() if k not in refused}


def refused_fields(status: int, body: str, sent: Collection[str]) -> list[str]:
    """The constraint fields among `sent` that an error answer names: a field a server does
    not take. 400 and 422 are how servers refuse a field; llama-cpp-python answers a
    `response_format` it cannot read with 500 (its message names the field), which must not
    be retried as a server fault."""
    if status not in (400, 422, 500):
        return []
    return [field for field in sent if field in CONSTRAINT_FIELDS and field in body]


def gbnf_choices(choices: Sequence[str]) -> str:
    """A GBNF grammar (llama.cpp's) whose only sentences are the choices."""
    return "root ::= " + " | ".join(_gbnf_literal(c) for c in choices)


_GBNF_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _gbnf_literal(text: str) -> str:
    """A GBNF string literal: quotes, backslashes and control characters escaped, the rest
    as UTF-8 (which llama.cpp reads in literals)."""
    out = []
    for char in text:
        if char in _GBNF_ESCAPES:
            out.append(_GBNF_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _spec(constraint: Constraint, kind: type, problem: str) -> Any:
    """The constraint's spec read as JSON of type `kind`; ConstraintError saying `problem`."""
    value: Any
    try:
        value = json.loads(constraint.spec)
    except ValueError:
        value = None
    texts = isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)
    if not isinstance(value, kind) or (kind is list and not texts):
        raise ConstraintError(f"{constraint.source}: {problem}; it cannot be sent to a server")
    return value
