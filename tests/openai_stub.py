"""A tiny OpenAI-compatible server in a thread, for what a real server cannot be made to do on
demand: answer 429 or 503, drop a connection, or count how many requests are in flight.

It streams a fixed answer word by word as Server-Sent Events on /v1/chat/completions and
/v1/completions, and lists one model on /v1/models.
"""

from __future__ import annotations

import json
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

        def do_GET(self) -> None:
            if self.path == "/v1/models":
                with b.lock:
                    b.model_lists += 1
                entry = {"id": "stub", "max_model_len": 512, "created": time.time_ns()}
                self._json(200, {"object": "list", "data": [entry]})
            else:
                self._json(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if self.path not in ("/v1/chat/completions", "/v1/completions"):
                self._json(404, {"error": {"message": "not found"}})
                return
            with b.lock:
                b.requests.append(body)
                failure = b.failures.pop(0) if b.failures else None
                drop = b.drop_connections > 0
                if drop:
                    b.drop_connections -= 1
            if drop:
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if failure is not None:
                status, headers = failure
                self._json(status, {"error": {"message": f"stub says {status}"}}, headers)
                return
            with b.lock:
                b.in_flight += 1
                b.max_in_flight = max(b.max_in_flight, b.in_flight)
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
            self.end_headers()
            self.close_connection = True
            words = b.answer.split(" ")
            for i, word in enumerate(words):
                piece = word if i == 0 else " " + word
                time.sleep(b.delay_s)
                choice: dict[str, Any] = {"index": 0, "finish_reason": None}
                choice.update({"delta": {"content": piece}} if chat else {"text": piece})
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
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()

        def _whole(self, body: dict[str, Any]) -> None:
            """A whole answer, with usage (as llama-cpp-python gives it only here)."""
            time.sleep(b.delay_s * len(b.answer.split(" ")))
            choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
            if self.path.endswith("chat/completions"):
                choice["message"] = {"role": "assistant", "content": b.answer}
            else:
                choice["text"] = b.answer
            usage = {"prompt_tokens": 7, "completion_tokens": len(b.answer.split(" "))}
            with b.lock:
                b.in_flight -= 1
            self._json(200, {"choices": [choice], "usage": usage})

        def _event(self, data: dict[str, Any]) -> None:
            self.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()

    return Handler


@contextmanager
def stub_server(behaviour: StubBehaviour) -> Iterator[str]:
    """Yields the base URL (http://127.0.0.1:PORT/v1) while the stub serves in a thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(behaviour))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
