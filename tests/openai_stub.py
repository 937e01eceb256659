"""A tiny OpenAI-compatible server in a thread, for what a real server cannot be made to do on
demand: answer 429 or 503, drop a connection, count how many requests are in flight, hold a
request without answering, send keep-alive comments forever, cut an answer mid-stream, or send
malformed answers.

It streams a fixed answer word by word as Server-Sent Events on /v1/chat/completions and
/v1/completions, and lists one model on /v1/models. Asked for log-probabilities it gives each
word (one token) -(i+1)/4 and k alternatives (the word, then "alt1"… one nat apart), in the
shape of the endpoint asked (chat: `content`; completions: parallel lists), or it omits them or
refuses the request (`logprobs`). It refuses request fields it is told it does not know, as a
strict server does (`unknown_fields`: HTTP 400 naming them), and OpenAI's json_schema
`response_format` as llama-cpp-python does (`json_object_only`: HTTP 500 naming it); it never
follows a constraint, so what it answers under one is `answer` as always. Held requests watch
their connection, so a test can see that the client closed it (`closed_by_client`) rather than
waited.

Run as a script (`python tests/openai_stub.py --stall-after 2`) it serves in the foreground and
prints its URL, for trying the CLI against a slow server by hand.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class StubBehaviour:
    answer: str = "Hello from the stub"
    failures: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # popped per request
    drop_connections: int = 0  # close this many generation requests without answering
    delay_s: float = 0.0  # per word
    usage: bool = True
    requests: list[dict[str, Any]] = field(default_factory=list)  # generation request bodies
    model_lists: int = 0  # GET /v1/models answered
    # A slow server: generation requests after the first `stall_after` get no answer for
    # `stall_s` seconds (headers included), as a server busy with other work.
    stall_after: int | None = None
    stall_s: float = 600.0
    hang_paths: set[str] = field(default_factory=set)  # paths that never answer (held 600 s)
    held: list[str] = field(default_factory=list)  # requests to hang_paths, by path
    keepalive_s: float | None = None  # stream only `: ping` comments, this often, forever
    cut_after: int | None = None  # close the connection after this many pieces of an answer
    raw: str | None = None  # the generation answer's body, verbatim (streamed or whole)
    models: Any = None  # the /v1/models answer instead of the one model
    closed_by_client: int = 0  # held or pinging requests whose connection the client closed
    # Streams in chunked transfer encoding, as uvicorn (vLLM, llama-cpp-python) and llama.cpp
    # send them; False: the body simply ends when the connection closes.
    chunked: bool = True
    authorizations: list[str] = field(default_factory=list)  # generation requests' headers
    # Asked for log-probabilities: "give" them, "omit" them (answer as if not asked), "refuse"
    # the request (HTTP 400 naming them, as a strict server does) or send them "garbled".
    logprobs: str = "give"
    # Request fields answered with HTTP 400 "Unrecognized request argument supplied: …", as
    # OpenAI answers fields it does not know (vLLM's guided_choice, llama.cpp's grammar).
    unknown_fields: set[str] = field(default_factory=set)
    # Refuse `response_format` of type json_schema with HTTP 500, as llama-cpp-python 0.3 does
    # (it reads only "text" and "json_object", with an optional "schema").
    json_object_only: bool = False
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(b: StubBehaviour) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            blob = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(blob)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(blob)

        def _hold(self, seconds: float) -> bool:
            """Answer nothing for `seconds`; True (and counted) if the client closed first."""
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                if self._client_closed(0.05):
                    return True
            return False

        def _client_closed(self, wait_s: float) -> bool:
            readable, _, _ = select.select([self.connection], [], [], wait_s)
            if not readable:
                return False
            try:
                gone = self.connection.recv(1, socket.MSG_PEEK) == b""
            except OSError:
                gone = True
            if gone:
                with b.lock:
                    b.closed_by_client += 1
                self.close_connection = True
            return gone

        def _hang(self) -> None:
            with b.lock:
                b.held.append(self.path)
            self._hold(600)

        def do_GET(self) -> None:
            if self.path in b.hang_paths:
                self._hang()
                return
            if self.path == "/v1/models":
                with b.lock:
                    b.model_lists += 1
                entry = {"id": "stub", "max_model_len": 512, "created": time.time_ns()}
                models = b.models if b.models is not None else {"object": "list", "data": [entry]}
                self._json(200, models)
            else:
                self._json(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if self.path in b.hang_paths:
                self._hang()
                return
            if self.path not in ("/v1/chat/completions", "/v1/completions"):
                self._json(404, {"error": {"message": "not found"}})
                return
            with b.lock:
                b.requests.append(body)
                b.authorizations.append(self.headers.get("Authorization", ""))
                failure = b.failures.pop(0) if b.failures else None
                drop = b.drop_connections > 0
                if drop:
                    b.drop_connections -= 1
                stall = b.stall_after is not None and len(b.requests) > b.stall_after
            if drop:
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if failure is not None:
                status, headers = failure
                self._json(status, {"error": {"message": f"stub says {status}"}}, headers)
                return
            unknown = sorted(k for k in body if k in b.unknown_fields)
            if unknown:
                message = f"Unrecognized request argument supplied: {', '.join(unknown)}"
                self._json(400, {"error": {"message": message, "type": "invalid_request_error"}})
                return
            form = body.get("response_format")
            if b.json_object_only and isinstance(form, dict) and form.get("type") != "json_object":
                # llama-cpp-python's words for it (a pydantic literal_error, sent as a 500)
                message = (
                    "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', "
                    "'response_format', 'type'), 'msg': \"Input should be 'text' or "
                    f"'json_object'\", 'input': {form.get('type')!r}}}"
                )
                self._json(500, {"error": {"message": message, "type": "internal_server_error"}})
                return
            if b.logprobs == "refuse" and ("logprobs" in body or "top_logprobs" in body):
                message = "logprobs and top_logprobs are not supported by this server"
                self._json(400, {"error": {"message": message}})
                return
            if stall and self._hold(b.stall_s):
                return
            with b.lock:
                b.in_flight += 1
                b.max_in_flight = max(b.max_in_flight, b.in_flight)
            if b.raw is not None:
                self._raw(bool(body.get("stream")))
                return
            # The count drops before the last bytes go out: once a client has read them it may
            # send its next request, and that must not look like one too many in flight.
            if body.get("stream"):
                self._stream(body)
            else:
                self._whole(body)

        def _stream(self, body: dict[str, Any]) -> None:
            chat = self.path.endswith("chat/completions")
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            if b.chunked:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.close_connection = True
            if b.keepalive_s is not None:
                self._ping_forever(b.keepalive_s)
                return
            words = b.answer.split(" ")
            for i, word in enumerate(words):
                if b.cut_after is not None and i == b.cut_after:
                    with b.lock:
                        b.in_flight -= 1
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                piece = word if i == 0 else " " + word
                time.sleep(b.delay_s)
                choice: dict[str, Any] = {"index": 0, "finish_reason": None}
                choice.update({"delta": {"content": piece}} if chat else {"text": piece})
                choice["logprobs"] = _logprobs(body, chat, [piece], i, b.logprobs)
                self._event({"choices": [choice]})
            end: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
            if chat:
                end["delta"] = {}
            else:
                end["text"] = ""
            self._event({"choices": [end]})
            if b.usage and body.get("stream_options", {}).get("include_usage"):
                usage = {"prompt_tokens": 7, "completion_tokens": len(words), "total_tokens": 0}
                self._event({"choices": [], "usage": usage})
            with b.lock:
                b.in_flight -= 1
            self._write(b"data: [DONE]\n\n")
            if b.chunked:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        def _whole(self, body: dict[str, Any]) -> None:
            """A whole answer, with usage (as llama-cpp-python gives it only here)."""
            time.sleep(b.delay_s * len(b.answer.split(" ")))
            choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
            chat = self.path.endswith("chat/completions")
            if chat:
                choice["message"] = {"role": "assistant", "content": b.answer}
            else:
                choice["text"] = b.answer
            words = b.answer.split(" ")
            pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
            choice["logprobs"] = _logprobs(body, chat, pieces, 0, b.logprobs)
            usage = {"prompt_tokens": 7, "completion_tokens": len(b.answer.split(" "))}
            with b.lock:
                b.in_flight -= 1
            self._json(200, {"choices": [choice], "usage": usage})

        def _ping_forever(self, every_s: float) -> None:
            """SSE comments, which keep a connection alive and carry nothing, until the client
            goes (at most 600 s)."""
            end = time.monotonic() + 600
            try:
                while time.monotonic() < end:
                    self._write(b": ping\n\n")
                    if self._client_closed(every_s):
                        return
            except OSError:
                with b.lock:
                    b.closed_by_client += 1
            finally:
                with b.lock:
                    b.in_flight -= 1

        def _raw(self, stream: bool) -> None:
            assert b.raw is not None
            blob = b.raw.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream" if stream else "application/json")
            self.send_header("Content-Length", str(len(blob)))
            self.end_headers()
            with b.lock:
                b.in_flight -= 1
            self.wfile.write(blob)
            self.wfile.flush()

        def _event(self, data: dict[str, Any]) -> None:
            self._write(f"data: {json.dumps(data)}\n\n".encode())

        def _write(self, blob: bytes) -> None:
            """Part of a streamed body, framed as a chunk when the stream is chunked."""
            if b.chunked:
                blob = f"{len(blob):x}\r\n".encode() + blob + b"\r\n"
            self.wfile.write(blob)
            self.wfile.flush()

    return Handler


def stub_logprob(i: int) -> float:
    """The log-probability the stub gives its i-th token (exact in float32)."""
    return -(i + 1) / 4


def _logprobs(
    body: dict[str, Any], chat: bool, pieces: list[str], first: int, how: str
) -> dict[str, Any] | None:
    """A choice's `logprobs` for these tokens (the first is token `first` of the answer), in
    the endpoint's shape, if the request asked and the stub gives them."""
    asked = body.get("logprobs")
    if not asked or how == "omit":
        return None
    if how == "garbled":
        return {"content": "not a list"} if chat else {"tokens": ["x"], "token_logprobs": []}
    k = int(body.get("top_logprobs", 0)) if chat else int(asked)

    def top(piece: str, i: int) -> list[tuple[str, float]]:
        return [(piece, stub_logprob(i))] + [(f"alt{j}", stub_logprob(i) - j) for j in range(1, k)]

    steps = [(piece, first + n) for n, piece in enumerate(pieces)]
    if chat:
        return {
            "content": [
                {
                    "token": piece,
                    "logprob": stub_logprob(i),
                    "bytes": list(piece.encode()),
                    "top_logprobs": [
                        {"token": t, "logprob": v, "bytes": list(t.encode())}
                        for t, v in top(piece, i)
                    ],
                }
                for piece, i in steps
            ],
            "refusal": None,
        }
    offsets = [sum(len(p) for p in pieces[:n]) for n in range(len(pieces))]
    return {
        "tokens": [piece for piece, _ in steps],
        "token_logprobs": [stub_logprob(i) for _, i in steps],
        # a dict, as OpenAI sends it: its order says nothing (this one is worst first)
        "top_logprobs": [dict(reversed(top(piece, i))) for piece, i in steps],
        "text_offset": offsets,
    }


class _StubHTTPServer(ThreadingHTTPServer):
    """A client that hangs up mid-answer is what the cancel tests do on purpose: the broken
    pipe that follows is not an error to print in the test log."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


@contextmanager
def stub_server(behaviour: StubBehaviour) -> Iterator[str]:
    """Yields the base URL (http://127.0.0.1:PORT/v1) while the stub serves in a thread."""
    server = _StubHTTPServer(("127.0.0.1", 0), _handler(behaviour))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stall-after", type=int, default=None)
    parser.add_argument("--stall-s", type=float, default=600.0)
    parser.add_argument("--hang", action="append", default=[], help="a path that never answers")
    parser.add_argument("--keepalive-s", type=float, default=None)
    parser.add_argument("--delay-s", type=float, default=0.0)
    options = parser.parse_args()
    behaviour = StubBehaviour(
        stall_after=options.stall_after,
        stall_s=options.stall_s,
        hang_paths=set(options.hang),
        keepalive_s=options.keepalive_s,
        delay_s=options.delay_s,
    )
    with stub_server(behaviour) as url:
        print(url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
