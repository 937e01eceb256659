"""Compare page: "diverges at token N" under each compared answer, sorting by it, and the row
detail showing where the answers part — on the tiny model, without loading its weights."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from conftest import app_test, shown
from sqlalchemy import update

from workbench.backends import local
from workbench.runner import Runner, RunSummary
from workbench.runs import token_logprobs
from workbench.store import Output
from workbench.workspace import open_library

PAGE = "pages/3_Compare.py"
PROMPT = "zero-shot-sentiment-chat"
TEXTS = ["good", "bad", "meh", "a fine film", "not for me", "ok"]


def _stored_pair(tiny_backend: Any) -> tuple[RunSummary, RunSummary]:
    """v1 and v2 of one prompt over the same rows, stored with their token probabilities."""
    lib = open_library()
    text = lib.get(PROMPT).file.canonical_text()
    lib.save(text.replace("Sentiment", "Feeling", 1), "v2")
    runner = Runner(lib, tiny_backend)
    rows = [{"text": t} for t in TEXTS]
    first = runner.run([lib.get(f"{PROMPT}@1")], rows, overrides={"max_new_tokens": 6})
    second = runner.run([lib.get(f"{PROMPT}@2")], rows, overrides={"max_new_tokens": 6})
    return first, second


def _expected(first: RunSummary, second: RunSummary) -> dict[str, int | None]:
    """By row text, where v2's stored tokens first differ from v1's (from 1)."""
    store = open_library().store
    stored = token_logprobs(store, [o.id for o in first.outputs + second.outputs])
    by_text = {o.variables["text"]: o for o in second.outputs}
    out: dict[str, int | None] = {}
    for o in first.outputs:
        a, b = stored[o.id].tokens, stored[by_text[o.variables["text"]].id].tokens
        i = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
        if i is None and len(a) != len(b):
            i = min(len(a), len(b))
        out[o.variables["text"]] = None if i is None else i + 1
    return out


def _open(first: RunSummary, second: RunSummary) -> Any:
    at = app_test(PAGE).run()
    at.radio(key="cmp_mode").set_value("Stored runs").run()
    at.multiselect(key="cmp_runs").set_value([first.run.id, second.run.id]).run()
    at.button(key="cmp_stored").click().run()
    assert not at.exception, at.exception
    return at


def _rows(at: Any) -> list[tuple[int, int | None]]:
    """(row number, the token shown under its compared answer) in the order drawn."""
    rows: list[tuple[int, int | None]] = []
    for caption in at.caption:
        value = shown(caption.value)
        if m := re.fullmatch(r"row (\d+)", value):
            rows.append((int(m.group(1)), None))
        elif m := re.fullmatch(r"diverges at token (\d+)", value):
            rows[-1] = (rows[-1][0], int(m.group(1)))
    return rows


@pytest.fixture
def fresh_backends(monkeypatch: pytest.MonkeyPatch) -> dict[Any, Any]:
    """The process's loaded backends, emptied for the test: what the page opens is new."""
    opened: dict[Any, Any] = {}
    monkeypatch.setattr(local, "_loaded", opened)
    return opened


def test_each_compared_answer_shows_where_it_parts(app_env: Path, tiny_backend: Any) -> None:
    first, second = _stored_pair(tiny_backend)
    expected = _expected(first, second)
    assert any(n is not None for n in expected.values())
    at = _open(first, second)
    drawn = _rows(at)
    assert [n for n, _ in drawn] == list(range(1, len(TEXTS) + 1))
    assert [token for _, token in drawn] == [expected[t] for t in TEXTS]


@pytest.mark.parametrize(("order", "reverse"), [("earliest first", False), ("latest first", True)])
def test_rows_sort_by_where_they_part(
    app_env: Path, tiny_backend: Any, order: str, reverse: bool
) -> None:
    first, second = _stored_pair(tiny_backend)
    expected = _expected(first, second)
    at = _open(first, second)
    at.selectbox(key="cmp_parts").set_value(order).run()
    assert not at.exception, at.exception
    tokens = [token for _, token in _rows(at)]
    parted = [t for t in tokens if t is not None]
    assert parted == sorted(parted, reverse=reverse)
    assert tokens == parted + [None] * (len(tokens) - len(parted))  # not parting: last
    assert sorted(parted) == sorted(n for n in expected.values() if n is not None)


def test_the_row_detail_shows_the_tokens_and_loads_no_weights(
    app_env: Path, tiny_backend: Any, fresh_backends: dict[Any, Any]
) -> None:
    first, second = _stored_pair(tiny_backend)
    expected = _expected(first, second)
    at = _open(first, second)
    assert not fresh_backends or not any(b.loaded for b in fresh_backends.values())
    row = next(i for i, t in enumerate(TEXTS) if expected[t] is not None)
    at.button(key=f"cmp_parts_open:{row}").click().run()
    assert not at.exception, at.exception
    lines = [shown(m.value) for m in at.markdown]
    assert any(f"they part at token {expected[TEXTS[row]]}" in line for line in lines), lines
    table = at.dataframe[0].value
    assert list(table["answer"]) == ["baseline", "column 2"]
    assert {"token there", "its probability", "probability of the other's token"} <= set(
        table.columns
    )
    others = list(table["probability of the other's token"])
    assert all(v.endswith("%") or v.startswith("below its top") or "no token" in v for v in others)
    # the token texts came from the model's tokenizer; its weights were never loaded
    assert fresh_backends, "the page opened the model's backend for its tokenizer"
    (backend,) = fresh_backends.values()
    assert backend._tokenizer is not None and not backend.loaded
    pieces = backend.token_pieces
    store = open_library().store
    base = next(o for o in first.outputs if o.variables["text"] == TEXTS[row])
    tokens = token_logprobs(store, [base.id])[base.id].tokens
    i = (expected[TEXTS[row]] or 0) - 1
    before = "".join(pieces(tokens)[:i]) or "(nothing: they part at the first token)"
    assert before in [c.value for c in at.code]
    # the same button closes it
    at.button(key=f"cmp_parts_open:{row}").click().run()
    assert not at.dataframe


def test_outputs_without_probabilities_part_at_a_character_shown_as_text(
    app_env: Path, tiny_backend: Any
) -> None:
    first, second = _stored_pair(tiny_backend)
    store = open_library().store
    with store.write() as s:  # as if stored before token probabilities were recorded
        s.execute(
            update(Output)
            .where(Output.run_id == second.run.id)
            .values(token_logprobs=None, text="**bold** <b>x</b> then B")
        )
        s.execute(
            update(Output)
            .where(Output.run_id == first.run.id)
            .values(text="**bold** <b>x</b> then A")
        )
    at = _open(first, second)
    assert not [t for _, t in _rows(at) if t is not None]  # no token to name: blank
    at.button(key="cmp_parts_open:0").click().run()
    assert not at.exception, at.exception
    lines = [shown(m.value) for m in at.markdown]
    assert any("they part at character 24" in line for line in lines), lines
    notes = [shown(c.value) for c in at.caption]
    assert any("no stored token probabilities" in n and "without probabilities" in n for n in notes)
    assert "**bold** <b>x</b> then " in [c.value for c in at.code]  # text: no Markdown, no HTML
    assert not at.dataframe


def test_with_three_columns_the_sort_picks_its_column(app_env: Path, tiny_backend: Any) -> None:
    first, second = _stored_pair(tiny_backend)
    lib = open_library()
    rows = [{"text": t} for t in TEXTS]
    third = Runner(lib, tiny_backend).run(
        [lib.get(f"{PROMPT}@1")], rows, overrides={"max_new_tokens": 6, "temperature": 1.0}
    )
    at = app_test(PAGE).run()
    at.radio(key="cmp_mode").set_value("Stored runs").run()
    at.multiselect(key="cmp_runs").set_value([first.run.id, second.run.id, third.run.id]).run()
    at.button(key="cmp_stored").click().run()
    assert not at.exception, at.exception
    assert at.selectbox(key="cmp_parts_column").options == [
        "any (earliest)",
        "column 2",
        "column 3",
    ]
    found = at.session_state["cmp_parts_found"][1]
    for column in (1, 2):
        at.selectbox(key="cmp_parts").set_value("earliest first").run()
        at.selectbox(key="cmp_parts_column").set_value(column).run()
        assert not at.exception, at.exception
        order = [n for n, _ in _rows(at)]
        values = [found[n - 1][column] for n in order]
        parted = [v for v in values if v is not None]
        assert values == sorted(parted) + [None] * (len(values) - len(parted))
