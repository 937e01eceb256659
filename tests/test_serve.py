"""`workbench serve`: the Streamlit settings it starts with, and stopping it stops the server."""

from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path

import pytest
from servers import free_port, serving

from workbench.server import STREAMLIT_OPTIONS, streamlit_command

ROOT = Path(__file__).resolve().parent.parent


def test_the_command_carries_every_setting_and_the_address() -> None:
    command = streamlit_command("127.0.0.1", 8765)
    assert command[:4] == [sys.executable, "-m", "streamlit", "run"]
    assert Path(command[4]).name == "Home.py" and Path(command[4]).is_file()
    options = dict(arg[2:].split("=", 1) for arg in command[5:])
    assert options == {**STREAMLIT_OPTIONS, "server.address": "127.0.0.1", "server.port": "8765"}
    # nothing that would make the page or the server reach the internet
    assert options["browser.gatherUsageStats"] == "false"
    assert options["logger.hideWelcomeMessage"] == "true"
    assert options["server.headless"] == "true"


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
