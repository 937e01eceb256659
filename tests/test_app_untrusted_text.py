"""Text the workbench did not write — version notes, a server's error messages and model ids,
uploaded file names, stored errors — is shown as text on every page, never as Markdown: an
image in it must not make the browser fetch its address, and links and emphasis must not render.

Each test puts one hostile string where a person or a server could put it, opens the page as a
person would, and reads the Markdown bodies Streamlit sends to the browser: the string is there
with every special character escaped, and none of its markup is there unescaped. The browser
half (no request reaches the address at all) is in tests/test_browser.py.
"""

from __future__ import annotations

import html
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import app_test, shown
from markdown_it import MarkdownIt
from sqlalchemy import update

from workbench import jobs
from workbench.app.ui import escape_markdown, widget_label
from workbench.runner import Runner
from workbench.store import Output, Run
from workbench.workspace import open_library

HOSTILE = "![x](http://127.0.0.1:9/track.png) **hostile** [link](http://127.0.0.1:9/) <b>b</b>"
# Pieces of HOSTILE that would render if it reached a Markdown element unescaped.
MARKUP = ("![x]", "](http", "**hostile**", "[link]", "<b>")

# What Streamlit's Markdown (GitHub's autolink literals) makes into links, as it finds them.
ADDRESS = re.compile(r"(?:https?://|www(?=\.))[^ \t\r\n]*|[-.\w+]+@[-\w]+(?:\.[-\w]+)+", re.I)

# Elements whose text Streamlit renders as Markdown: these fields, on any element but these.
MARKDOWN_FIELDS = ("body", "label", "text")
PLAIN_ELEMENTS = {"text", "code", "json"}


def markdown_bodies(at: Any) -> list[str]:
    """Every Markdown body, label and progress text on the page, main area and sidebar."""
    found: list[str] = []

    def walk(node: Any) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None and getattr(node, "type", "") not in PLAIN_ELEMENTS:
            fields = proto.DESCRIPTOR.fields_by_name
            found.extend(
                value
                for name in MARKDOWN_FIELDS
                if name in fields and isinstance(value := getattr(proto, name), str) and value
            )
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return found


def assert_shown_as_text(at: Any, raw: str = HOSTILE) -> None:
    bodies = markdown_bodies(at)
    leaked = [b for b in bodies if any(piece in b for piece in MARKUP)]
    assert not leaked, leaked
    assert any(escape_markdown(raw) in b for b in bodies), bodies


# --- the helper itself -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        HOSTILE,
        "<http://127.0.0.1:9/autolink> www.example.com HTTP://127.0.0.1:9/bare a@b.example",
        "# heading\n> quote\n1. list\n- item\n| a | b |\n|---|---|\n`code` ~~strike~~",
        "&lt;img src=x&gt; &#60;b&#62; &amp;",
        "$x^2$ :red[colour] :material/home: \\*already\\* _under_ [ref]: http://127.0.0.1:9/",
        "a `tick` then `http://127.0.0.1:9/`` and ``x``",
        "line one\nline two",
    ],
)
def test_escaped_markdown_renders_as_exactly_the_text(raw: str) -> None:
    """A CommonMark renderer (with GitHub's tables and strikethrough) turns the escaped text
    into one paragraph holding exactly the raw characters: no image, link, emphasis or tag;
    web and e-mail addresses sit in code spans (Streamlit would link them, escaped or not)."""
    rendered = (
        MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(escape_markdown(raw))
    )
    tags = set(re.findall(r"</?([a-z0-9]+)", rendered))
    assert tags <= {"p", "br", "code"}, rendered
    text = re.sub(r"</?(p|code)>", "", rendered.replace("<br />\n", "\n")).removesuffix("\n")
    assert html.unescape(text) == raw
    assert shown(escape_markdown(raw)) == raw  # what the tests read back as the shown text
    codes = re.findall(r"<code>(.*?)</code>", rendered)
    for address in ADDRESS.finditer(raw):  # Streamlit would make these links: code spans
        assert any(html.escape(address.group(), quote=False) in code for code in codes), rendered


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("text", "text"),
        ("target_language", "target_language"),  # also the field's accessible name: as is
        ("a__b2", "a__b2"),
        ("__x__", "\\_\\_x\\_\\_"),  # would be bold
        ("_x", "\\_x"),
    ],
)
def test_a_variables_label_is_escaped_only_when_it_could_be_markdown(name: str, label: str) -> None:
    assert widget_label(name) == label
    assert shown(widget_label(name)) == name


def test_variable_fields_are_labelled_with_their_plain_names(app_env: Path) -> None:
    at = app_test("pages/1_Compose.py").run()
    at.selectbox(key="compose_prompt").set_value("zero-shot-translation").run()
    assert not at.exception, at.exception
    labels = {a.label for a in at.text_area}
    assert {"text", "target_language"} <= labels, labels


# --- notes: Home and Compose -------------------------------------------------------------------


def _save_hostile_note(prompt: str) -> int:
    lib = open_library()
    text = lib.get(prompt).file.canonical_text().replace("user:", "user:\nPlease:", 1)
    return lib.save(text, HOSTILE).version.number


def test_home_shows_a_version_note_as_text(app_env: Path) -> None:
    number = _save_hostile_note("zero-shot-translation")
    at = app_test("Home.py").run()
    at.selectbox(key="preview_prompt").set_value("zero-shot-translation").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="preview_version:zero-shot-translation").value == number
    assert_shown_as_text(at)


def test_compose_shows_a_version_note_as_text(app_env: Path) -> None:
    _save_hostile_note("zero-shot-translation")
    at = app_test("pages/1_Compose.py").run()
    at.selectbox(key="compose_prompt").set_value("zero-shot-translation").run()
    assert not at.exception, at.exception
    assert_shown_as_text(at)


# --- a server's model id and error messages ----------------------------------------------------


class HostileServer:
    """An OpenAI-compatible server whose only model has a hostile id, and which answers a
    generation with one word, or refuses it with a hostile error message."""

    def __init__(self) -> None:
        self.refuse = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/v1/models":
                    models = {"data": [{"id": HOSTILE, "max_model_len": 512}]}
                    self._send(200, json.dumps(models).encode())
                else:
                    self._send(404, b"{}")

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                if not self.path.endswith("/completions"):
                    self._send(404, b"{}")
                elif outer.refuse:
                    self._send(400, json.dumps({"error": {"message": HOSTILE}}).encode())
                elif body.get("stream"):
                    events = [
                        {"choices": [{"index": 0, "delta": {"content": "Bonjour"}}]},
                        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                        {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 1}},
                    ]
                    data = "".join(f"data: {json.dumps(e)}\n\n" for e in events)
                    self._send(200, (data + "data: [DONE]\n\n").encode(), "text/event-stream")
                else:
                    choice = {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": "Bonjour"},
                    }
                    usage = {"prompt_tokens": 5, "completion_tokens": 1}
                    self._send(200, json.dumps({"choices": [choice], "usage": usage}).encode())

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/v1"


@pytest.fixture
def hostile_server(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HostileServer]:
    """The app's default model is the hostile server's only model."""
    server = HostileServer()
    thread = threading.Thread(target=server.http.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("WORKBENCH_MODEL", "openai")
    monkeypatch.setenv("WORKBENCH_OPENAI_BASE_URL", server.url)
    try:
        yield server
    finally:
        server.http.shutdown()
        server.http.server_close()


def test_a_servers_model_id_is_text_in_the_sidebar_and_the_token_count(
    hostile_server: HostileServer,
) -> None:
    at = app_test("pages/1_Compose.py").run()
    at.selectbox(key="compose_prompt").set_value("zero-shot-translation").run()
    at.button(key="compose_count").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert_shown_as_text(at)  # the token count names the model
    at.run()  # the sidebar describes a model once it is open
    sidebar = [c.value for c in at.sidebar.caption]
    assert any(escape_markdown(HOSTILE) in c for c in sidebar), sidebar
    assert_shown_as_text(at)


def answer(at: Any) -> None:
    """Click Run on the Playground and wait for its background answer."""
    from workbench import jobs

    at.button(key="play_run").click().run()
    assert not at.exception, at.exception
    job = jobs.get_job(at.session_state["play_single_job"])
    assert job is not None and job.wait(60)
    at.run()


def test_a_servers_error_message_is_text(hostile_server: HostileServer) -> None:
    hostile_server.refuse = True
    at = app_test("pages/2_Playground.py").run()
    at.selectbox(key="play_prompt").set_value("zero-shot-translation").run()
    answer(at)
    assert not at.exception, at.exception
    assert at.error and "refused the request" in at.error[0].value
    assert_shown_as_text(at)


def test_the_playground_names_a_servers_model_as_text(hostile_server: HostileServer) -> None:
    at = app_test("pages/2_Playground.py").run()
    at.selectbox(key="play_prompt").set_value("zero-shot-translation").run()
    answer(at)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert "Bonjour" in [c.value for c in at.code]
    assert_shown_as_text(at)


# --- stored runs: History and Compare ----------------------------------------------------------


@pytest.fixture
def hostile_run(app_env: Path, tiny_backend: Any) -> int:
    """A stored run whose model (as a server named it) and whose output's error are hostile."""
    lib = open_library()
    summary = Runner(lib, tiny_backend).run(
        [lib.get("zero-shot-sentiment")], [{"text": "fine"}], overrides={"max_new_tokens": 2}
    )
    with lib.store.write() as s:
        s.execute(update(Run).where(Run.id == summary.run.id).values(model=HOSTILE))
        s.execute(
            update(Output)
            .where(Output.run_id == summary.run.id)
            .values(model=HOSTILE, error=HOSTILE, text=None)
        )
    return summary.run.id


def test_history_shows_a_runs_model_and_error_as_text(hostile_run: int) -> None:
    at = app_test("pages/4_History.py").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="history:open").value == hostile_run
    assert any("This output failed" in e.value for e in at.error)
    assert_shown_as_text(at)


def test_compare_shows_a_stored_columns_model_and_error_as_text(hostile_run: int) -> None:
    at = app_test("pages/3_Compare.py").run()
    at.radio(key="cmp_mode").set_value("Stored runs").run()
    at.multiselect(key="cmp_runs").set_value([hostile_run]).run()
    at.button(key="cmp_stored").click().run()
    assert not at.exception, at.exception
    assert any(escape_markdown(HOSTILE) in e.value for e in at.error)
    assert_shown_as_text(at)
    at.toggle(key="cmp_charts").set_value(True).run()  # charts on demand
    # Plotly reads <b> and <a href> in labels: the charts' labels carry the model as entities.
    labels = [
        text for chart in at.get("plotly_chart") for text in strings(json.loads(chart.proto.spec))
    ]
    from_label = [t for t in labels if " · " in t]  # hover texts: the full column labels
    assert from_label and not [t for t in from_label if "<" in t or ">" in t], from_label
    assert any("&gt;" in t for t in from_label), from_label


def strings(value: Any) -> list[str]:
    """Every string in a JSON value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


# --- uploaded file names: Playground and Evaluate ----------------------------------------------

HOSTILE_FILE = "![x](track.png) **hostile** [link](http:x).csv"  # a browser sends no folders


def _upload(at: Any, key: str) -> Any:
    at.radio(key=f"{key}:source").set_value("Upload a file").run()
    at.file_uploader(key=f"{key}:file").set_value(
        [(HOSTILE_FILE, b"text,expected\nI love it,Positive\n", "text/csv")]
    ).run()
    assert not at.exception, at.exception
    return at


def test_the_playground_names_an_uploaded_file_as_text(app_env: Path) -> None:
    at = app_test("pages/2_Playground.py").run()
    at.selectbox(key="play_prompt").set_value("zero-shot-sentiment").run()
    _upload(at, "play_ds:zero-shot-sentiment@1")
    assert "1 row from" in " ".join(c.value for c in at.caption)
    assert_shown_as_text(at, HOSTILE_FILE)


def test_an_evaluation_report_names_its_uploaded_file_as_text(app_env: Path) -> None:
    at = app_test("pages/6_Evaluate.py").run()
    at.multiselect(key="eval_refs").set_value(["zero-shot-sentiment@1"]).run()
    _upload(at, "eval_rows")
    at.text_input(key="eval_params").set_value("max_new_tokens=2").run()
    at.text_area(key="eval_asserts").set_value("exact-match").run()
    at.button(key="eval_run").click().run()
    job = jobs.get_job(at.session_state["eval_job"])
    assert job is not None and job.wait(120) and job.error is None, job and job.error
    at.run()
    assert not at.exception, at.exception
    assert any("Report" in s.value for s in at.subheader)
    assert_shown_as_text(at, HOSTILE_FILE)
