"""An answer token by token, for views that shade each token by its probability and list the
alternatives the model had there.

The token texts come from one small input, `Pieces`, so both sources fit: a local model decodes
its own ids (`Backend.token_pieces`: the pieces join to the answer's text), and a server's stored
log-probabilities may carry their texts (the `texts`/`top_texts` of a newer storage format).
Everything here is plain values; the page turns them into escaped HTML.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .backends.base import Backend
from .logprobs import TokenLogprobs

NAMES = {
    "repetition_penalty": "repetition penalty",
    "frequency_presence_penalty": "frequency/presence penalty",
    "temperature": "temperature",
    "top_k": "top-k",
    "top_p": "top-p",
}


@dataclass(frozen=True)
class Pieces:
    """The text of each generated token (joining to the answer) and of each alternative."""

    tokens: Sequence[str]
    alternatives: Sequence[Sequence[str]]


@dataclass(frozen=True)
class Alternative:
    token_id: int
    text: str
    logprob: float  # -inf: cut by top-k or top-p at this step

    @property
    def prob(self) -> float:
        return math.exp(self.logprob) if math.isfinite(self.logprob) else 0.0


@dataclass(frozen=True)
class TokenStep:
    """One generated token: where, what, how likely, and what else the model had there."""

    position: int  # 0 for the answer's first token
    token_id: int
    text: str
    logprob: float
    alternatives: tuple[Alternative, ...]  # the k most likely, best first

    @property
    def prob(self) -> float:
        return math.exp(self.logprob) if math.isfinite(self.logprob) else 0.0

    def is_chosen(self, alternative: Alternative) -> bool:
        """Whether an alternative is the token chosen: by id, or by text where the ids are
        unknown (a server names its tokens by their text: id -1)."""
        if self.token_id >= 0:
            return alternative.token_id == self.token_id
        return alternative.text == self.text

    @property
    def rank(self) -> int | None:
        """The chosen token's place among the alternatives (1: the most likely), else None."""
        found = [n for n, a in enumerate(self.alternatives, 1) if self.is_chosen(a)]
        return found[0] if found else None


def stored_pieces(record: TokenLogprobs) -> Pieces | None:
    """The token texts stored with the log-probabilities (a server's), when there are any."""
    texts = getattr(record, "texts", None)
    if not texts:
        return None
    top = getattr(record, "top_texts", None) or [[] for _ in texts]
    return Pieces(list(texts), [list(step) for step in top])


def decoded_pieces(record: TokenLogprobs, backend: Backend) -> Pieces:
    """The texts as the model's own tokenizer decodes its ids (raises CapabilityError on a
    backend that cannot). Alternatives are decoded one by one, in a single call."""
    flat = [t for step in record.top_ids for t in step if t >= 0]
    alone = iter(backend.token_pieces(flat, in_sequence=False))
    return Pieces(
        backend.token_pieces(list(record.tokens)),
        [[next(alone) for t in step if t >= 0] for step in record.top_ids],
    )


def token_steps(record: TokenLogprobs, pieces: Pieces) -> list[TokenStep]:
    """Each step of `record` with its texts. Padding is left out: an alternative without an
    id, a text or a probability (a vocabulary smaller than k; a server that gave fewer than
    k). A server's alternatives have no ids (-1) but their texts; a local one's the reverse,
    decoded into `pieces` for the ids only, in order."""
    steps = []
    for i, token in enumerate(record.tokens):
        texts = pieces.alternatives[i] if i < len(pieces.alternatives) else []
        pairs = zip(record.top_ids[i], record.top_logprobs[i], strict=True)
        alternatives = tuple(
            Alternative(t, texts[j] if j < len(texts) else "", v)
            for j, (t, v) in enumerate(pairs)
            if t >= 0 or (j < len(texts) and (texts[j] or math.isfinite(v)))
        )
        text = pieces.tokens[i] if i < len(pieces.tokens) else ""
        steps.append(TokenStep(i, token, text, record.logprobs[i], alternatives))
    return steps


def visible(text: str) -> str:
    """A token's text with its whitespace shown: ↵ for a newline, ⇥ for a tab, · for a space
    (used where a token stands alone, as in a list of alternatives)."""
    if not text:
        return "∅"
    return text.replace("\r", "␍").replace("\n", "↵").replace("\t", "⇥").replace(" ", "·")


def distribution_text(record: TokenLogprobs) -> str:
    """What the probabilities are of, for a caption: the model's own or after processors."""
    if record.after == "server":  # a server reports them without naming its processors
        return "the probabilities the server reported (it does not say after which settings)"
    if not record.processors:
        return "the model's own probabilities (no temperature or penalty changed them)"
    names = ", ".join(NAMES.get(p, p) for p in record.processors)
    return f"probabilities after {names}, the distribution each token was drawn from"
