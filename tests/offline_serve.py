"""`workbench serve` in a network namespace with no route out, every connect() it makes traced.

Run as `unshare -n python tests/offline_serve.py WORKDIR` (tests/test_serve.py does): inside the
namespace only the loopback interface exists. The server runs under `strace -f -e
trace=connect,bind`; this script then loads the app as a browser would (the page, a same-origin
WebSocket that runs the Home script to the end) and makes a cross-origin WebSocket attempt
that the server must refuse, stops the server and writes what it saw to WORKDIR/probe.json.
The test reads WORKDIR/connect.trace for every address the server tried to reach (binds are
traced too, to show that strace followed the server into Streamlit's process).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

EVIL_ORIGIN = "http://evil.example"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(port: int, path: str) -> int:
    """A plain GET on loopback (http.client: no proxy settings can send it elsewhere)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def wait_healthy(port: int, server: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}")
        try:
            if get(port, "/_stcore/health") == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError("the server did not answer /_stcore/health")


def run_home_script(port: int) -> list[str]:
    """What a browser does after loading the page: open the WebSocket from the page's own
    origin and ask for a script run; returns the kinds of message received until it ends."""
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from websockets.sync.client import connect

    kinds: list[str] = []
    url = f"ws://127.0.0.1:{port}/_stcore/stream"
    with connect(url, origin=f"http://127.0.0.1:{port}", subprotocols=["streamlit"]) as ws:  # type: ignore[list-item]
        request = BackMsg()
        request.rerun_script.query_string = ""
        ws.send(request.SerializeToString())
        deadline = time.monotonic() + 120
        while "script_finished" not in kinds and time.monotonic() < deadline:
            data = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
            assert isinstance(data, bytes)
            kinds.append(str(ForwardMsg.FromString(data).WhichOneof("type")))
    return kinds


def cross_origin_attempt(port: int) -> str:
    """A WebSocket opened by a page on another site: the server must refuse it."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    url = f"ws://127.0.0.1:{port}/_stcore/stream"
    try:
        with connect(url, origin=EVIL_ORIGIN, subprotocols=["streamlit"]):  # type: ignore[arg-type]
            return "accepted"
    except InvalidStatus as exc:
        return f"refused with HTTP {exc.response.status_code}"


def main(workdir: Path) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    port = free_port()
    trace = workdir / "connect.trace"
    command = ["strace", "-f", "-qq", "-e", "trace=connect,bind", "-o", str(trace)]
    command += [sys.executable, "-m", "workbench.cli", "serve", "--port", str(port)]
    result: dict[str, Any] = {"port": port}
    with open(workdir / "server.log", "wb") as log:
        server = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True
        )
        try:
            wait_healthy(port, server)
            result["page"] = get(port, "/")
            result["same_origin"] = run_home_script(port)
            result["cross_origin"] = cross_origin_attempt(port)
            time.sleep(1.5)  # longer than Streamlit's 1 s external-IP lookup
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            result["exit"] = server.wait(timeout=60)
    (workdir / "probe.json").write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
