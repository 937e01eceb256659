"""Where two answers to the same row part: the first token that differs, the text before it,
what each side had in mind there, and how likely each found the other's choice.

Two outputs of one row (two versions, two models, two seeds) often share a beginning and then
go separate ways; the token where they part, with each side's alternatives there, says more
about why than the two texts do. Everything is read from the token log-probabilities stored
with each output (`workbench.logprobs`): nothing is generated, no model is loaded.

How tokens are matched depends on what the ids mean:
- the same tokenizer (the same model and revision, a local backend): ids are compared, and each
  side's probability for the other's token comes from its stored top-k — or is "below the top
  k", never a made-up number;
- different tokenizers (two models), or ids that are not a tokenizer's (a server's): the token
  *texts* are compared (each answer's pieces, joined, are its text), so "Pos"+"itive" and
  "Positive" agree; probabilities of the other's token are not comparable across tokenizers
  and are not given;
- no stored log-probabilities on either side (a server that gave none, an output stored before
  they were recorded): the first differing character of the texts, with a note, and no
  probabilities.
An answer that is a prefix of the other parts at the end of the shorter: its end-of-sequence
token (or its stop: length, stop string) against the other's next token.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from .logprobs import TokenLogprobs
from .runs import OutputRecord
from .wording import probability

Kind = Literal["same", "token", "text"]
By = Literal["ids", "texts", "characters"]
NAMES = ("the baseline", "this output")
STOPS = {  # why an answer has no token where the other goes on
    "length": "reached its token limit",
    "stop": "stopped at a stop sequence",
    "cancelled": "was cancelled",
    "eos": "ended",
}


class Decoder(Protocol):
    """Token texts for ids, as `Backend.token_pieces` gives them: in sequence, each piece is
    what its token adds to the text (they join to the decoded text); otherwise each alone."""

    def __call__(self, ids: Sequence[int], *, in_sequence: bool = True) -> list[str]: ...


@dataclass(frozen=True)
class Answer:
    """One output as the finder reads it: its text and, when stored, its tokens.

    `tokenizer` names what the ids mean (model and revision); `ids_comparable` is False when
    the ids are not a tokenizer's own (a server's tokens are known by their texts). `pieces`
    are each generated token's text in sequence and `top_pieces` each step's alternatives'
    texts, from the stored record (WLP2) or the model's tokenizer; None when neither is at
    hand, and then only ids can be compared."""

    text: str
    finish_reason: str | None = None
    tokenizer: str = ""
    logprobs: TokenLogprobs | None = None
    pieces: tuple[str, ...] | None = None
    top_pieces: tuple[tuple[str, ...], ...] | None = None
    ids_comparable: bool = True


@dataclass(frozen=True)
class Alternative:
    token_id: int
    text: str | None  # None: the token's text is not known (no tokenizer at hand)
    probability: float


@dataclass(frozen=True)
class Side:
    """One answer at the point where the two part."""

    index: int  # this answer's own token position there (0-based)
    token_id: int | None  # None: the answer has no token there (it stopped before)
    text: str | None  # the token's text (None: no token, or its text is not known)
    probability: float | None  # the probability it gave its own token
    ends: bool  # the answer ends here: its token is end-of-sequence, or it stopped before it
    stop: str | None  # why it has no token here ("reached its token limit", …)
    alternatives: tuple[Alternative, ...]
    other: float | None  # the probability it gave the other answer's token there
    other_note: str  # how to read `other` when it is None ("below its top 5", …)
    lead: str = ""  # text of this answer between the shared text and its token (texts only)


@dataclass(frozen=True)
class Divergence:
    kind: Kind  # "same": no divergence; "token": found on tokens; "text": on characters
    by: By
    before: str | None  # the text both share before they part (None: token texts unknown)
    sides: tuple[Side, Side] | None  # (first, second) at the point they part; kind "token"
    char: int | None = None  # characters shared, when compared on characters
    notes: tuple[str, ...] = ()

    @property
    def token(self) -> int | None:
        """The position (from 1) of the second answer's token where they part, if on tokens."""
        return self.sides[1].index + 1 if self.kind == "token" and self.sides else None


# --- building answers -----------------------------------------------------------------------
def tokenizer_of(output: OutputRecord) -> str:
    """What an output's token ids mean: its model at its revision."""
    return f"{output.model}@{output.revision}"


def answer_of(output: OutputRecord, logprobs: TokenLogprobs | None) -> Answer:
    """An output with its stored token log-probabilities (and their texts, when stored)."""
    answer = Answer(
        text=output.text or "",
        finish_reason=output.finish_reason,
        tokenizer=tokenizer_of(output),
        logprobs=logprobs,
        ids_comparable=output.backend == "transformers",
    )
    if logprobs is None:
        return answer
    texts = getattr(logprobs, "texts", None)  # stored token texts (WLP2): a server's tokens
    top_texts = getattr(logprobs, "top_texts", None)
    if texts is not None and len(texts) == len(logprobs):
        answer = replace(answer, pieces=tuple(texts))
        if top_texts is not None and len(top_texts) == len(logprobs):
            answer = replace(answer, top_pieces=tuple(tuple(t) for t in top_texts))
    return answer


def with_pieces(answer: Answer, decoder: Decoder | None, *, alternatives: bool = True) -> Answer:
    """The answer with its token texts from its tokenizer, unless it has them (or there is no
    tokenizer). `alternatives`: the alternatives' texts too (the detail view; the grid's
    column needs only the answer's own)."""
    lp = answer.logprobs
    if lp is None or decoder is None:
        return answer
    if answer.pieces is None:
        answer = replace(answer, pieces=tuple(decoder(lp.tokens)))
    if alternatives and answer.top_pieces is None:
        flat = list(dict.fromkeys(t for step in lp.top_ids for t in step if t >= 0))
        texts = dict(zip(flat, decoder(flat, in_sequence=False), strict=True)) if flat else {}
        answer = replace(
            answer, top_pieces=tuple(tuple(texts.get(t, "") for t in step) for step in lp.top_ids)
        )
    return answer


def compares_ids(a: Answer, b: Answer) -> bool:
    """Whether the two answers' token ids mean the same tokens."""
    return a.ids_comparable and b.ids_comparable and a.tokenizer == b.tokenizer


def needs_texts(a: Answer, b: Answer) -> bool:
    """Whether finding where they part needs token texts (different tokenizers)."""
    return a.logprobs is not None and b.logprobs is not None and not compares_ids(a, b)


# --- finding it ------------------------------------------------------------------------------
def diverges_at(a: Answer, b: Answer) -> int | None:
    """The position (from 1) of b's token where it parts from a; None when they do not part
    or cannot be compared token by token (no stored log-probabilities, texts unknown). Cheap:
    what the grid's sortable column holds for every row."""
    if a.logprobs is None or b.logprobs is None:
        return None
    if compares_ids(a, b):
        ta, tb = a.logprobs.tokens, b.logprobs.tokens
        i = _common(ta, tb)
        return None if i == len(ta) == len(tb) else i + 1
    split = _text_split(a, b)
    return None if split is None or split[0] is None else split[0][1] + 1


def diverges_at_decoding(
    a: Answer, b: Answer, decode_a: Decoder | None, decode_b: Decoder | None
) -> int | None:
    """`diverges_at` for answers that need token texts, decoding only as far as it must.

    A tokenizer's pieces in sequence cost a decode per token of a growing prefix (a 512-token
    answer: about 23 ms), and the two answers usually part early: so the first 16 tokens of
    each are decoded, then 4× more, until the place they part lies before the last piece
    decoded on each side cut short (that piece may hold part of a character)."""
    if not needs_texts(a, b) or (a.pieces is not None and b.pieces is not None):
        return diverges_at(a, b)
    la, lb = a.logprobs, b.logprobs
    assert la is not None and lb is not None
    if (a.pieces is None and decode_a is None) or (b.pieces is None and decode_b is None):
        return None
    m = 16
    while True:
        pa, cut_a = _head(a, decode_a, m)
        pb, cut_b = _head(b, decode_b, m)
        if not cut_a and not cut_b:
            return diverges_at(pa, pb)
        split = _text_split(pa, pb)
        if split is not None and split[0] is not None:
            ia, ib = split[0][0], split[0][1]
            if (not cut_a or ia < m - 1) and (not cut_b or ib < m - 1):
                return ib + 1
        m *= 4


def _head(answer: Answer, decoder: Decoder | None, m: int) -> tuple[Answer, bool]:
    """The answer's first m tokens with their texts, and whether that cut it short."""
    lp = answer.logprobs
    assert lp is not None
    if m >= len(lp):
        return with_pieces(answer, decoder, alternatives=False), False
    pieces = answer.pieces[:m] if answer.pieces is not None else None
    if pieces is None:
        assert decoder is not None
        pieces = tuple(decoder(lp.tokens[:m]))
    return replace(answer, logprobs=lp.head(m), pieces=pieces, finish_reason=None), True


def first_divergence(a: Answer, b: Answer, names: tuple[str, str] = NAMES) -> Divergence:
    """Where b parts from a, with everything the detail view shows (see the module's notes)."""
    missing = [n for n, x in zip(names, (a, b), strict=True) if x.logprobs is None]
    if missing:
        return _by_characters(a, b, f"{' and '.join(missing)}: no stored token probabilities")
    if compares_ids(a, b):
        return _by_ids(a, b, names)
    unknown = [n for n, x in zip(names, (a, b), strict=True) if _content(x) is None]
    if unknown:
        return _by_characters(
            a, b, f"{' and '.join(unknown)}: token texts unknown (no tokenizer at hand)"
        )
    return _by_texts(a, b, names)


def _common(x: Sequence[object], y: Sequence[object]) -> int:
    n = min(len(x), len(y))
    for i in range(n):
        if x[i] != y[i]:
            return i
    return n


def _by_characters(a: Answer, b: Answer, why: str) -> Divergence:
    if a.text == b.text:
        return Divergence("same", "characters", a.text, None, len(a.text), (why,))
    n = _common(a.text, b.text)
    note = f"{why}: compared character by character, without probabilities"
    return Divergence("text", "characters", a.text[:n], None, n, (note,))


def _by_ids(a: Answer, b: Answer, names: tuple[str, str]) -> Divergence:
    la, lb = a.logprobs, b.logprobs
    assert la is not None and lb is not None
    i = _common(la.tokens, lb.tokens)
    before = "".join(a.pieces[:i]) if a.pieces is not None else None
    notes = _distribution_notes(a, b, names)
    if i == len(la) == len(lb):
        return Divergence("same", "ids", a.text, None, notes=notes)
    ia = la.tokens[i] if i < len(la) else None
    ib = lb.tokens[i] if i < len(lb) else None
    sides = (
        _side(a, i, other=_by_id(la, i, ib)),
        _side(b, i, other=_by_id(lb, i, ia)),
    )
    return Divergence("token", "ids", before, sides, notes=notes)


def _by_id(lp: TokenLogprobs, i: int, other: int | None) -> tuple[float | None, str]:
    """The probability `lp` gave token `other` at step i: from its top k, or said to be below."""
    if i >= len(lp):
        return None, "it had stopped before this token"
    if other is None:
        return None, "the other answer has no token here"
    for token, value in zip(lp.top_ids[i], lp.top_logprobs[i], strict=False):
        if token == other:
            return math.exp(value), ""
    return None, f"below its top {lp.k}"


def _by_text(answer: Answer, i: int, other: str | None) -> tuple[float | None, str]:
    """Like `_by_id` for tokens known by their texts (one tokenizer whose ids are not known)."""
    lp, tops = answer.logprobs, answer.top_pieces
    assert lp is not None
    if i >= len(lp):
        return None, "it had stopped before this token"
    if other is None:
        return None, "the other answer has no token here"
    if tops is None:
        return None, "its alternatives' texts are not known"
    for text, value in zip(tops[i], lp.top_logprobs[i], strict=False):
        if text == other:
            return math.exp(value), ""
    return None, f"below its top {lp.k}"


def _content(answer: Answer) -> tuple[str, ...] | None:
    """The texts of an answer's tokens before its end-of-sequence token (None: not known)."""
    lp, pieces = answer.logprobs, answer.pieces
    if lp is None or pieces is None or len(pieces) != len(lp):
        return None
    return pieces[:-1] if _ends_on_eos(answer) else pieces


def _ends_on_eos(answer: Answer) -> bool:
    return (
        answer.finish_reason == "eos" and answer.logprobs is not None and len(answer.logprobs) > 0
    )


def _text_split(a: Answer, b: Answer) -> tuple[tuple[int, int, int, int] | None, int] | None:
    """On token texts: ((a's token, b's token, a's start, b's start), shared characters), the
    first member None when the texts are the same; None when the texts are not known."""
    ca, cb = _content(a), _content(b)
    if ca is None or cb is None:
        return None
    sa, sb = "".join(ca), "".join(cb)
    if sa == sb:
        return None, len(sa)
    n = _common(sa, sb)
    (ia, start_a), (ib, start_b) = _covering(ca, n), _covering(cb, n)
    return (ia, ib, start_a, start_b), n


def _covering(pieces: Sequence[str], char: int) -> tuple[int, int]:
    """The token whose text holds character `char` and where it starts; past the end: the
    position after the last token (the end-of-sequence token, or none)."""
    start = 0
    for i, piece in enumerate(pieces):
        if start + len(piece) > char:
            return i, start
        start += len(piece)
    return len(pieces), start


def _by_texts(a: Answer, b: Answer, names: tuple[str, str]) -> Divergence:
    split = _text_split(a, b)
    assert split is not None
    found, _ = split
    comparable = a.tokenizer == b.tokenizer
    notes = _distribution_notes(a, b, names)
    if not comparable:
        notes = (
            "different tokenizers: tokens are matched by their texts, and the probability "
            "each side gave the other's token is not comparable (not shown)",
            *notes,
        )
    if found is None:
        return Divergence("same", "texts", "".join(_content(a) or ()), None, notes=notes)
    ia, ib, start_a, start_b = found
    text_a, text_b = "".join(_content(a) or ()), "".join(_content(b) or ())
    start = min(start_a, start_b)
    tok_a = a.pieces[ia] if a.pieces is not None and ia < len(a.pieces) else None
    tok_b = b.pieces[ib] if b.pieces is not None and ib < len(b.pieces) else None
    not_comparable = (None, "not comparable: another tokenizer")
    sides = (
        replace(
            _side(a, ia, other=_by_text(a, ia, tok_b) if comparable else not_comparable),
            lead=text_a[start:start_a],
        ),
        replace(
            _side(b, ib, other=_by_text(b, ib, tok_a) if comparable else not_comparable),
            lead=text_b[start:start_b],
        ),
    )
    return Divergence("token", "texts", text_a[:start], sides, notes=notes)


def _side(answer: Answer, i: int, *, other: tuple[float | None, str]) -> Side:
    lp = answer.logprobs
    assert lp is not None
    if i >= len(lp):
        stop = STOPS.get(answer.finish_reason or "", "stopped")
        return Side(i, None, None, None, True, stop, (), other[0], other[1])
    tops = answer.top_pieces[i] if answer.top_pieces is not None else None
    alternatives = tuple(
        Alternative(t, tops[j] if tops is not None and j < len(tops) else None, math.exp(v))
        for j, (t, v) in enumerate(zip(lp.top_ids[i], lp.top_logprobs[i], strict=False))
        if t >= 0 and v > float("-inf")
    )
    return Side(
        index=i,
        token_id=lp.tokens[i],
        text=answer.pieces[i] if answer.pieces is not None else None,
        probability=math.exp(lp.logprobs[i]),
        ends=_ends_on_eos(answer) and i == len(lp) - 1,
        stop=None,
        alternatives=alternatives,
        other=other[0],
        other_note=other[1],
    )


def _distribution_notes(a: Answer, b: Answer, names: tuple[str, str]) -> tuple[str, ...]:
    """Which distribution the probabilities are from, when a processor shaped it."""
    notes = []
    for name, answer in zip(names, (a, b), strict=True):
        lp = answer.logprobs
        if lp is not None and lp.processors:
            notes.append(
                f"{name}: probabilities as the sampler saw them, after {', '.join(lp.processors)}"
            )
    return tuple(notes)


# --- words for the screen -------------------------------------------------------------------
def token_label(side: Side) -> str:
    """What a side put where the two part, as plain text (shown escaped by the page)."""
    if side.token_id is None:
        return f"(nothing: it {side.stop or 'stopped'})"
    text = repr(side.text) if side.text is not None else f"token id {side.token_id}"
    if side.ends:
        return f"{text} (end of the answer)"
    if side.text == "":  # a byte of a character whose other bytes come with the next tokens
        return f"'' (token id {side.token_id}: part of a character the next token completes)"
    return text


def other_label(side: Side) -> str:
    """The probability a side gave the other's token, or why there is none."""
    return probability(side.other) if side.other is not None else side.other_note


def summary(d: Divergence) -> str:
    """One line: where they part, or that they do not."""
    if d.kind == "same":
        return "no divergence: the two answers are the same"
    if d.kind == "text":
        return f"they part at character {(d.char or 0) + 1}"
    return f"they part at token {d.token}"


def alternatives_label(side: Side) -> str:
    """A side's top alternatives with their probabilities, best first, as one plain line."""
    parts = [
        f"{repr(x.text) if x.text is not None else f'id {x.token_id}'} {probability(x.probability)}"
        for x in side.alternatives
    ]
    return ", ".join(parts) or "none stored"


def side_rows(d: Divergence, names: tuple[str, str] = NAMES) -> list[dict[str, str]]:
    """The detail view's table: one row per answer where the two part (none when they do not
    part on tokens). Every value is plain text, model text quoted with repr."""
    if d.sides is None:
        return []
    rows = []
    for name, side in zip(names, d.sides, strict=True):
        token = token_label(side)
        rows.append(
            {
                "answer": name,
                "token there": f"…{side.lead!r} then {token}" if side.lead else token,
                "its probability": probability(side.probability)
                if side.probability is not None
                else "",
                "probability of the other's token": other_label(side),
                "its top alternatives": alternatives_label(side),
            }
        )
    return rows
