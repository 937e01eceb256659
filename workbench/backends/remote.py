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
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import socket
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from ..config import OpenAISettings, Settings
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

PREFIX = REMOTE_PREFIX
RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
MAX_BACKOFF_S = 30.0
CHARS_PER_TOKEN = 4  # for the labelled estimate when the server cannot tokenize
STABLE_MODEL_FIELDS = ("id", "root", "parent", "owned_by", "max_model_len", "meta")
MESSAGE_OVERHEAD_TOKENS = 4  # role markers a chat template adds around each message


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
    labelled estimates otherwise, and a server's logits are out of reach.
    """

    capabilities = Capabilities()

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
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=server.base_url,
            headers=headers,
            timeout=httpx.Timeout(settings.timeout_s, connect=min(10.0, settings.timeout_s)),
            limits=httpx.Limits(max_connections=settings.max_concurrency + 4),
            transport=transport,
        )
        self._slots = threading.BoundedSemaphore(settings.max_concurrency)
        self._usage_in_stream = True  # until the server rejects stream_options
        # Whether streamed answers end with `usage` (None: not seen yet). llama-cpp-python's
        # do not; `generate` then asks for whole answers, which carry exact token counts.
        self._streams_usage: bool | None = None
        self._tokenizer: str | None = None  # "llama.cpp", "llama-cpp-python", "none"
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

    # --- the server -----------------------------------------------------------------------------
    def _describe(self) -> tuple[str, int, str]:
        """(model id, context window, revision) from /models."""
        response = self._send("GET", "/models")
        try:
            entries = [e for e in response.json().get("data", []) if isinstance(e, dict)]
        except (ValueError, AttributeError):
            raise ModelError(
                f"{self.server.public_url}/models did not answer with JSON: is this an "
                "OpenAI-compatible server?"
            ) from None
        ids = [str(e.get("id", "")) for e in entries]
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
            props = self._client.get(f"{_server_root(self.server.base_url)}/props").json()
            value = props.get("default_generation_settings", {}).get("n_ctx") or props.get("n_ctx")
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        return value if isinstance(value, int) and value > 0 else None

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One non-streaming request with the same retries as generation."""
        for attempt in range(self.settings.max_retries + 1):
            try:
                response = self._client.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt < self.settings.max_retries and _retryable(exc):
                    self._sleep(self._backoff(attempt, None), None)
                    continue
                raise self._unreachable(exc) from None
            if response.status_code in RETRY_STATUS and attempt < self.settings.max_retries:
                self._sleep(self._backoff(attempt, response), None)
                continue
            if response.status_code >= 400:
                raise self._refused(response)
            return response
        raise AssertionError("unreachable")

    def _unreachable(self, exc: Exception) -> ModelError:
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
            return ModelError(
                f"the server at {self.server.public_url} took longer than "
                f"{self.settings.timeout_s:g} s to answer; raise WORKBENCH_OPENAI_TIMEOUT or "
                "lower WORKBENCH_OPENAI_MAX_CONCURRENCY"
            )
        return ModelError(
            f"no OpenAI-compatible server answers at {self.server.public_url} — start one (for "
            "example `python -m llama_cpp.server --model FILE.gguf --port 8080`) or point "
            f"WORKBENCH_OPENAI_BASE_URL at it ({type(exc).__name__}: {exc or 'no answer'})"
        )

    def _refused(self, response: httpx.Response) -> ModelError:
        try:
            response.read()
            body = response.json()
            detail = body.get("error", body) if isinstance(body, dict) else body
            if isinstance(detail, dict):
                detail = detail.get("message") or detail
        except (ValueError, httpx.HTTPError):
            detail = response.text[:300] if response.is_stream_consumed else ""
        hint = {
            401: " (check WORKBENCH_OPENAI_API_KEY)",
            403: " (check WORKBENCH_OPENAI_API_KEY)",
            404: " (is the base URL right? it usually ends in /v1)",
        }.get(response.status_code, "")
        return ModelError(
            f"the server at {self.server.public_url} refused the request: HTTP "
            f"{response.status_code}{hint}: {str(detail)[:500]}"
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
    def _sleep(seconds: float, cancel: Cancel | None) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if cancel is not None and cancel.is_set():
                return
            time.sleep(min(left, 0.1))

    def close(self) -> None:
        self._client.close()

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

    def _token_ids(self, kind: str, text: str) -> list[int] | None:
        root = _server_root(self.server.base_url)
        try:
            if kind == "llama.cpp":
                response = self._client.post(f"{root}/tokenize", json={"content": text})
            else:
                response = self._client.post(
                    f"{root}/extras/tokenize", json={"input": text, "model": self.model}
                )
            if response.status_code != 200:
                return None
            tokens = response.json().get("tokens")
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            return None
        return tokens

    def _detokenize(self, kind: str, ids: list[int]) -> str | None:
        root = _server_root(self.server.base_url)
        try:
            if kind == "llama.cpp":
                response = self._client.post(f"{root}/detokenize", json={"tokens": ids})
                field = "content"
            else:
                response = self._client.post(
                    f"{root}/extras/detokenize", json={"tokens": ids, "model": self.model}
                )
                field = "text"
            if response.status_code != 200:
                return None
            text = response.json().get(field)
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
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

    def log_likelihood(self, text: str) -> LogLikelihood:
        raise CapabilityError(
            f"{self.info.name} is a server, and servers do not give the log-probabilities of "
            "a whole text; scoring a text needs a local model"
        )

    def _tokenizer_kind(self) -> str:
        """Find once which tokenize endpoint the server has: llama.cpp's, llama-cpp-python's,
        or none (vLLM's /tokenize takes other fields; others have none)."""
        if self._tokenizer is None:
            kind = "none"
            for candidate in ("llama.cpp", "llama-cpp-python"):
                if self._tokenize(candidate, "hello") is not None:
                    kind = candidate
                    break
            self._tokenizer = kind
        return self._tokenizer

    def check_fits(self, prompt_tokens: int, params: GenerationParams) -> None:
        check_context(self.info, prompt_tokens, params, estimate=True)

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
        rows exactly as with the local backend. A cancel stops the requests in flight at their
        next piece; rows not started stay None. If a row fails, the others are stopped and the
        error is raised.
        """
        params.validate(self.info.context_window)
        results: list[Generation | None] = [None] * len(inputs)
        if not inputs:
            return results
        workers = min(self.max_concurrency, batch_size or self.max_concurrency, len(inputs))
        abort = Cancel()  # ours: a row failed, stop the rest
        stops = [abort] + ([cancel] if cancel is not None else [])

        def one(i: int) -> Generation | None:
            if any(c.is_set() for c in stops):
                return None
            seed = seeds[i] if seeds is not None else params.seed
            if self._streams_usage is False:
                return self._whole(inputs[i], params, seed, workers)
            return _drain(self._events(inputs[i], params, seed, stops, workers))

        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="workbench-remote")
        try:
            futures: dict[Future[Generation | None], int] = {
                pool.submit(one, i): i for i in range(len(inputs))
            }
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: futures[f]):
                    generation = future.result()
                    if generation is not None:
                        results[futures[future]] = generation
                        if on_batch is not None:
                            on_batch([(futures[future], generation)])
        except BaseException:
            abort.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return results

    def stream(
        self, model_input: ModelInput, params: GenerationParams, cancel: Cancel | None = None
    ) -> RemoteTokenStream:
        params.validate(self.info.context_window)
        return RemoteTokenStream(self, model_input, params, cancel)

    def _whole(
        self, model_input: ModelInput, params: GenerationParams, seed: int, concurrency: int
    ) -> Generation:
        """One answer without streaming: for servers whose streams carry no token counts.

        A cancel then waits for the requests in flight (it still stops every row not sent).
        """
        path, body = self._request(model_input, params, seed, stream=False)
        started = time.perf_counter()
        with self._slots:
            data = self._send("POST", path, json=body).json()
        latency = time.perf_counter() - started
        if not isinstance(data, dict) or not data.get("choices"):
            raise ModelError(f"the server at {self.server.public_url} sent no answer: {data}")
        choice = data["choices"][0]
        message = choice.get("message")
        text = str(
            (message.get("content") if isinstance(message, dict) else choice.get("text")) or ""
        )
        cut = first_stop(text, params.stop)
        if cut is not None:
            text = text[:cut]
        usage: dict[str, Any] = data["usage"] if isinstance(data.get("usage"), dict) else {}
        prompt_tokens = usage.get("prompt_tokens")
        completion_tokens = usage.get("completion_tokens")
        reason = _finish_reason(
            choice.get("finish_reason"), choice.get("stop_reason"), params, cut is not None, False
        )
        return Generation(
            text,
            reason,
            prompt_tokens if isinstance(prompt_tokens, int) else self.count_tokens(model_input),
            completion_tokens if isinstance(completion_tokens, int) else 0,
            latency,
            None,
            concurrency,
        )

    def _request(
        self, model_input: ModelInput, params: GenerationParams, seed: int, stream: bool = True
    ) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"model": self.model, "max_tokens": params.max_new_tokens}
        if model_input.messages is not None:
            path = "/chat/completions"
            body["messages"] = [{"role": r, "content": c} for r, c in model_input.messages]
        else:
            path = "/completions"
            body["prompt"] = model_input.text
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
        body["stream"] = stream
        if stream and self._usage_in_stream:
            body["stream_options"] = {"include_usage": True}
        return path, body

    def _events(
        self,
        model_input: ModelInput,
        params: GenerationParams,
        seed: int,
        stops: Sequence[Cancel],
        concurrency: int,
    ) -> Generator[str, None, Generation]:
        """Yield text pieces of one answer; return its Generation.

        Text that could be the start of a stop string is held back until it is clear it is not
        one (servers cut stop strings themselves; this also covers those that do not).
        """
        started = time.perf_counter()
        attempt = 0
        while True:
            path, body = self._request(model_input, params, seed)
            pieces: list[str] = []  # received text, for the stop check
            emitted = 0  # characters of "".join(pieces) already yielded
            ttft: float | None = None
            usage: dict[str, Any] = {}
            raw_reason: str | None = None
            stop_reason: Any = None
            client_stop = cancelled = False
            chunks = 0
            try:
                with self._slots, self._client.stream("POST", path, json=body) as response:
                    if response.status_code >= 400:
                        response.read()
                        if self._usage_in_stream and _rejects_stream_options(response):
                            self._usage_in_stream = False
                            continue
                        if response.status_code in RETRY_STATUS and attempt < (
                            self.settings.max_retries
                        ):
                            wait_s = self._backoff(attempt, response)
                            attempt += 1
                            self._sleep(wait_s, _any(stops))
                            continue
                        raise self._refused(response)
                    for data in _sse_data(response.iter_lines()):
                        if any(c.is_set() for c in stops):
                            cancelled = True
                            break
                        if data.get("error"):
                            raise ModelError(
                                f"the server at {self.server.public_url} failed while "
                                f"answering: {_message(data['error'])}"
                            )
                        if isinstance(data.get("usage"), dict):
                            usage = data["usage"]
                        for choice in data.get("choices") or []:
                            piece = _piece(choice)
                            if piece:
                                chunks += 1
                                if ttft is None:
                                    ttft = time.perf_counter() - started
                                pieces.append(piece)
                            raw_reason = choice.get("finish_reason") or raw_reason
                            stop_reason = choice.get("stop_reason", stop_reason)
                        text = "".join(pieces)
                        cut = first_stop(text, params.stop)
                        if cut is not None:
                            pieces, client_stop = [text[:cut]], True
                        safe = len(pieces[0]) if client_stop else _safe_end(text, params.stop)
                        if safe > emitted:
                            yield "".join(pieces)[emitted:safe]
                            emitted = safe
                        if client_stop:
                            break
            except httpx.TransportError as exc:
                if emitted == 0 and attempt < self.settings.max_retries and _retryable(exc):
                    wait_s = self._backoff(attempt, None)
                    attempt += 1
                    self._sleep(wait_s, _any(stops))
                    continue
                raise self._unreachable(exc) from None
            if raw_reason is None and not (cancelled or client_stop):
                raise ModelError(
                    f"the server at {self.server.public_url} ended an answer before it was "
                    "finished (llama-cpp-python does this to a request when another one arrives, "
                    "unless started with --interrupt_requests False)"
                )
            break
        text = "".join(pieces)
        if len(text) > emitted and not cancelled:
            yield text[emitted:]
        reason = _finish_reason(raw_reason, stop_reason, params, client_stop, cancelled)
        if not (cancelled or client_stop):
            self._streams_usage = bool(usage)
        prompt_tokens = usage.get("prompt_tokens")
        if not isinstance(prompt_tokens, int):
            prompt_tokens = self.count_tokens(model_input)
        completion_tokens = usage.get("completion_tokens")
        if not isinstance(completion_tokens, int):
            completion_tokens = chunks
        latency = time.perf_counter() - started
        return Generation(
            text, reason, prompt_tokens, completion_tokens, latency, ttft, concurrency
        )


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
        self._stop.set()

    @property
    def cancelled(self) -> bool:
        return any(c.is_set() for c in self._cancels)

    def __iter__(self) -> Iterator[str]:
        events = self.backend._events(
            self.model_input, self.params, self.params.seed, self._cancels, 1
        )
        try:
            while True:
                yield next(events)
        except StopIteration as done:
            self.result = done.value
        finally:
            events.close()  # the reader left early: the request's connection closes


# --- helpers ------------------------------------------------------------------------------------


def _drain(events: Generator[str, None, Generation]) -> Generation:
    try:
        while True:
            next(events)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def _any(cancels: Sequence[Cancel]) -> Cancel:
    """One flag that is set when any of these is (for the backoff sleep)."""

    class AnyOf(Cancel):
        def is_set(self) -> bool:
            return any(c.is_set() for c in cancels)

    return AnyOf()


def _sse_data(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The JSON payloads of an SSE stream's `data:` lines, until `[DONE]`."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        if not payload:
            continue
        try:
            data = json.loads(payload)
        except ValueError:
            raise ModelError(f"the server sent a line that is not JSON: {payload[:200]}") from None
        if isinstance(data, dict):
            yield data


def _piece(choice: Mapping[str, Any]) -> str:
    delta = choice.get("delta")
    if isinstance(delta, dict):
        return str(delta.get("content") or "")
    return str(choice.get("text") or "")


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


def _rejects_stream_options(response: httpx.Response) -> bool:
    return response.status_code in (400, 422) and "stream_options" in response.text


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
