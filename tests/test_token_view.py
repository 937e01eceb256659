"""The token view's values and HTML: steps built from log-probabilities and a small `Pieces`
input (a tokenizer's or a server's texts), whitespace made visible, every text escaped."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace
from typing import Any

import pytest

from workbench.app.token_html import shade, tip_text, token_html
from workbench.logprobs import TokenLogprobs
from workbench.token_view import (
    Pieces,
    decoded_pieces,
    distribution_text,
    stored_pieces,
    token_steps,
    visible,
)
from workbench.wording import probability as percent

RECORD = TokenLogprobs(
    tokens=(5, 9),
    logprobs=(math.log(0.6), float("-inf")),
    top_ids=((5, 6, -1), (8, 9, -1)),  # a vocabulary smaller than k pads with -1
    top_logprobs=((math.log(0.6), math.log(0.3), float("-inf")), (0.0, float("-inf"), -1e30)),
    k=3,
    processors=("temperature", "top_p"),
)
PIECES = Pieces(["<b>", "\n x"], [["<b>", "&amp;"], ["y", "\n x"]])


def test_steps_pair_each_token_with_its_texts_and_alternatives() -> None:
    first, second = token_steps(RECORD, PIECES)
    assert (first.position, first.token_id, first.text) == (0, 5, "<b>")
    assert first.prob == pytest.approx(0.6) and first.rank == 1
    assert [(a.token_id, a.text) for a in first.alternatives] == [(5, "<b>"), (6, "&amp;")]
    assert second.prob == 0.0 and second.rank == 2  # cut by top-p: -inf, probability 0
    assert second.alternatives[0].prob == 1.0


def test_shorter_pieces_leave_texts_empty_rather_than_fail() -> None:
    steps = token_steps(RECORD, Pieces(["a"], []))
    assert [s.text for s in steps] == ["a", ""]
    assert all(a.text == "" for s in steps for a in s.alternatives)


@pytest.mark.parametrize(
    ("text", "shown"),
    [(" a", "·a"), ("\n", "↵"), ("\t\r", "⇥␍"), ("", "∅"), ("plain", "plain")],
)
def test_whitespace_is_visible(text: str, shown: str) -> None:
    assert visible(text) == shown


def test_html_escapes_every_text_and_marks_line_breaks() -> None:
    body = token_html(token_steps(RECORD, PIECES))
    assert "<b>" not in body and "&amp;amp;" in body and "&lt;b&gt;" in body
    assert '<span class="wb-ws">↵</span>\n' in body  # the break is kept, and marked
    assert body.count('tabindex="0"') == 2  # focusable: a click shows the alternatives
    assert "Probability of each token" in body


def test_shade_is_clear_when_sure_and_strong_when_not() -> None:
    assert shade(1.0).endswith(" 0.0)")
    assert shade(0.0).endswith(" 0.75)")
    assert percent(1.0) == "100%" and percent(0.1234) == "12.3%" and percent(0.0) == "0% (cut)"


def test_tooltip_marks_the_chosen_token_among_the_alternatives() -> None:
    tip = tip_text(token_steps(RECORD, PIECES)[1])
    assert tip.splitlines()[0].startswith("token 1: '↵·x'")
    assert " → '↵·x'  0% (cut)" in tip


def test_a_servers_stored_texts_are_used_when_present() -> None:
    assert stored_pieces(RECORD) is None  # WLP1 holds ids only
    # WLP2 (the server engineer's) adds `texts` and `top_texts`; read by name, so both fit
    with_texts: Any = SimpleNamespace(texts=("a", "b"), top_texts=(("a", "c"), ("d", "b")))
    pieces = stored_pieces(with_texts)
    assert pieces is not None and list(pieces.tokens) == ["a", "b"]
    assert [list(p) for p in pieces.alternatives] == [["a", "c"], ["d", "b"]]


def test_a_local_model_decodes_the_ids(tiny_backend: Any) -> None:
    ids = tiny_backend.token_ids("Hello there,\nfriend")
    record = TokenLogprobs(
        tuple(ids),
        tuple(-1.0 for _ in ids),
        tuple((t, 3) for t in ids),
        tuple((-1.0, -2.0) for _ in ids),
    )
    pieces = decoded_pieces(record, tiny_backend)
    assert "".join(pieces.tokens) == "Hello there,\nfriend"
    assert [a[1] for a in pieces.alternatives] == [
        tiny_backend.token_pieces([3], in_sequence=False)[0]
    ] * len(ids)


def test_the_distribution_is_named() -> None:
    assert "temperature, top-p" in distribution_text(RECORD)
    assert "own probabilities" in distribution_text(dataclasses.replace(RECORD, processors=()))


def test_a_servers_record_names_tokens_by_text_and_pads_with_empty_ones() -> None:
    """WLP2 (a server's): ids unknown (-1), alternatives padded to k with "" at -inf."""
    unknown = -1
    record: Any = SimpleNamespace(
        tokens=(unknown, unknown),
        logprobs=(math.log(0.5), math.log(0.9)),
        top_ids=((unknown,) * 3, (unknown,) * 3),
        top_logprobs=(
            (math.log(0.5), math.log(0.4), float("-inf")),
            (math.log(0.9), float("-inf"), float("-inf")),
        ),
    )
    pieces = Pieces(["Hi", "!"], [["Hi", "Hello", ""], ["!", "", ""]])
    first, second = token_steps(record, pieces)
    assert [a.text for a in first.alternatives] == ["Hi", "Hello"]
    assert [a.text for a in second.alternatives] == ["!"]
    assert first.rank == 1 and second.rank == 1
    tip = tip_text(first)
    assert " → 'Hi'" in tip and "   'Hello'" in tip  # only the chosen one is marked
