"""Run the web app: Streamlit on `app/Home.py` in a child process, stopped together with us.

Every Streamlit setting the workbench depends on is passed on the command line rather than read
from a `.streamlit/config.toml` in the project folder: an installed package has no project
folder, the settings then hold from any working directory, and command-line values win over a
person's own `~/.streamlit/config.toml`, so nothing there can turn usage statistics back on.

The child runs in the working directory it was started from, like the CLI itself, so a relative
`WORKBENCH_STORAGE_DIR` or `WORKBENCH_DATABASE_URL` means the same folder in both processes.

The app makes no connection beyond this machine. The settings below keep Streamlit from
opening a browser, fetching a metrics file and looking up this machine's addresses for its
welcome banner; the one look-up no setting stops (when a page on another site tries to open a
WebSocket to the app) is answered by `workbench.app.launch`, through which Streamlit is started.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

APP_ENTRY = Path(__file__).resolve().parent / "app" / "Home.py"
LAUNCHER = "workbench.app.launch"  # Streamlit's command line, minus its network look-ups

STREAMLIT_OPTIONS: dict[str, str] = {
    "server.headless": "true",  # no browser opened, no e-mail prompt
    "server.enableXsrfProtection": "true",
    # Refuse WebSockets from other sites' pages (the default, held against a person's config).
    "server.enableCORS": "true",
    "server.maxUploadSize": "20",  # MB; prompt files are limited to 1 MB each, zips to 64 MB
    "server.fileWatcherType": "none",  # the code does not change under a running server
    "server.runOnSave": "false",
    # Pages keep their choices by writing widget values back each rerun (app/memory.py), which
    # is what this warning is about: not a mistake here.
    "global.disableWidgetStateDuplicationWarning": "true",
    # Otherwise the page fetches a metrics file from the internet.
    "browser.gatherUsageStats": "false",
    # We print the URL ourselves; Streamlit's welcome message looks up this machine's public IP
    # address on the internet when the address is 0.0.0.0.
    "logger.hideWelcomeMessage": "true",
    "client.toolbarMode": "minimal",
    "client.showErrorDetails": "none",  # never show tracebacks to the person at the screen
    "theme.base": "light",
    "theme.primaryColor": "#2f6fed",
    "theme.font": "sans serif",
}

# What stops the server: Ctrl+C (SIGINT), `kill` (SIGTERM) and a closed terminal (SIGHUP), each
# passed on as the signal Streamlit shuts down cleanly on.
_FORWARDED = {signal.SIGINT: signal.SIGINT, signal.SIGTERM: signal.SIGTERM}
if hasattr(signal, "SIGHUP"):
    _FORWARDED[signal.SIGHUP] = signal.SIGTERM


def streamlit_command(address: str, port: int) -> list[str]:
    """The command line that serves the app on `address`:`port` with the workbench's settings."""
    options = {**STREAMLIT_OPTIONS, "server.address": address, "server.port": str(port)}
    command = [sys.executable, "-m", LAUNCHER, "run", str(APP_ENTRY)]
    command += [f"--{name}={value}" for name, value in options.items()]
    return command


def run_app(address: str, port: int) -> int:
    """Serve the app until it stops; returns its exit status (0 when a signal stopped it).

    A signal that would stop this process is forwarded to Streamlit and we wait for it to shut
    down, so stopping `workbench serve` never leaves a server behind on the port. (Ctrl+C in a
    terminal reaches both processes; Streamlit takes the second SIGINT as the same request.)
    """
    child: subprocess.Popen[bytes] | None = None
    stopped_by: signal.Signals | None = None

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopped_by
        stopped_by = _FORWARDED[signal.Signals(signum)]
        if child is not None:
            child.send_signal(stopped_by)

    previous = {sig: signal.signal(sig, forward) for sig in _FORWARDED}
    try:
        sys.stdout.flush()  # what we printed comes before the server's own output
        child = subprocess.Popen(streamlit_command(address, port))
        if stopped_by is not None:  # the signal came while the child was being started
            child.send_signal(stopped_by)
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if stopped_by is not None else code
