"""The first divergence of two answers to one row, on constructed pairs: a shared beginning then
different tokens, identical answers, one a prefix of the other, two tokenizers, no stored
log-probabilities; each side's probability for the other's token from its top k, or said to
be below it — never made up."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import make_output

from workbench import divergence
from workbench.divergence import Answer, first_divergence
from workbench.logprobs import TokenLogprobs
from workbench.wording import probability

EOS = 0
VOCAB = {EOS: "<eos>", 1: "The", 2: " film", 3: " was", 4: " great", 5: " awful", 6: " fine"}
VOCAB.update({7: ".", 8: " long", 9: "!"})


def record(tokens: Sequence[int], tops: Sequence[dict[int, float]] | None = None) -> TokenLogprobs:
    """Token log-probabilities: each token's probability and its step's alternatives (by
    default the token at 0.6 and two others)."""
    steps = list(tops) if tops is not None else [{t: 0.6, 8: 0.2, 9: 0.1} for t in tokens]
    top_ids, top_lps, lps = [], [], []
    for token, step in zip(tokens, steps, strict=True):
        ranked = sorted(step.items(), key=lambda kv: -kv[1])
        top_ids.append(tuple(t for t, _ in ranked))
        top_lps.append(tuple(math.log(p) for _, p in ranked))
        lps.append(math.log(step.get(token, 0.01)))
    return TokenLogprobs(tuple(tokens), tuple(lps), tuple(top_ids), tuple(top_lps), k=3)


def decode(ids: Sequence[int], *, in_sequence: bool = True) -> list[str]:
    return [VOCAB[i] for i in ids]


def answer(tokens: Sequence[int], tops: Any = None, *, finish: str = "eos", **kw: Any) -> Answer:
    """An answer of the toy tokenizer, its text and texts from VOCAB (EOS adds no text)."""
    text = "".join(VOCAB[t] for t in tokens if t != EOS)
    a = Answer(text, finish, kw.pop("tokenizer", "toy@1"), record(tokens, tops), **kw)
    return divergence.with_pieces(a, decode)


def test_a_shared_beginning_then_different_tokens() -> None:
    a = answer([1, 2, 3, 4, 7, EOS])
    b = answer(
        [1, 2, 3, 5, 7, EOS],
        [{1: 0.9}, {2: 0.9}, {3: 0.9}, {5: 0.5, 4: 0.3, 6: 0.1}, {7: 0.9}, {EOS: 0.9}],
    )
    d = first_divergence(a, b)
    assert d.kind == "token" and d.by == "ids"
    assert d.token == 4 == divergence.diverges_at(a, b)
    assert d.before == "The film was"
    assert d.sides is not None
    first, second = d.sides
    assert (first.text, second.text) == (" great", " awful")
    assert (first.token_id, second.token_id) == (4, 5)
    assert first.probability == pytest.approx(0.6)
    assert second.probability == pytest.approx(0.5)
    assert [(x.text, round(x.probability, 6)) for x in second.alternatives] == [
        (" awful", 0.5),
        (" great", 0.3),
        (" fine", 0.1),
    ]
    # the second gave the first's " great" 30% (in its top k); the first's top k has no " awful"
    assert second.other == pytest.approx(0.3)
    assert first.other is None and first.other_note == "below its top 3"
    assert divergence.other_label(first) == "below its top 3"
    assert divergence.other_label(second) == "30.0%"
    assert divergence.summary(d) == "they part at token 4"


def test_identical_answers_do_not_diverge() -> None:
    a, b = answer([1, 2, 3, 4, EOS]), answer([1, 2, 3, 4, EOS])
    d = first_divergence(a, b)
    assert d.kind == "same" and d.sides is None and d.token is None
    assert divergence.diverges_at(a, b) is None
    assert divergence.summary(d) == "no divergence: the two answers are the same"


def test_a_prefix_parts_at_the_end_of_the_shorter_eos_against_going_on() -> None:
    short, long = answer([1, 2, EOS]), answer([1, 2, 3, 6, EOS])
    d = first_divergence(short, long)
    assert d.token == 3 and d.before == "The film"
    assert d.sides is not None
    ended, going = d.sides
    assert ended.ends and ended.token_id == EOS and ended.text == "<eos>"
    assert divergence.token_label(ended) == "'<eos>' (end of the answer)"
    assert not going.ends and going.text == " was"
    assert ended.other is None and ended.other_note == "below its top 3"


def test_an_answer_cut_by_its_token_limit_has_no_token_where_the_other_goes_on() -> None:
    cut, long = answer([1, 2], finish="length"), answer([1, 2, 3, EOS])
    d = first_divergence(cut, long)
    assert d.token == 3
    assert d.sides is not None
    stopped, going = d.sides
    assert stopped.token_id is None and stopped.ends
    assert stopped.stop == "reached its token limit"
    assert divergence.token_label(stopped) == "(nothing: it reached its token limit)"
    assert stopped.other is None and stopped.other_note == "it had stopped before this token"
    assert going.other is None and going.other_note == "the other answer has no token here"


def test_cross_probabilities_come_from_the_top_k_or_are_said_to_be_below_it() -> None:
    tops = [{1: 0.9}, {2: 0.7, 6: 0.2, 3: 0.05}]
    a = answer([1, 2, EOS], [*tops, {EOS: 1.0}])
    b = answer([1, 6, EOS], [{1: 0.9}, {6: 0.4, 9: 0.35, 8: 0.2}, {EOS: 1.0}])
    d = first_divergence(a, b)
    assert d.sides is not None
    assert d.sides[0].other == pytest.approx(0.2)  # a gave " fine" 20%
    assert d.sides[1].other is None  # b's top 3 has no " film": not a guessed number
    assert d.sides[1].other_note == "below its top 3"


def test_ids_are_compared_without_any_token_text() -> None:
    a = Answer("x", "eos", "toy@1", record([1, 2, EOS]))
    b = Answer("y", "eos", "toy@1", record([1, 3, EOS]))
    d = first_divergence(a, b)
    assert d.token == 2 and d.before is None
    assert d.sides is not None and d.sides[0].text is None
    assert divergence.token_label(d.sides[0]) == "token id 2"


# --- two tokenizers: tokens matched by their texts -------------------------------------------
OTHER = {EOS: "</s>", 1: "The f", 2: "ilm", 3: " was", 4: " gr", 5: "eat", 6: " awful"}
OTHER.update({8: " long", 9: "?"})


def other_decode(ids: Sequence[int], *, in_sequence: bool = True) -> list[str]:
    return [OTHER[i] for i in ids]


def other_answer(tokens: Sequence[int], *, finish: str = "eos") -> Answer:
    text = "".join(OTHER[t] for t in tokens if t != EOS)
    a = Answer(text, finish, "other@2", record(tokens))
    return divergence.with_pieces(a, other_decode)


def test_two_tokenizers_are_compared_by_token_texts() -> None:
    a = answer([1, 2, 3, 4, EOS])  # "The" " film" " was" " great"
    b = other_answer([1, 2, 3, 6, EOS])  # "The f" "ilm" " was" " awful"
    assert divergence.needs_texts(a, b)
    d = first_divergence(a, b)
    assert d.kind == "token" and d.by == "texts"
    assert d.before == "The film was"
    assert d.sides is not None
    assert (d.sides[0].text, d.sides[1].text) == (" great", " awful")
    assert (d.sides[0].index, d.sides[1].index) == (3, 3)
    assert d.token == 4 == divergence.diverges_at(a, b)
    for side in d.sides:  # ids mean different things: no cross probability
        assert side.other is None and "not comparable" in side.other_note
    assert any("different tokenizers" in n for n in d.notes)


def test_two_tokenizers_that_spell_the_same_text_differently_agree() -> None:
    a = answer([1, 2, 3, 4, EOS])  # " great"
    b = other_answer([1, 2, 3, 4, 5, EOS])  # " gr" "eat"
    assert first_divergence(a, b).kind == "same"
    assert divergence.diverges_at(a, b) is None


def test_two_tokenizers_part_inside_a_token_the_shared_text_stops_before_both() -> None:
    a = answer([1, 2, 3, 4, EOS])  # ... " great"
    b = other_answer([1, 2, 3, 4, 6, EOS])  # ... " gr" " awful": parts after " gr"
    d = first_divergence(a, b)
    assert d.sides is not None
    assert d.before == "The film was"
    assert (d.sides[0].text, d.sides[0].lead) == (" great", "")
    assert (d.sides[1].text, d.sides[1].lead) == (" awful", " gr")
    assert d.token == 5


def test_two_tokenizers_one_a_prefix_of_the_other() -> None:
    d = first_divergence(answer([1, 2, EOS]), other_answer([1, 2, 3, EOS]))
    assert d.sides is not None
    assert d.sides[0].ends and d.sides[0].text == "<eos>"
    assert d.sides[1].text == " was"


def test_two_tokenizers_without_texts_fall_back_to_characters() -> None:
    a = answer([1, 2, EOS])
    b = Answer("The fish", "eos", "other@2", record([1, 2, EOS]))  # no tokenizer at hand
    d = first_divergence(a, b)
    assert d.kind == "text" and d.char == 6 and d.before == "The fi"
    assert "token texts unknown" in d.notes[0]
    assert divergence.diverges_at(a, b) is None


def test_a_server_s_tokens_of_one_model_compare_by_text_with_cross_probabilities() -> None:
    """A server's ids are not compared, but one model's texts are: the cross probability is
    looked up by text among the alternatives."""
    a = answer([1, 2, 3, 4, EOS], ids_comparable=False)
    b = answer([1, 2, 3, 5, EOS], ids_comparable=False)
    d = first_divergence(a, b)
    assert d.by == "texts" and d.token == 4
    assert d.sides is not None
    assert d.sides[0].other is None and d.sides[0].other_note == "below its top 3"
    assert not any("different tokenizers" in n for n in d.notes)


# --- no stored log-probabilities ----------------------------------------------------------------
@pytest.mark.parametrize("which", [0, 1])
def test_without_stored_probabilities_the_first_differing_character(which: int) -> None:
    pair = [answer([1, 2, 3, 4, EOS]), answer([1, 2, 3, 5, EOS])]
    pair[which] = Answer(pair[which].text, "eos", "toy@1")
    d = first_divergence(*pair)
    assert d.kind == "text" and d.by == "characters" and d.sides is None
    assert d.before == "The film was " and d.char == 13
    assert d.token is None and divergence.diverges_at(*pair) is None
    assert "no stored token probabilities" in d.notes[0]
    assert "without probabilities" in d.notes[0]
    assert divergence.summary(d) == "they part at character 14"


def test_without_stored_probabilities_identical_texts_do_not_diverge() -> None:
    d = first_divergence(Answer("same"), Answer("same"))
    assert d.kind == "same"


def test_processors_that_shaped_the_distribution_are_named() -> None:
    a = answer([1, 2, EOS])
    b = Answer(
        a.text + "x",
        "eos",
        "toy@1",
        TokenLogprobs(
            (1, 3, EOS), (0.0,) * 3, ((),) * 3, ((),) * 3, 0, processors=("temperature",)
        ),
    )
    d = first_divergence(a, b)
    assert any("after temperature" in n for n in d.notes)


# --- from stored outputs --------------------------------------------------------------------
def test_an_output_s_tokenizer_is_its_model_and_revision() -> None:
    local = make_output("x", model="m", revision="r1")
    server = make_output("x", model="openai:m@http://h", revision="r1", backend="openai")
    a, b = divergence.answer_of(local, record([1])), divergence.answer_of(server, record([1]))
    assert a.tokenizer == "m@r1" and a.ids_comparable
    assert not b.ids_comparable
    assert divergence.answer_of(local, None).logprobs is None


def test_percentages_read_as_people_read_them() -> None:
    assert [probability(p) for p in (0.42, 0.0031, 0.00001, 0.0)] == [
        "42.0%",
        "0.31%",
        "<0.01%",
        "0% (cut)",  # after top-k or top-p: what the sampler could not draw
    ]


@dataclass(frozen=True)
class WithTexts(TokenLogprobs):
    """A record that carries its tokens' texts, as a server's (WLP2) does."""

    texts: tuple[str, ...] | None = None
    top_texts: tuple[tuple[str, ...], ...] | None = None


def test_stored_token_texts_are_used_without_a_tokenizer() -> None:
    """A server's outputs: ids not compared, the stored texts are, with cross probabilities
    looked up by text among one model's alternatives."""

    def server(tokens: list[int], text: str) -> Answer:
        base = record(tokens)
        stored = WithTexts(
            *(base.tokens, base.logprobs, base.top_ids, base.top_logprobs, base.k),
            texts=tuple(VOCAB[t] for t in tokens),
            top_texts=tuple(tuple(VOCAB[t] for t in step) for step in base.top_ids),
        )
        out = make_output(text, model="openai:m@http://h", revision="", backend="openai")
        return divergence.answer_of(out, stored)

    a, b = server([1, 2, 4, EOS], "The film great"), server([1, 2, 8, EOS], "The film long")
    assert a.pieces == ("The", " film", " great", "<eos>") and a.top_pieces is not None
    d = first_divergence(a, b)
    assert d.by == "texts" and d.token == 3 and d.before == "The film"
    assert d.sides is not None
    assert d.sides[0].other == pytest.approx(0.2)  # " long" is among a's alternatives
    assert [x.text for x in d.sides[1].alternatives] == [" long", "!"]


# --- two tokenizers, long answers: decoding only as far as needed --------------------------------
def _tiny_answer(backend: Any, text: str, tokenizer: str) -> Answer:
    ids = backend.tokenizer.encode(text, add_special_tokens=False)
    steps = len(ids)
    lp = TokenLogprobs(tuple(ids), (0.0,) * steps, ((),) * steps, ((),) * steps, 0)
    return Answer(text, "length", tokenizer, lp)


LONG = "The quick brown fox jumps over the lazy dog; 日本語 café ✓ " * 12


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (LONG, LONG),
        (LONG, LONG + " and more"),
        ("Positive", "Negative" + LONG),
        (LONG[:40] + "X" + LONG, LONG[:40] + "Y" + LONG),
        (LONG[:300] + "日" + LONG, LONG[:300] + "本" + LONG),
        (LONG[:500] + "café", LONG[:500] + "cafe"),
    ],
)
def test_decoding_as_far_as_needed_finds_the_same_token(
    tiny_backend: Any, left: str, right: str
) -> None:
    a, b = _tiny_answer(tiny_backend, left, "one@1"), _tiny_answer(tiny_backend, right, "two@1")
    decoded: list[int] = []

    def counting(ids: Sequence[int], *, in_sequence: bool = True) -> list[str]:
        decoded.append(len(ids))
        return list(tiny_backend.token_pieces(ids, in_sequence=in_sequence))

    full = divergence.diverges_at(
        divergence.with_pieces(a, tiny_backend.token_pieces, alternatives=False),
        divergence.with_pieces(b, tiny_backend.token_pieces, alternatives=False),
    )
    assert divergence.diverges_at_decoding(a, b, counting, counting) == full
    if left.startswith("Positive"):  # they part at once: a few tokens decoded, not hundreds
        assert full == 1 and max(decoded) <= 16


def test_a_token_that_is_part_of_a_character_says_so() -> None:
    side = divergence.Side(2, 77, "", 0.5, False, None, (), None, "")
    assert divergence.token_label(side) == (
        "'' (token id 77: part of a character the next token completes)"
    )
