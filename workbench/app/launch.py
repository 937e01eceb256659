"""Streamlit's own command line, without the network look-ups Streamlit makes by itself.

Streamlit (1.67) refuses a WebSocket from another origin only after checking whether that
origin is this machine's address: `net_util.get_internal_ip` connects a UDP socket towards
8.8.8.8 and `net_util.get_external_ip` asks http://checkip.amazonaws.com (a DNS look-up, then
HTTP). No setting skips them: `browser.serverAddress` and `server.corsAllowedOrigins` are only
compared around them, and `server.enableCORS=false` skips them by accepting every origin. So
any web page open in the person's browser could make the workbench reach the internet just by
trying to open a WebSocket to it.

`workbench serve` starts Streamlit through this module (`python -m workbench.app.launch run
…`), which makes both answer "unknown" without asking anyone: a cross-origin WebSocket is
refused at once, the page's own origin is accepted as before (Streamlit compares it with the
Host header first), and an origin can still be allowed with `server.corsAllowedOrigins`.
tests/test_serve.py serves the app in a network namespace with no route out, traces every
connect() and checks that none leaves the machine. (The welcome banner's own look-up is
already off: `logger.hideWelcomeMessage`.)
"""

from __future__ import annotations


def _unknown_address() -> str | None:
    return None


def main() -> None:
    """`python -m streamlit …`, with the two look-ups answered before Streamlit starts."""
    from streamlit import net_util
    from streamlit.web import cli

    net_util.get_internal_ip = _unknown_address
    net_util.get_external_ip = _unknown_address
    cli.main(prog_name="streamlit")


if __name__ == "__main__":
    main()
