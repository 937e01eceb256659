"""`workbench serve`: the Streamlit settings it starts with, and stopping it stops the server."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from servers import free_port, serving

from workbench.server import STREAMLIT_OPTIONS, streamlit_command

ROOT = Path(__file__).resolve().parent.parent


def test_the_command_carries_every_setting_and_the_address() -> None:
    command = streamlit_command("127.0.0.1", 8765)
    assert command[:4] == [sys.executable, "-m", "workbench.app.launch", "run"]
    assert Path(command[4]).name == "Home.py" and Path(command[4]).is_file()
    options = dict(arg[2:].split("=", 1) for arg in command[5:])
    assert options == {**STREAMLIT_OPTIONS, "server.address": "127.0.0.1", "server.port": "8765"}
    # nothing that would make the page or the server reach the internet
    assert options["browser.gatherUsageStats"] == "false"
    assert options["logger.hideWelcomeMessage"] == "true"
    assert options["server.headless"] == "true"
    assert options["server.enableCORS"] == "true"


def test_the_checkouts_streamlit_config_says_the_same() -> None:
    """`.streamlit/config.toml` serves `streamlit run workbench/app/Home.py` from a checkout; it
    must not drift from what `workbench serve` passes."""
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    flat = {
        f"{section}.{name}": str(value).lower() if isinstance(value, bool) else str(value)
        for section, values in config.items()
        for name, value in values.items()
    }
    assert flat == {**STREAMLIT_OPTIONS, "server.address": "127.0.0.1"}


def _refused(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) != 0


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "to_group"),
    [
        pytest.param(signal.SIGTERM, False, id="SIGTERM"),
        pytest.param(signal.SIGINT, False, id="SIGINT"),
        pytest.param(signal.SIGINT, True, id="Ctrl+C"),  # a terminal signals the whole group
    ],
)
def test_stopping_serve_stops_the_streamlit_server(
    sig: signal.Signals, to_group: bool, tmp_path: Path
) -> None:
    port = free_port()
    command = [sys.executable, "-m", "workbench.cli", "serve", "--port", str(port)]
    health = f"http://127.0.0.1:{port}/_stcore/health"
    log = tmp_path / "serve.log"
    with serving(command, log, health, timeout_s=90, env=os.environ, cwd=tmp_path) as proc:
        assert _group_alive(proc.pid) and not _refused(port)
        if to_group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        status = proc.wait(timeout=30)
        output = log.read_text(errors="replace")
        assert status == 0, output
        # workbench waited for Streamlit: nothing of the server is left, the port is free
        assert not _group_alive(proc.pid), output
        assert _refused(port), output


# --- no connection beyond this machine ----------------------------------------------------------

CONNECT = re.compile(r"connect\(\d+, \{sa_family=(?P<family>AF_\w+)(?P<rest>.*?)\}, \d+\)")


def _leaves_the_machine(line: str) -> bool:
    """Whether a traced connect() reaches for another machine or a name server.

    Loopback is this machine, but a connect to port 53 is a DNS query wherever it goes, and
    glibc asks its name-service cache socket before it looks up any host name."""
    match = CONNECT.search(line)
    if match is None:
        return False
    family, rest = match["family"], match["rest"]
    if family == "AF_UNIX":
        return "nscd" in rest
    if family == "AF_UNSPEC":  # dissolves a UDP socket's association: no address at all
        return False
    if "htons(53)" in rest:
        return True
    return not re.search(r'inet_addr\("127\.|inet_pton\(AF_INET6, "(::1|::ffff:127\.)', rest)


def _network_namespace_problem() -> str | None:
    for tool in ("unshare", "strace", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"unshare -n is not permitted here: {probe.stderr.strip()}"
    return None


@pytest.mark.slow
def test_serve_reaches_nothing_beyond_this_machine(tmp_path: Path) -> None:
    """`workbench serve` in a network namespace with only loopback, every connect() traced:
    the page loads and runs, a WebSocket from another site's page is refused, and nothing —
    not even a DNS query — tried to leave the machine. Streamlit on its own tried 8.8.8.8 and
    checkip.amazonaws.com for that refused WebSocket (workbench.app.launch stops it)."""
    problem = _network_namespace_problem()
    if problem:
        pytest.skip(f"cannot serve in an isolated network namespace: {problem}")
    env = {**os.environ, "WORKBENCH_PROMPTS_DIR": str(ROOT / "workbench" / "prompts")}
    probe = [sys.executable, str(ROOT / "tests" / "offline_serve.py"), str(tmp_path)]
    done = subprocess.run(
        ["unshare", "-n", *probe], env=env, capture_output=True, text=True, timeout=300
    )
    log = (tmp_path / "server.log").read_text(errors="replace") if done.returncode == 0 else ""
    assert done.returncode == 0, done.stderr[-3000:] + log[-3000:]
    seen = json.loads((tmp_path / "probe.json").read_text(encoding="utf-8"))
    assert seen["page"] == 200 and seen["exit"] == 0, seen
    assert seen["same_origin"][-1] == "script_finished", seen  # the Home page ran to its end
    assert seen["cross_origin"] == "refused with HTTP 403", seen
    assert "Rejecting WebSocket connection" in log, log[-3000:]
    trace = (tmp_path / "connect.trace").read_text(errors="replace").splitlines()
    # strace followed the server into Streamlit's process: it saw the listening socket bound
    assert any(f"htons({seen['port']})" in line and "bind(" in line for line in trace), trace
    outbound = [line for line in trace if _leaves_the_machine(line)]
    assert outbound == [], "\n".join(outbound)
    assert "external IP" not in log, log[-3000:]
