"""The app as a person meets it: the home page lists the library and previews a version."""

from __future__ import annotations

import os
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import workbench_server
from streamlit.testing.v1 import AppTest

import workbench

APP = Path(workbench.__file__).resolve().parent / "app" / "Home.py"
ROOT = Path(workbench.__file__).resolve().parent.parent


def test_home_lists_builtins_and_previews_a_version(app_env: Path) -> None:
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    names = set(table["name"])
    assert {"few-shot-translation", "zero-shot-sentiment", "json-answer"} <= names
    assert len(names) == len(list((ROOT / "workbench" / "prompts").glob("*.prompty")))

    at.selectbox(key="preview_prompt").set_value("few-shot-translation").run()
    shown = [c.value for c in at.code]
    assert "Good morning" in shown and "Bonjour" in shown
    assert any(c.startswith("---\nname: few-shot-translation") for c in shown)


def test_home_shows_a_saved_version_and_its_note(app_env: Path) -> None:
    from workbench.workspace import open_library

    lib = open_library()
    v1 = lib.get("zero-shot-translation")
    edited = v1.file.canonical_text().replace("default: French", "default: German")
    assert edited != v1.file.canonical_text()
    saved = lib.save(edited, "German by default")
    assert saved.version.number == 2

    at = AppTest.from_file(str(APP), default_timeout=30).run()
    at.selectbox(key="preview_prompt").set_value("zero-shot-translation").run()
    assert at.selectbox(key="preview_version:zero-shot-translation").value == 2
    assert "German by default" in " ".join(c.value for c in at.caption)
    assert any("German" in c.value for c in at.code)


@pytest.fixture
def served(app_env: Path) -> Iterator[str]:
    with workbench_server(os.environ, app_env / "server.log") as url:
        yield url


def test_serve_answers_on_localhost_only(served: str) -> None:
    with urllib.request.urlopen(served, timeout=5) as response:
        assert response.status == 200
        assert b"<html" in response.read().lower()
    port = int(served.rsplit(":", 1)[1])
    addresses = {
        info[4][0]
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
        if not info[4][0].startswith("127.")
    }
    for address in addresses:  # the machine's other addresses must not answer
        with socket.socket() as s, pytest.raises(OSError):
            s.settimeout(1)
            s.connect((address, port))
