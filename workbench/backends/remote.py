"""A model backend that speaks the OpenAI-compatible HTTP API (vLLM, TGI, llama.cpp, Ollama).

A model spec names it: `openai` (the server and model from WORKBENCH_OPENAI_BASE_URL and
WORKBENCH_OPENAI_MODEL), `openai:MODEL`, or `openai:MODEL@http://host:port/v1`. The backend's
name is that spec written out in full with the server's public URL (no key, no user name, no
query string), so every stored output says which backend, which server and which model made
it, `runs resume` finds the same server again, and a Compare column can name any server.

Chat-mode prompts go to `/chat/completions` as messages (the server applies its own chat
template); completion-mode prompts go to `/completions` as the raw text. Requests stream
(Server-Sent Events): that gives time to first token, lets a cancel or a stop string end a
request at once, and costs nothing over a plain response. Token counts come from the `usage`
field, asked for with `stream_options.include_usage`. A server whose streams end without it
(llama-cpp-python ignores the option) gets whole, non-streamed requests from `generate` once
that is seen, because those do carry `usage`; `stream` keeps streaming, and counts completion
tokens as streamed pieces (one token per piece on llama.cpp, vLLM and TGI) and prompt tokens as
`count_tokens` does.

Requests are retried with exponential backoff on 429, 5xx and dropped connections, honouring
Retry-After, but only before any text has arrived. A refused connection is not retried: nothing
listens there, and the one-line error says so at once. A process-wide semaphore per backend caps
the requests in flight, so two jobs sharing a server do not together exceed the limit.

Three limits bound every answer: WORKBENCH_OPENAI_TIMEOUT between two pieces (keep-alive
comments are not pieces), WORKBENCH_OPENAI_REQUEST_TIMEOUT for the whole answer, retries
included, and a short one for the optional probes (tokenize, /props), so a server that hangs
fails in about one timeout instead of one per probe. A cancel (the Cancel flag, Ctrl+C) closes
the connections of the requests in flight at once instead of waiting for their next piece: see
`_Flight`. What the server sends is validated (`openai_wire`) and anything malformed is one line
naming the server and what was wrong.

Every request asks for the log-probability of each generated token and its top
`top_k_logprobs` alternatives (/chat/completions: `logprobs: true, top_logprobs: k`;
/completions: `logprobs: k`), which llama.cpp, llama-cpp-python, vLLM and TGI give; they are
stored with the answer as `TokenLogprobs` named by token text (`after` = "server");
WORKBENCH_OPENAI_TOP_LOGPROBS sets k (default 5, as a local model records), and 0 asks for
none: llama-cpp-python computes them in Python, sorting the whole vocabulary for every token,
which makes its answers several times slower (see benchmarks/remote.py). A server
that refuses those fields (HTTP 400 or 422 naming them) is asked once more without them and never
again; one that answers without them, or with some the workbench cannot read, is not asked
again either. Either way it is logged once, `capabilities.logprobs` turns False, and every
later answer carries the same `notice`, which the runner reports once per run.

A prompt's declared output constraint (`params.constraint`) is sent with every request in the
forms the main server families read, all at once, since each ignores the others' fields
(`openai_wire.constraint_fields`): a JSON Schema as OpenAI's `response_format` json_schema
(OpenAI, vLLM, llama.cpp, Ollama; llama-cpp-python, which refuses that, gets its own
`json_object` form with the schema), choices as vLLM's `structured_outputs`/`guided_choice`
and a GBNF `grammar` (llama.cpp, llama-cpp-python), a pattern as vLLM's
`structured_outputs`/`guided_regex` only. A server that refuses one of these fields (a strict
OpenAI server: HTTP 400 naming it) is asked once more without it and never sent it again. So
`capabilities.constrained` is True and `check_constraint` refuses only a spec that cannot be
written into a request. Whether the server followed it is only known from the answer: each one
is checked (`ignored_constraint`); one that breaks it carries a `notice` saying so, reported
once per run, and the runner stores the reason as that output's error, so it never passes
for valid (nor answers a later run from the cache).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import queue
import random
import socket
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from ..config import OpenAISettings, Settings
from ..constraints import Constraint, violation
from ..logprobs import TokenLogprobs
from ..params import GenerationParams
from ..templates import Rendered
from .base import (
    REMOTE_PREFIX,
    Cancel,
    Capabilities,
    CapabilityError,
    FinishReason,
    Generation,
    LogLikelihood,
    ModelError,
    ModelInfo,
    ModelInput,
    Truncation,
    check_context,
    first_stop,
    is_remote_spec,
)
from .openai_wire import (
    JSON_OBJECT,
    Chunk,
    TokenStep,
    Usage,
    WireError,
    constraint_fields,
    parse_chunk,
    parse_completion,
    parse_models,
    refused_fields,
    token_steps,
)

log = logging.getLogger(__name__)

PREFIX = REMOTE_PREFIX
RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
MAX_BACKOFF_S = 30.0
CHARS_PER_TOKEN = 4  # for the labelled estimate when the server cannot tokenize
STABLE_MODEL_FIELDS = ("id", "root", "parent", "owned_by", "max_model_len", "meta")
MESSAGE_OVERHEAD_TOKENS = 4  # role markers a chat template adds around each message
# The optional probes (tokenize, detokenize, /props) answer at once on a live server; waiting
# the full WORKBENCH_OPENAI_TIMEOUT for each made a hanging server fail in four timeouts.
PROBE_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0
# After a cancel, how long `generate` waits for its threads to notice before it returns anyway
# (their sockets are shut, so they normally end within milliseconds).
CANCEL_GRACE_S = 2.0
WATCH_INTERVAL_S = 0.05  # how often a flight looks at its cancel flags and deadlines


@dataclass(frozen=True)
class ServerSpec:
    """Which server and which model; `model` empty means the server's only model."""

    base_url: str
    model: str

    @classmethod
    def parse(cls, spec: str, settings: OpenAISettings) -> ServerSpec:
        spec = spec.strip()
        if not is_remote_spec(spec):
            raise ModelError(f"{spec!r} is not an OpenAI-compatible server spec (openai:MODEL@URL)")
        rest = spec[len(PREFIX) + 1 :]
        model, url = rest, ""
        at = rest.rfind("@http")
        if at >= 0:
            model, url = rest[:at], rest[at + 1 :]
        return cls(_normalise_url(url or settings.base_url), model.strip() or settings.model)

    @property
    def public_url(self) -> str:
        return public_url(self.base_url)


def _normalise_url(url: str) -> str:
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ModelError(
            f"{url!r} is not a server URL: give one like http://127.0.0.1:8080/v1 "
            "(WORKBENCH_OPENAI_BASE_URL or openai:MODEL@URL)"
        )
    return url


def public_url(url: str) -> str:
    """The URL without what must not be stored: user name, password, query and fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def open_remote(spec: str, *, api_key: str | None = None) -> RemoteBackend:
    """The process-wide backend for a server spec: connected on first use, then reused.

    `api_key` (typed into the app) wins over WORKBENCH_OPENAI_API_KEY. A server that is down
    is not remembered, so the next call tries again.
    """
    settings = Settings.from_env().openai
    server = ServerSpec.parse(spec, settings)
    key = api_key if api_key else settings.api_key
    digest = hashlib.sha256(key.encode()).hexdigest()
    with _open_lock:
        backend = _open.get((server, digest, settings))
        if backend is None:
            backend = RemoteBackend(server, settings, api_key=key)
            # Under its full name too, as a stored run names it (`runs resume`).
            for name in (server, ServerSpec(server.base_url, backend.model)):
                _open[(name, digest, settings)] = backend
        return backend


_open: dict[tuple[ServerSpec, str, OpenAISettings], RemoteBackend] = {}
_open_lock = threading.Lock()


class RemoteBackend:
    """The Backend interface over HTTP; construction asks the server which models it serves.

    It can generate and nothing more that every server offers: token counts and cuts use the
    server's tokenize endpoint when it has one (llama.cpp's, llama-cpp-python's) and are
    labelled estimates otherwise, and a server's logits are out of reach. The log-probabilities
    of the tokens it generates are asked for and kept when the server gives them, and a
    declared output constraint is sent and its answers checked against it (see the module).
    """

    @property
    def capabilities(self) -> Capabilities:
        """`logprobs` until the server has refused them, answered without them or sent some
        that cannot be read: only its answers tell, and nobody else asks it. `constrained`
        always: a constraint is sent with the request, and an answer that does not follow it
        is marked, never taken for valid."""
        return Capabilities(logprobs=self._logprobs_state == "asking", constrained=True)

    @property
    def top_k_logprobs(self) -> int:
        """Alternatives asked for per generated token (WORKBENCH_OPENAI_TOP_LOGPROBS)."""
        return self.settings.top_logprobs

    @property
    def logprobs_notice(self) -> str | None:
        """Why this server's answers have no log-probabilities (None while they have)."""
        return self._logprobs_notice

    def __init__(
        self,
        server: ServerSpec,
        settings: OpenAISettings,
        *,
        api_key: str = "",
        transport: httpx.BaseTransport | None = None,
        backoff_s: float = 0.5,
    ):
        self.server, self.settings = server, settings
        self.max_concurrency = settings.max_concurrency
        self._backoff_s = backoff_s
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._transport = transport  # tests: a transport every client of this backend goes through
        # Made once: each generation call has a client (and pool) of its own (see _Flight), and
        # building an SSL context for each would cost ~20 ms.
        self._ssl = httpx.create_ssl_context()
        self._client = self._new_client(transport, settings.max_concurrency + 4)  # models, probes
        self._probe_timeout = httpx.Timeout(min(PROBE_TIMEOUT_S, settings.timeout_s))
        self._slots = threading.BoundedSemaphore(settings.max_concurrency)
        self._usage_in_stream = True  # until the server rejects stream_options
        # Whether streamed answers end with `usage` (None: not seen yet). llama-cpp-python's
        # do not; `generate` then asks for whole answers, which carry exact token counts.
        self._streams_usage: bool | None = None
        self._tokenizer: str | None = None  # "llama.cpp", "llama-cpp-python", "none"
        self._probes_timed_out = False
        # "asking" until the server refuses log-probabilities, omits them or sends them
        # unreadable; then they are no longer asked for and `_logprobs_notice` says why.
        # "off": WORKBENCH_OPENAI_TOP_LOGPROBS=0, nothing asked and nothing to say.
        self._logprobs_state = "asking" if settings.top_logprobs > 0 else "off"
        self._logprobs_notice: str | None = None
        self._logprobs_lock = threading.Lock()
        # Constraint fields (and JSON_OBJECT, the second form of response_format) this server
        # refused: never sent again.
        self._refused_fields: set[str] = set()
        self._constraint_lock = threading.Lock()
        model_id, window, revision = self._describe()
        self.model = model_id
        self.info = ModelInfo(
            name=f"{PREFIX}:{model_id}@{server.public_url}",
            path=server.public_url,
            revision=revision,
            dtype="server",
            context_window=window,
            chat_template_hash="server",
            backend=PREFIX,
        )

    def _new_client(
        self, transport: httpx.BaseTransport | None, max_connections: int
    ) -> httpx.Client:
        timeout = self.settings.timeout_s
        return httpx.Client(
            base_url=self.server.base_url,
            headers=self._headers,
            timeout=httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT_S, timeout)),
            limits=httpx.Limits(max_connections=max_connections),
            transport=transport,
            verify=self._ssl,
        )

    # --- the server -----------------------------------------------------------------------------
    def _describe(self) -> tuple[str, int, str]:
        """(model id, context window, revision) from /models.

        /models has the full WORKBENCH_OPENAI_TIMEOUT, not the probes' short one: it is not
        optional, and llama-cpp-python answers it only after the answer it is generating."""
        response = self._send(self._client, "GET", "/models")
        try:
            entries = parse_models(response.content)
        except WireError as exc:
            raise ModelError(
                f"the server at {self.server.public_url} sent {exc} from /models: is this an "
                "OpenAI-compatible server?"
            ) from None
        ids = [str(e["id"]) for e in entries]
        wanted = self.server.model
        if not wanted:
            if len(ids) != 1:
                raise ModelError(
                    f"{self.server.public_url} serves {len(ids)} models"
                    + (f" ({', '.join(ids)})" if ids else "")
                    + "; name one with openai:MODEL or WORKBENCH_OPENAI_MODEL"
                )
            wanted = ids[0]
        entry = next((e for e in entries if e.get("id") == wanted), None)
        if entry is None and ids:
            raise ModelError(
                f"{self.server.public_url} does not serve {wanted!r}; it serves: {', '.join(ids)}"
            )
        entry = entry or {}
        window = (
            _reported_window(entry) or self._llama_cpp_window(entry) or self.settings.context_window
        )
        # Only fields that describe the model: vLLM's `created` and `permission` change with
        # every request, and a revision that changes would defeat the cache and `resume`.
        meta = {k: entry[k] for k in STABLE_MODEL_FIELDS if k in entry}
        digest = hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode())
        revision = f"{str(entry.get('id', wanted))[:60]}#{digest.hexdigest()[:12]}"
        return wanted, window, revision

    def _llama_cpp_window(self, entry: Mapping[str, Any]) -> int | None:
        """llama.cpp's server lists the training context under `meta`; the context it was
        started with (--ctx-size, per slot) is in its /props."""
        if not isinstance(entry.get("meta"), dict):
            return None
        try:
            props = self._client.get(
                f"{_server_root(self.server.base_url)}/props", timeout=self._probe_timeout
            ).json()
            value = props.get("default_generation_settings", {}).get("n_ctx") or props.get("n_ctx")
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        return value if isinstance(value, int) and value > 0 else None

    def _send(
        self,
        client: httpx.Client,
        method: str,
        path: str,
        *,
        call: _Call | None = None,
        refuses: Callable[[httpx.Response], bool] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One non-streaming request with the same retries as generation.

        With a `call` (a whole answer) the request has its deadline and can be cancelled:
        `_Stopped` then says that nothing came back. An answer `refuses` recognises (a server
        refusing a field it does not know) is raised as `_Rejected` for the caller to retry."""
        for attempt in range(self.settings.max_retries + 1):
            if call is not None:
                call.begin()
                kwargs.update(timeout=call.timeout(), extensions=call.extensions)
            try:
                response = client.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if call is not None and call.stopped():
                    raise _Stopped from None
                if call is not None and call.out_of_time():
                    raise call.too_long(0) from None
                if attempt < self.settings.max_retries and _retryable(exc):
                    self._sleep(self._backoff(attempt, None), call)
                    continue
                raise self._unreachable(exc) from None
            # A refused field first: llama-cpp-python refuses a field with 500, not a fault.
            if response.status_code >= 400 and refuses is not None and refuses(response):
                raise _Rejected(response)
            if response.status_code in RETRY_STATUS and attempt < self.settings.max_retries:
                self._sleep(self._backoff(attempt, response), call)
                continue
            if response.status_code >= 400:
                raise self._refused(response)
            return response
        raise AssertionError("unreachable")

    def _unreachable(self, exc: Exception) -> ModelError:
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
            return ModelError(
                f"the server at {self.server.public_url} sent nothing for "
                f"{self.settings.timeout_s:g} s (WORKBENCH_OPENAI_TIMEOUT); raise it or "
                "lower WORKBENCH_OPENAI_MAX_CONCURRENCY"
            )
        return ModelError(
            f"no OpenAI-compatible server answers at {self.server.public_url} — start one (for "
            "example `python -m llama_cpp.server --model FILE.gguf --port 8080`) or point "
            f"WORKBENCH_OPENAI_BASE_URL at it ({type(exc).__name__}: {exc or 'no answer'})"
        )

    def _cut(self, pieces: int, exc: Exception | None) -> ModelError:
        """An answer that began and then stopped without its end."""
        why = f" ({type(exc).__name__}: {exc})" if exc is not None and str(exc) else ""
        hint = (
            ""
            if exc is not None
            else " (llama-cpp-python does this to a request when another one arrives, unless "
            "started with --interrupt_requests False)"
        )
        return ModelError(
            f"the server at {self.server.public_url} closed the connection in the middle of an "
            f"answer, after {pieces} piece{'s' if pieces != 1 else ''}{why}{hint}"
        )

    def _malformed(self, exc: WireError) -> ModelError:
        return ModelError(f"the server at {self.server.public_url} sent {exc}")

    def _refused(self, response: httpx.Response) -> ModelError:
        detail = _detail(response)
        hint = {
            401: " (check WORKBENCH_OPENAI_API_KEY)",
            403: " (check WORKBENCH_OPENAI_API_KEY)",
            404: " (is the base URL right? it usually ends in /v1)",
        }.get(response.status_code, "")
        return ModelError(
            f"the server at {self.server.public_url} refused the request: HTTP "
            f"{response.status_code}{hint}: {detail[:500]}"
        )

    def _backoff(self, attempt: int, response: httpx.Response | None) -> float:
        """Retry-After when the server gives one, else 0.5 s, 1 s, 2 s… with jitter."""
        if response is not None:
            after = response.headers.get("retry-after", "").strip()
            if after.replace(".", "", 1).isdigit():
                return min(float(after), MAX_BACKOFF_S)
        base = self._backoff_s * 2**attempt
        return float(min(base * (1 + 0.2 * random.random()), MAX_BACKOFF_S))

    @staticmethod
    def _sleep(seconds: float, call: _Call | None) -> None:
        """A backoff that a cancel cuts short."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if call is not None and call.stopped():
                return
            time.sleep(min(left, 0.1))

    def close(self) -> None:
        self._client.close()

    # --- log-probabilities ------------------------------------------------------------------------
    def _token_record(self, steps: list[TokenStep] | None, text: str) -> TokenLogprobs | None:
        """An answer's log-probabilities; an answer with text and none means the server does
        not give them (an empty answer tells nothing).

        A server that ends an answer at a stop string cuts the string from the text but may
        report its tokens (llama-cpp-python does): tokens past the end of the text are left out."""
        if steps:
            joined = "".join(s.text for s in steps)
            if len(joined) > len(text) and joined.startswith(text):
                steps = _steps_within(steps, len(text))
            return TokenLogprobs.from_texts(
                [s.text for s in steps],
                [s.logprob for s in steps],
                [s.top for s in steps],
                self.top_k_logprobs,
            )
        if steps is not None and text:
            self._stop_logprobs(
                "absent",
                f"the server at {self.server.public_url} answers without token "
                "log-probabilities (it ignores `logprobs`); its answers are stored without them",
            )
        return None

    def _logprobs_refused(self, response: httpx.Response) -> None:
        self._stop_logprobs(
            "refused",
            f"the server at {self.server.public_url} refused token log-probabilities "
            f"(HTTP {response.status_code}: {_detail(response)[:200]}); its answers are "
            "stored without them",
        )

    def _logprobs_unreadable(self, exc: WireError) -> None:
        self._stop_logprobs(
            "unreadable",
            f"the server at {self.server.public_url} sent {exc}; its answers are stored "
            "without token log-probabilities",
        )

    def _stop_logprobs(self, state: str, notice: str) -> None:
        """Stop asking, once: the first row to find out logs it, later rows carry the notice."""
        with self._logprobs_lock:
            if self._logprobs_state != "asking":
                return
            self._logprobs_state, self._logprobs_notice = state, notice
        log.warning("%s", notice)

    # --- constraints ----------------------------------------------------------------------------
    def _constraint_refused(self, response: httpx.Response, body: Mapping[str, Any]) -> bool:
        """Whether `response` refuses constraint fields `body` carried. They are then never
        sent to this server again (logged once each) and the caller sends the request again:
        the answer is checked against its constraint when it comes. `response.read()` must
        have been called."""
        named = refused_fields(response.status_code, response.text, list(body))
        if not named:
            return False
        markers = {
            JSON_OBJECT
            if field == "response_format" and body[field].get("type") == "json_object"
            else field
            for field in named
        }
        with self._constraint_lock:
            new = markers - self._refused_fields
            self._refused_fields |= markers
        why = f"HTTP {response.status_code}: {' '.join(_detail(response).split())[:200]}"
        for marker in sorted(new):
            if marker == "response_format":
                log.warning(
                    "the server at %s refused response_format json_schema (%s); it is sent "
                    '{"type": "json_object", "schema": …} instead, as llama-cpp-python reads it',
                    self.server.public_url,
                    why,
                )
            else:
                log.warning(
                    "the server at %s refused %s (%s); it is no longer sent there, and answers "
                    "are checked against their constraint when they come",
                    self.server.public_url,
                    "response_format json_object" if marker == JSON_OBJECT else marker,
                    why,
                )
        return True

    def _constraint_body(self, constraint: Constraint, chat: bool) -> dict[str, Any]:
        with self._constraint_lock:
            refused = frozenset(self._refused_fields)
        return constraint_fields(constraint, chat=chat, refused=refused)

    def _judged(
        self, params: GenerationParams, text: str, reason: FinishReason
    ) -> tuple[str | None, str | None]:
        """The answer's notice (what to say once per run: that the server gives no
        log-probabilities, that it did not follow the constraint) and its error (why it does
        not follow the constraint), from one check of the answer."""
        notes = [self._logprobs_notice]
        constraint = params.constraint
        why = _unfollowed(constraint, text, reason) if constraint is not None else None
        error = None
        if constraint is not None and why is not None:
            short = why.split(":")[0].split(" at ")[0]  # the same words for every such answer
            notes.append(
                f"{_what_broke(constraint, reason, self.server.public_url)}: {short}; such "
                "answers are stored with the reason as their error"
            )
            error = _broken(constraint, reason, why)
        return "; ".join(n for n in notes if n) or None, error

    # --- inputs ---------------------------------------------------------------------------------
    def model_input(self, rendered: Rendered) -> ModelInput:
        if rendered.mode == "completion":
            return ModelInput(rendered.text, add_special_tokens=True)
        messages = tuple((m.role, m.content) for m in rendered.messages)
        text = json.dumps([{"role": r, "content": c} for r, c in messages], ensure_ascii=False)
        return ModelInput(text, add_special_tokens=False, messages=messages)

    def count_is_estimate(self, model_input: ModelInput) -> bool:
        """Whether `count_tokens` is exact: only raw text on a server that tokenizes is.

        A chat prompt's count adds an allowance per message for a template only the server
        knows; the exact number arrives with the answer (usage.prompt_tokens)."""
        return model_input.messages is not None or self._tokenizer_kind() == "none"

    def count_tokens(self, model_input: ModelInput) -> int:
        if model_input.messages is None:
            return self._count_text(model_input.text)
        return 3 + sum(
            MESSAGE_OVERHEAD_TOKENS + self._count_text(f"{role}\n{content}")
            for role, content in model_input.messages
        )

    def _count_text(self, text: str) -> int:
        kind = self._tokenizer_kind()
        if kind != "none":
            tokens = self._tokenize(kind, text)
            if tokens is not None:
                return tokens
        return math.ceil(len(text) / CHARS_PER_TOKEN)

    def _tokenize(self, kind: str, text: str) -> int | None:
        ids = self._token_ids(kind, text)
        return None if ids is None else len(ids)

    def _probe(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """POST to an optional endpoint outside /v1 (tokenize, detokenize); None if it cannot
        help. It has the probes' short limit, and a server that lets one run out is not asked
        again: its token counts are estimates from then on, instead of each row of a pre-run
        check waiting for it."""
        try:
            response = self._client.post(
                f"{_server_root(self.server.base_url)}{path}",
                json=body,
                timeout=self._probe_timeout,
            )
            data = response.json() if response.status_code == 200 else None
        except httpx.TimeoutException:
            self._tokenizer, self._probes_timed_out = "none", True
            return None
        except (httpx.HTTPError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _token_ids(self, kind: str, text: str) -> list[int] | None:
        if kind == "llama.cpp":
            data = self._probe("/tokenize", {"content": text})
        else:
            data = self._probe("/extras/tokenize", {"input": text, "model": self.model})
        tokens = data.get("tokens") if data is not None else None
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            return None
        return tokens

    def _detokenize(self, kind: str, ids: list[int]) -> str | None:
        if kind == "llama.cpp":
            data, field = self._probe("/detokenize", {"tokens": ids}), "content"
        else:
            data = self._probe("/extras/detokenize", {"tokens": ids, "model": self.model})
            field = "text"
        text = data.get(field) if data is not None else None
        return text if isinstance(text, str) else None

    def truncate_to_tokens(self, text: str, tokens: int) -> Truncation:
        """Exact with the server's tokenize and detokenize endpoints; otherwise the first
        `tokens` × 4 characters, an estimate that says so.

        The server's tokens may begin with its BOS token, and a cut can end inside a character
        made of several tokens: a cut that is not the start of `text` falls back to the
        estimate, so the text kept is always the text's own beginning."""
        kind = self._tokenizer_kind()
        ids = self._token_ids(kind, text) if kind != "none" else None
        if ids is not None:
            if len(ids) <= tokens:
                return Truncation(text, exact=True)
            for skip in (0, 1):  # 1: the first id is a BOS the tokenize endpoint added
                start = self._detokenize(kind, ids[skip : skip + max(tokens, 0)])
                if start and text.startswith(start):
                    return Truncation(start, exact=True)
        if len(text) <= tokens * CHARS_PER_TOKEN:
            return Truncation(text, exact=False)
        return Truncation(text[: max(tokens, 0) * CHARS_PER_TOKEN], exact=False)

    def token_pieces(self, ids: Sequence[int], *, in_sequence: bool = True) -> list[str]:
        raise CapabilityError(
            f"{self.info.name} is a server: its token ids cannot be decoded here (its token "
            "log-probabilities carry their own texts)"
        )

    def score_choices(self, inputs: Any, choices: Any, **kwargs: Any) -> Any:
        raise CapabilityError(
            f"{self.info.name} is a server, and it gives no log-probabilities for choices: "
            "scoring answer choices needs a local model (or run without --choices)"
        )

    def check_constraint(self, constraint: Constraint) -> None:
        """Refuse only a constraint that cannot be written into a request (ConstraintError).

        Nothing is asked of the server: which forms it reads shows in its first answer, and
        whether it followed them in every answer (see the module)."""
        constraint_fields(constraint, chat=True)

    def log_likelihood(self, text: str) -> LogLikelihood:
        raise CapabilityError(
            f"{self.info.name} is a server, and servers do not give the log-probabilities of "
            "a whole text; scoring a text needs a local model"
        )

    def _tokenizer_kind(self) -> str:
        """Find once which tokenize endpoint the server has: llama.cpp's, llama-cpp-python's,
        or none (vLLM's /tokenize takes other fields; others have none)."""
        if self._tokenizer is None:
            for candidate in ("llama.cpp", "llama-cpp-python"):
                if self._tokenize(candidate, "hello") is not None:
                    self._tokenizer = candidate
                    break
                if self._probes_timed_out:  # the server hangs: do not wait for a second probe
                    break
            self._tokenizer = self._tokenizer or "none"
        return self._tokenizer

    def check_fits(self, prompt_tokens: int, params: GenerationParams) -> None:
        check_context(self.info, prompt_tokens, params, estimate=True)

    def token_ids(self, text: str) -> list[int]:
        raise CapabilityError(f"{self.info.name} is a server: it does not tokenize for us")

    def generate_forced(
        self,
        model_input: ModelInput,
        forced: Sequence[int],
        params: GenerationParams,
        *,
        seed: int,
        cancel: Cancel | None = None,
    ) -> Generation:
        raise CapabilityError(
            f"{self.info.name} is a server: an answer cannot be continued from a chosen token "
            "there; that needs a local model"
        )

    # --- generation -----------------------------------------------------------------------------
    def generate(
        self,
        inputs: Sequence[ModelInput],
        params: GenerationParams,
        *,
        seeds: Sequence[int] | None = None,
        batch_size: int | None = None,
        on_batch: Callable[[list[tuple[int, Generation]]], None] | None = None,
        cancel: Cancel | None = None,
        rows_as_they_finish: bool = False,
    ) -> list[Generation | None]:
        """One request per row, at most `max_concurrency` in flight (`batch_size` lowers it).

        `on_batch` hears of each row as it finishes, called from this thread, so callers store
        rows exactly as with the local backend. A cancel closes the requests in flight at once
        (their rows come back "cancelled" with the text received so far); rows not started stay
        None. If a row fails, the others are stopped the same way and the error is raised.

        The rows run on daemon threads, not a ThreadPoolExecutor: an interrupt (Ctrl+C) in this
        thread shuts every connection down and re-raises after at most CANCEL_GRACE_S, and a
        thread that still hangs (a connect, a name lookup) cannot keep the process from ending
        as the executor's exit hook would. A second Ctrl+C ends that short wait too.
        """
        params.validate(self.info.context_window)
        results: list[Generation | None] = [None] * len(inputs)
        if not inputs:
            return results
        workers = min(self.max_concurrency, batch_size or self.max_concurrency, len(inputs))
        abort = Cancel()  # ours: a row failed or this thread was interrupted, stop the rest
        flight = _Flight(self, [abort] + ([cancel] if cancel is not None else []), workers)
        todo = iter(range(len(inputs)))
        todo_lock = threading.Lock()
        finished: queue.SimpleQueue[tuple[int, Generation | None, BaseException | None]]
        finished = queue.SimpleQueue()

        def work() -> None:
            while True:
                with todo_lock:
                    i = next(todo, None)
                if i is None:
                    return
                if flight.stopped():
                    finished.put((i, None, None))
                    continue
                seed = seeds[i] if seeds is not None else params.seed
                try:
                    if self._streams_usage is False:
                        generation = self._whole(flight, inputs[i], params, seed, workers)
                    else:
                        generation = _drain(self._events(flight, inputs[i], params, seed, workers))
                except BaseException as exc:  # handed to the calling thread
                    abort.set()
                    finished.put((i, None, exc))
                else:
                    finished.put((i, generation, None))

        threads = [
            threading.Thread(target=work, name="workbench-remote", daemon=True)
            for _ in range(workers)
        ]
        for thread in threads:
            thread.start()
        try:
            left, give_up = len(inputs), math.inf
            while left and time.monotonic() < give_up:
                if give_up == math.inf and flight.stopped():
                    give_up = time.monotonic() + CANCEL_GRACE_S
                try:
                    i, generation, error = finished.get(timeout=0.2)
                except queue.Empty:
                    continue
                left -= 1
                if error is not None:
                    raise error
                if generation is not None:
                    results[i] = generation
                    if on_batch is not None:
                        on_batch([(i, generation)])
        except BaseException:
            abort.set()
            flight.abort()
            end = time.monotonic() + CANCEL_GRACE_S
            for thread in threads:  # a moment to end cleanly; a second Ctrl+C ends it at once
                thread.join(max(0.0, end - time.monotonic()))
            raise
        finally:
            flight.close()
        return results

    def stream(
        self, model_input: ModelInput, params: GenerationParams, cancel: Cancel | None = None
    ) -> RemoteTokenStream:
        params.validate(self.info.context_window)
        return RemoteTokenStream(self, model_input, params, cancel)

    def _whole(
        self,
        flight: _Flight,
        model_input: ModelInput,
        params: GenerationParams,
        seed: int,
        concurrency: int,
    ) -> Generation | None:
        """One answer without streaming: for servers whose streams carry no token counts.
        None when a cancel closed it before it came back."""
        started = time.perf_counter()
        with flight.call() as call:
            while True:
                path, body = self._request(model_input, params, seed, stream=False)
                asked = "logprobs" in body
                try:
                    with self._slot(call):
                        response = self._send(
                            flight.client,
                            "POST",
                            path,
                            call=call,
                            refuses=_refusal(body, asked),
                            json=body,
                        )
                except _Stopped:
                    return None
                except _Rejected as rejected:
                    if not self._constraint_refused(rejected.response, body):
                        self._logprobs_refused(rejected.response)
                    continue
                break
        latency = time.perf_counter() - started
        try:
            completion = parse_completion(response.content)
        except WireError as exc:
            raise self._malformed(exc) from None
        choice = completion.choices[0]
        text = choice.content
        steps: list[TokenStep] | None = []
        if asked:
            try:
                steps = token_steps(choice.logprobs)
            except WireError as exc:
                self._logprobs_unreadable(exc)
                steps = None
        cut = first_stop(text, params.stop)
        if cut is not None:
            text = text[:cut]
            steps = _steps_within(steps, cut) if steps is not None else None
        record = self._token_record(steps, text) if asked else None
        usage = completion.usage or Usage()
        reason = _finish_reason(
            choice.finish_reason, choice.stop_reason, params, cut is not None, False
        )
        notice, error = self._judged(params, text, reason)
        return Generation(
            text,
            reason,
            usage.prompt_tokens
            if usage.prompt_tokens is not None
            else self.count_tokens(model_input),
            usage.completion_tokens or 0,
            latency,
            None,
            concurrency,
            logprobs=record,
            notice=notice,
            error=error,
        )

    @contextmanager
    def _slot(self, call: _Call) -> Iterator[None]:
        """One of the process-wide request slots; waiting for it ends with a cancel
        (`_Stopped`), since another job may hold them all for minutes."""
        while not self._slots.acquire(timeout=0.1):
            if call.stopped():
                raise _Stopped
        try:
            yield
        finally:
            self._slots.release()

    def _request(
        self, model_input: ModelInput, params: GenerationParams, seed: int, stream: bool = True
    ) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"model": self.model, "max_tokens": params.max_new_tokens}
        asking = self._logprobs_state == "asking"
        if model_input.messages is not None:
            path = "/chat/completions"
            body["messages"] = [{"role": r, "content": c} for r, c in model_input.messages]
            if asking:
                body.update(logprobs=True, top_logprobs=self.top_k_logprobs)
        else:
            path = "/completions"
            body["prompt"] = model_input.text
            if asking:
                body["logprobs"] = self.top_k_logprobs
        if params.sampling:
            body.update(temperature=params.temperature, top_p=params.top_p, seed=seed)
            if params.top_k:
                body["top_k"] = params.top_k  # vLLM, llama.cpp, Ollama and TGI accept it
        else:
            body.update(temperature=0.0, top_p=1.0, seed=seed)
        if params.repetition_penalty != 1.0:
            # vLLM and TGI call it repetition_penalty, llama.cpp repeat_penalty.
            body["repetition_penalty"] = params.repetition_penalty
            body["repeat_penalty"] = params.repetition_penalty
        # OpenAI's own fields, sent only when set so other requests stay as they were.
        if params.frequency_penalty != 0:
            body["frequency_penalty"] = params.frequency_penalty
        if params.presence_penalty != 0:
            body["presence_penalty"] = params.presence_penalty
        if params.stop:
            body["stop"] = list(params.stop)
        if params.constraint is not None:
            body.update(self._constraint_body(params.constraint, model_input.messages is not None))
        body["stream"] = stream
        if stream and self._usage_in_stream:
            body["stream_options"] = {"include_usage": True}
        return path, body

    def _events(
        self,
        flight: _Flight,
        model_input: ModelInput,
        params: GenerationParams,
        seed: int,
        concurrency: int,
    ) -> Generator[str, None, Generation]:
        """Yield text pieces of one answer; return its Generation.

        Text that could be the start of a stop string is held back until it is clear it is not
        one (servers cut stop strings themselves; this also covers those that do not). A cancel
        returns what arrived so far as "cancelled"; a deadline, a malformed answer or a
        connection cut after text arrived is an error (only an answer with no text yet is
        retried).
        """
        started = time.perf_counter()
        attempt = 0
        with flight.call() as call:
            while True:
                path, body = self._request(model_input, params, seed)
                asked = "logprobs" in body
                steps: list[TokenStep] | None = []  # None: unreadable, not kept
                pieces: list[str] = []  # received text, for the stop check
                emitted = 0  # characters of "".join(pieces) already yielded
                ttft: float | None = None
                usage: Usage | None = None
                raw_reason: str | None = None
                stop_reason: int | str | None = None
                client_stop = cancelled = answering = False
                chunks = 0
                try:
                    with self._slot(call):
                        call.begin()
                        with flight.client.stream(
                            "POST",
                            path,
                            json=body,
                            timeout=call.timeout(),
                            extensions=call.extensions,
                        ) as response:
                            call.attach(response)
                            if response.status_code >= 400:
                                response.read()
                                if self._constraint_refused(response, body):
                                    continue
                                if self._usage_in_stream and _rejects_stream_options(response):
                                    self._usage_in_stream = False
                                    continue
                                if asked and _rejects_logprobs(response):
                                    self._logprobs_refused(response)
                                    continue
                                if response.status_code in RETRY_STATUS and attempt < (
                                    self.settings.max_retries
                                ):
                                    wait_s = self._backoff(attempt, response)
                                    attempt += 1
                                    self._sleep(wait_s, call)
                                    continue
                                raise self._refused(response)
                            answering = True
                            for chunk in self._chunks(response):
                                if flight.stopped():
                                    cancelled = True
                                    break
                                if chunk.error:
                                    raise ModelError(
                                        f"the server at {self.server.public_url} failed while "
                                        f"answering: {_message(chunk.error)}"
                                    )
                                if chunk.usage is not None:
                                    usage = chunk.usage
                                for choice in chunk.choices or []:
                                    if asked and steps is not None:
                                        try:
                                            steps += token_steps(choice.logprobs)
                                        except WireError as exc:
                                            self._logprobs_unreadable(exc)
                                            steps = None
                                    piece = choice.content
                                    if piece:
                                        chunks += 1
                                        if ttft is None:
                                            ttft = time.perf_counter() - started
                                        pieces.append(piece)
                                    raw_reason = choice.finish_reason or raw_reason
                                    if "stop_reason" in choice.model_fields_set:
                                        stop_reason = choice.stop_reason
                                text = "".join(pieces)
                                cut = first_stop(text, params.stop)
                                if cut is not None:
                                    pieces, client_stop = [text[:cut]], True
                                    if steps is not None:
                                        steps = _steps_within(steps, cut)
                                safe = (
                                    len(pieces[0]) if client_stop else _safe_end(text, params.stop)
                                )
                                if safe > emitted:
                                    yield "".join(pieces)[emitted:safe]
                                    emitted = safe
                                if client_stop:
                                    break
                except _Stopped:
                    cancelled = True
                except httpx.TransportError as exc:
                    if flight.stopped():
                        cancelled = True  # our own abort closed the connection
                    elif call.out_of_time():
                        raise call.too_long(chunks) from None
                    elif chunks == 0 and attempt < self.settings.max_retries and _retryable(exc):
                        wait_s = self._backoff(attempt, None)
                        attempt += 1
                        self._sleep(wait_s, call)
                        continue
                    elif answering and not isinstance(exc, httpx.TimeoutException):
                        raise self._cut(chunks, exc) from None
                    else:
                        raise self._unreachable(exc) from None
                if raw_reason is None and not (cancelled or client_stop):
                    if flight.stopped():  # our abort ended a body that ends at the close
                        cancelled = True
                    elif call.out_of_time():
                        raise call.too_long(chunks)
                    else:
                        raise self._cut(chunks, None)
                break
        text = "".join(pieces)
        if len(text) > emitted and not cancelled:
            yield text[emitted:]
        reason = _finish_reason(raw_reason, stop_reason, params, client_stop, cancelled)
        counted = usage or Usage()
        if not (cancelled or client_stop):
            self._streams_usage = (
                counted.prompt_tokens is not None or counted.completion_tokens is not None
            )
        prompt_tokens = counted.prompt_tokens
        if prompt_tokens is None:
            prompt_tokens = self.count_tokens(model_input)
        completion_tokens = counted.completion_tokens
        if completion_tokens is None:
            completion_tokens = chunks
        latency = time.perf_counter() - started
        record = self._token_record(steps, text) if asked else None
        notice, error = self._judged(params, text, reason)
        return Generation(
            text,
            reason,
            prompt_tokens,
            completion_tokens,
            latency,
            ttft,
            concurrency,
            logprobs=record,
            notice=notice,
            error=error,
        )

    def _chunks(self, response: httpx.Response) -> Iterator[Chunk]:
        """The validated pieces of a streamed answer (SSE `data:` lines), until `[DONE]`.

        Comments (`: ping`) and other SSE fields carry nothing: a server that sends only those
        for WORKBENCH_OPENAI_TIMEOUT has stopped answering, though its connection is alive.
        Lines that are not SSE are skipped as the SSE rules say, but a stream that ends without
        a single `data:` line is reported with its first line (an HTML error page, say)."""
        gap = self.settings.timeout_s
        last = time.monotonic()
        first: str | None = None
        for line in response.iter_lines():
            now = time.monotonic()
            if not line.startswith("data:"):
                if first is None and line.strip() and not line.startswith(":"):
                    first = line
                if now - last > gap:
                    raise ModelError(
                        f"the server at {self.server.public_url} sent only keep-alive comments "
                        f"for {gap:g} s, no answer (WORKBENCH_OPENAI_TIMEOUT)"
                    )
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                return
            if not payload:
                continue
            last = now
            first = ""
            try:
                yield parse_chunk(payload)
            except WireError as exc:
                raise self._malformed(exc) from None
        if first:
            raise self._malformed(WireError(f"a stream without any data; it began: {first[:120]}"))


class RemoteTokenStream:
    """Iterate to receive text as it arrives; `.result` holds the Generation afterwards."""

    def __init__(
        self,
        backend: RemoteBackend,
        model_input: ModelInput,
        params: GenerationParams,
        cancel: Cancel | None,
    ):
        self.backend, self.model_input, self.params = backend, model_input, params
        self._stop = Cancel()
        self._cancels = [self._stop] + ([cancel] if cancel else [])
        self.result: Generation | None = None

    def cancel(self) -> None:
        """Stop the answer; its connection closes at once, even between two pieces."""
        self._stop.set()

    @property
    def cancelled(self) -> bool:
        return any(c.is_set() for c in self._cancels)

    def __iter__(self) -> Iterator[str]:
        flight = _Flight(self.backend, self._cancels, 1)
        events = self.backend._events(flight, self.model_input, self.params, self.params.seed, 1)
        try:
            while True:
                yield next(events)
        except StopIteration as done:
            self.result = done.value
        finally:
            events.close()  # the reader left early: the request's connection closes
            flight.close()


class _Stopped(Exception):
    """A cancel came before anything was sent, or closed a whole answer before it came back."""


class _Rejected(Exception):
    """A server refused a request for a field it does not take; the caller retries without."""

    def __init__(self, response: httpx.Response):
        super().__init__(response.status_code)
        self.response = response


_CONNECTED = frozenset({"connection.connect_tcp.complete", "connection.start_tls.complete"})


class _Flight:
    """The requests of one `generate` call or one stream, on a connection pool of their own.

    A cancel must end requests in flight at once, not at their next piece: a server busy with
    other work may send nothing for minutes. Closing an httpx response from another thread
    does not wake a thread blocked reading its socket; shutting the socket down does. So every
    connection this pool opens is recorded as it opens (httpcore reports it through the
    request's `trace` extension), which reaches a request still waiting for its first byte on
    a reused connection too, and `abort` shuts them all down. A pool per call keeps that from
    touching another job's requests on the same server (connections are still reused between
    the rows of one call).

    A watcher thread turns the cancel flags and each row's deadline into such shutdowns.
    """

    def __init__(self, backend: RemoteBackend, stops: Sequence[Cancel], workers: int):
        self.backend, self._stops = backend, list(stops)
        transport = _Borrowed(backend._transport) if backend._transport is not None else None
        self.client = backend._new_client(transport, workers + 2)
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._calls: set[_Call] = set()
        self._aborted = False
        self._done = threading.Event()
        threading.Thread(target=self._watch, name="workbench-remote-watch", daemon=True).start()

    def stopped(self) -> bool:
        return self._aborted or any(c.is_set() for c in self._stops)

    @contextmanager
    def call(self) -> Iterator[_Call]:
        call = _Call(self)
        with self._lock:
            self._calls.add(call)
        try:
            yield call
        finally:
            with self._lock:
                self._calls.discard(call)

    def adopt(self, sock: socket.socket, call: _Call) -> None:
        """A connection `call` uses: shut at once if it is already too late for it."""
        with self._lock:
            if sock not in self._sockets:
                self._sockets.append(sock)
            call.sockets.append(sock)
            late = self._aborted or call.expired
        if late:
            _shut(sock)

    def abort(self) -> None:
        with self._lock:
            self._aborted = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)

    def _watch(self) -> None:
        while not self._done.wait(WATCH_INTERVAL_S):
            if not self._aborted and self.stopped():
                self.abort()
            now = time.monotonic()
            with self._lock:
                late = [c for c in self._calls if not c.expired and c.out_of_time(now)]
            for call in late:
                call.expire()

    def close(self) -> None:
        self._done.set()
        self.client.close()


class _Call:
    """One row's requests in a flight (its first try and its retries): their deadline and the
    connections they used, so the watcher can shut them when the deadline passes."""

    def __init__(self, flight: _Flight):
        self.flight = flight
        self.settings = flight.backend.settings
        self.deadline: float | None = None  # set when the first request goes out
        self.sockets: list[socket.socket] = []
        self.expired = False
        self.extensions = {"trace": self._trace}

    def stopped(self) -> bool:
        return self.flight.stopped()

    def begin(self) -> None:
        """A request is about to go out: start the clock, or refuse if time is up."""
        limit = self.settings.request_timeout_s
        if self.deadline is None and limit > 0:
            self.deadline = time.monotonic() + limit
        if self.out_of_time():
            raise self.too_long(0)

    def timeout(self) -> httpx.Timeout:
        """The gap limit, or what is left of the deadline if that is less."""
        gap = self.settings.timeout_s
        if self.deadline is not None:
            gap = max(0.001, min(gap, self.deadline - time.monotonic()))
        return httpx.Timeout(gap, connect=min(CONNECT_TIMEOUT_S, gap))

    def out_of_time(self, now: float | None = None) -> bool:
        if self.expired:
            return True
        return self.deadline is not None and (now or time.monotonic()) >= self.deadline

    def too_long(self, pieces: int) -> ModelError:
        server = self.flight.backend.server.public_url
        return ModelError(
            f"the server at {server} did not finish an answer within "
            f"{self.settings.request_timeout_s:g} s (WORKBENCH_OPENAI_REQUEST_TIMEOUT; "
            f"{pieces} piece{'s' if pieces != 1 else ''} had arrived)"
        )

    def expire(self) -> None:
        with self.flight._lock:
            self.expired = True
            sockets = list(self.sockets)
        for sock in sockets:
            _shut(sock)

    def attach(self, response: httpx.Response) -> None:
        """The connection a response came on (a reused one reports no `connect_tcp`)."""
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            self.flight.adopt(sock, self)

    def _trace(self, name: str, info: Mapping[str, Any]) -> None:
        if name in _CONNECTED:
            sock = info["return_value"].get_extra_info("socket")
            if isinstance(sock, socket.socket):
                self.flight.adopt(sock, self)


class _Borrowed(httpx.BaseTransport):
    """A transport handed in by a test, lent to each flight's client and closed by its owner."""

    def __init__(self, transport: httpx.BaseTransport):
        self.transport = transport

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.transport.handle_request(request)

    def close(self) -> None:
        pass


def _shut(sock: socket.socket) -> None:
    """Wake whoever reads this socket, now: shutdown, not close, which would leave a blocked
    read waiting. The base class's method, because an SSL socket's own would also drop its
    TLS state under the reading thread."""
    with suppress(OSError):  # already closed, or never connected
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


# --- helpers ------------------------------------------------------------------------------------


def _drain(events: Generator[str, None, Generation]) -> Generation:
    try:
        while True:
            next(events)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def _safe_end(text: str, stops: Sequence[str]) -> int:
    """How much of `text` can be shown: all but a tail that could begin a stop string."""
    hold = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:k]):
                hold = max(hold, k)
                break
    return len(text) - hold


def _finish_reason(
    raw: str | None, stop_reason: Any, params: GenerationParams, client_stop: bool, cancelled: bool
) -> FinishReason:
    """Our finish reason from the server's.

    OpenAI's "stop" covers both an end-of-sequence token and a stop string. vLLM tells them
    apart (`stop_reason`: the string, or a token id); other servers do not, and then "stop" is
    reported when the request had stop strings and "eos" when it had none.
    """
    if client_stop:
        return "stop"
    if cancelled:
        return "cancelled"
    if raw == "length":
        return "length"
    if isinstance(stop_reason, str) and stop_reason:
        return "stop"
    if isinstance(stop_reason, int):
        return "eos"
    return "stop" if params.stop else "eos"


def _retryable(exc: httpx.TransportError) -> bool:
    """Connections reset or dropped, and timeouts while connecting: worth another try.

    A refused connection (nothing listens on the port) or a host name that does not resolve
    is not: another try a second later finds the same, so it fails at once."""
    if isinstance(exc, httpx.ConnectError) and _nobody_there(exc):
        return False
    return isinstance(
        exc,
        (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadError, httpx.RemoteProtocolError),
    )


def _nobody_there(exc: BaseException) -> bool:
    """Whether a connection error was caused by a refusal or a name that does not resolve
    (httpx wraps httpcore's error, which wraps the socket's)."""
    seen: BaseException | None = exc
    for _ in range(8):  # the chain is short; never loop on a cycle
        if seen is None:
            return False
        if isinstance(seen, ConnectionRefusedError):
            return True
        if isinstance(seen, socket.gaierror) and seen.errno != socket.EAI_AGAIN:
            return True  # EAI_AGAIN: the name server did not answer this time
        seen = seen.__cause__ or seen.__context__
    return False


def ignored_constraint(
    constraint: Constraint, text: str | None, finish_reason: str | None
) -> str | None:
    """Why a server's answer does not follow the constraint it was sent, in one line, or None.

    This is the answer's `Generation.error`, which the runner stores as the output's error:
    "the server did not follow the constraint (json_schema from metadata.json_schema): not JSON".
    Only a finished answer is judged: one that ran out of `max_new_tokens` ends `length`,
    which already says it is incomplete (as on a local model), and a cancelled one is redone
    on resume. An answer that a stop string ended may have been cut inside a valid one, and is
    said so."""
    why = _unfollowed(constraint, text, finish_reason)
    return None if why is None else _broken(constraint, finish_reason, why)


def _broken(constraint: Constraint, finish_reason: str | None, why: str) -> str:
    return f"{_what_broke(constraint, finish_reason, None)}: {why}"


def _unfollowed(constraint: Constraint, text: str | None, finish_reason: str | None) -> str | None:
    if finish_reason not in ("eos", "stop"):
        return None
    return violation(constraint, text, finish_reason)


def _what_broke(constraint: Constraint, finish_reason: str | None, url: str | None) -> str:
    server = f"the server at {url}" if url else "the server"
    label = f"({constraint.kind} from {constraint.source})"
    if finish_reason == "stop":
        return f"an answer {server} ended at a stop string does not follow the constraint {label}"
    return f"{server} did not follow the constraint {label}"


def _refusal(body: Mapping[str, Any], asked: bool) -> Callable[[httpx.Response], bool]:
    """Whether an error answer refuses a field of `body` that can be left out: a constraint
    field, or the log-probabilities when they were `asked` for."""

    def refuses(response: httpx.Response) -> bool:
        if asked and _rejects_logprobs(response):
            return True
        return bool(refused_fields(response.status_code, response.text, list(body)))

    return refuses


def _rejects_stream_options(response: httpx.Response) -> bool:
    return response.status_code in (400, 422) and "stream_options" in response.text


def _rejects_logprobs(response: httpx.Response) -> bool:
    """A server refusing `logprobs`/`top_logprobs` (vLLM above its --max-logprobs, servers
    that validate strictly); `response.read()` must have been called."""
    return response.status_code in (400, 422) and "logprobs" in response.text


def _detail(response: httpx.Response) -> str:
    """What an error answer says: its `error.message`, else the start of its body."""
    try:
        response.read()
        body = response.json()
        detail = body.get("error", body) if isinstance(body, dict) else body
        if isinstance(detail, dict):
            detail = detail.get("message") or detail
    except (ValueError, httpx.HTTPError):
        detail = response.text[:300] if response.is_stream_consumed else ""
    return str(detail)


def _steps_within(steps: list[TokenStep], length: int) -> list[TokenStep]:
    """The tokens that begin within the first `length` characters of the answer: an answer the
    workbench cut at a stop string keeps the tokens of the text it keeps."""
    kept, at = [], 0
    for step in steps:
        if at >= length:
            break
        kept.append(step)
        at += len(step.text)
    return kept


def _message(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


def _server_root(base_url: str) -> str:
    """`http://host:port` for endpoints outside /v1 (tokenize)."""
    parts = urlsplit(base_url)
    path = parts.path
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _reported_window(entry: Mapping[str, Any]) -> int | None:
    """The context window a /models entry reports, under the names servers use for it."""
    candidates: list[Any] = [
        entry.get(k) for k in ("max_model_len", "context_length", "context_window", "n_ctx")
    ]
    for value in candidates:
        if isinstance(value, int) and value > 0:
            return value
    return None
