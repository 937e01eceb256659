"""What every model backend is: the interface the runner uses and the records it exchanges.

A backend turns rendered messages into the exact text the model reads (`model_input`), and
generates for a batch (`generate`) or streams one answer (`stream`). What a backend can do beyond
that (see its token ids, read its logits) it declares in `capabilities`; callers ask there
instead of reaching into the object for a tokenizer or a model, and use the interface methods
(`truncate_to_tokens`, `log_likelihood`) that every backend has, serving or refusing them.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

from ..constraints import Constraint
from ..errors import WorkbenchError
from ..logprobs import TokenLogprobs
from ..params import GenerationParams
from ..templates import Rendered

FinishReason = Literal["eos", "length", "stop", "cancelled", "choice"]  # choice: a scored answer
Capability = Literal["token_ids", "logits", "logprobs", "constrained", "choices"]


class ModelError(WorkbenchError):
    """A model that cannot be found, loaded or used, with what to do about it."""


class ContextOverflowError(WorkbenchError):
    pass


class CapabilityError(ModelError):
    """Asked of a backend something its `capabilities` say it cannot do."""


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do beyond generating text, declared by the backend itself.

    Callers (scorers, the evaluation plan, later features) decide from these before they ask,
    so a request a backend cannot serve is refused up front with a reason instead of failing
    row by row; nobody reaches into a backend for its tokenizer or its model to find out.
    """

    token_ids: bool = False  # counts, cuts and decodes tokens exactly with the model's tokenizer
    logits: bool = False  # scores any text with the model's own log-probabilities
    logprobs: bool = False  # returns the log-probabilities of generated tokens (servers too)
    constrained: bool = False  # decodes under a grammar or JSON Schema
    choices: bool = False  # scores answer choices after a prompt (`score_choices`)

    # Each capability as what a feature needs, for messages like "perplexity needs …, which
    # openai:m@URL does not give".
    NEEDS: ClassVar[dict[Capability, str]] = {
        "token_ids": "the model's own tokenizer",
        "logits": "a local model: it reads the model's own log-probabilities of a text",
        "logprobs": "the log-probabilities of generated tokens",
        "constrained": "grammar-constrained decoding",
        "choices": "the log-probabilities of answer choices after the prompt",
    }

    def has(self, capability: Capability) -> bool:
        return bool(getattr(self, capability))


@dataclass(frozen=True)
class Truncation:
    """The start of a text, cut to at most a number of tokens."""

    text: str
    exact: bool  # cut at a token boundary by the model's tokenizer; False: a character estimate


@dataclass(frozen=True)
class LogLikelihood:
    """How likely a text is under a model: the summed log-probability of its tokens."""

    logprob: float  # natural log, summed over the scored tokens
    tokens: int  # tokens scored (the first token after the start token onwards)

    @property
    def perplexity(self) -> float:
        """exp of the mean negative log-likelihood per token."""
        return math.exp(-self.logprob / self.tokens)


@dataclass(frozen=True)
class ModelInfo:
    name: str  # what the user chose: the default's alias, a folder or a Hugging Face id
    path: str
    revision: str  # commit of a cached hub model, or a hash of the weights
    dtype: str
    context_window: int
    chat_template_hash: str
    backend: str = "transformers"


@dataclass(frozen=True)
class ModelInput:
    """Exactly what the model reads: the text and whether the tokenizer adds special tokens.

    A server that applies its own chat template reads messages, not text: `messages` holds
    them as (role, content) pairs and `text` their JSON, which is what an output row stores.
    Local backends leave `messages` None, so their inputs and cache keys are as before.
    """

    text: str
    add_special_tokens: bool
    messages: tuple[tuple[str, str], ...] | None = None


@dataclass(frozen=True)
class Generation:
    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    ttft_s: float | None = None
    batch_size: int = 1
    # Each counted token's log-probability and top alternatives, when the backend gives them
    # (`capabilities.logprobs`); None for a backend or a stored answer without them.
    logprobs: TokenLogprobs | None = None
    # Something the person should hear once per run, not once per row: a server that gives no
    # log-probabilities says so here on each of its answers, and the runner reports it once.
    notice: str | None = None
    # An answer that is not what was asked for, kept with the reason as the output's error so
    # it never passes for valid nor answers a later run from the cache: a server's answer that
    # did not follow the constraint it was sent. (A local model decodes under the grammar's mask.)
    error: str | None = None

    def stored_columns(self) -> dict[str, Any]:
        """What an output row keeps of this generation, by column: one place for the runner's
        rows and a branch's, so neither can leave a field behind."""
        return {
            "text": self.text,
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "latency_s": self.latency_s,
            "ttft_s": self.ttft_s,
            "batch_size": self.batch_size,
            "token_logprobs": self.logprobs.to_bytes() if self.logprobs is not None else None,
        }


@dataclass(frozen=True)
class ChoiceScores:
    """One input's answer choices scored: each choice's summed log-probability and tokens."""

    logprobs: tuple[float, ...]  # natural log, summed over the choice's tokens, in choice order
    tokens: tuple[int, ...]  # how many tokens each choice was scored on
    prompt_tokens: int
    latency_s: float
    batch_size: int = 1


class Cancel:
    """A flag a UI button or signal handler sets; generation stops at the next token."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


class TextStream(Protocol):
    """One answer as it is generated: iterate for text pieces; `.result` afterwards."""

    result: Generation | None

    def __iter__(self) -> Iterator[str]: ...

    def cancel(self) -> None: ...


class Backend(Protocol):
    info: ModelInfo

    @property
    def capabilities(self) -> Capabilities:
        """What this backend can do beyond generating (a class attribute on each backend)."""
        ...

    def model_input(self, rendered: Rendered) -> ModelInput: ...

    def count_tokens(self, model_input: ModelInput) -> int: ...

    def count_is_estimate(self, model_input: ModelInput) -> bool:
        """Whether count_tokens is an estimate (a server that does not tokenize for us)."""
        ...

    def check_fits(self, prompt_tokens: int, params: GenerationParams) -> None: ...

    def truncate_to_tokens(self, text: str, tokens: int) -> Truncation:
        """The start of `text` holding at most `tokens` tokens, by the backend's own means:
        exact with a tokenizer, else an estimate that says so."""
        ...

    def token_pieces(self, ids: Sequence[int], *, in_sequence: bool = True) -> list[str]:
        """The text of each token id, for views that show an answer token by token.

        `in_sequence`: the ids are one text in order, and each piece is what its token adds to
        the text so far, so the pieces join to exactly the decoded text (a character spread over
        several byte tokens comes whole with the token that completes it, the ones before add
        nothing). Otherwise each id is decoded alone (the alternatives at one step).
        Only with `capabilities.token_ids`; otherwise raises CapabilityError (a server's token
        log-probabilities carry their own texts)."""
        ...

    def token_ids(self, text: str) -> list[int]:
        """`text`'s token ids, without special tokens (a token typed to branch an answer with).
        Only with `capabilities.token_ids`; otherwise raises CapabilityError."""
        ...

    def generate_forced(
        self,
        model_input: ModelInput,
        forced: Sequence[int],
        params: GenerationParams,
        *,
        seed: int,
        cancel: Cancel | None = None,
    ) -> Generation:
        """An answer that begins with the token ids `forced`, then goes on as the model
        continues it (see workbench.branching): its log-probabilities cover every token, the
        forced ones as the model scores them there after `params`' processors. `max_new_tokens`
        counts the forced tokens too. Only with `capabilities.logits`; otherwise raises
        CapabilityError; ValueError for an id outside the model's vocabulary."""
        ...

    def log_likelihood(self, text: str) -> LogLikelihood:
        """`text` scored by the model on its own, after a start token and without any prompt.

        Only with `capabilities.logits`; otherwise raises CapabilityError. ValueError when the
        text is too short to score (empty, one token)."""
        ...

    def score_choices(
        self,
        inputs: Sequence[ModelInput],
        choices: Sequence[str],
        *,
        batch_size: int | None = None,
        on_batch: Callable[[list[tuple[int, ChoiceScores]]], None] | None = None,
        cancel: Cancel | None = None,
    ) -> list[ChoiceScores | None]:
        """Each choice's summed token log-probability after each input (None if cancelled first).

        Only with `capabilities.choices`; otherwise raises CapabilityError naming the backend.
        A choice that tokenises to nothing is refused (ChoicesError) before any forward pass."""
        ...

    def check_constraint(self, constraint: Constraint) -> None:
        """Refuse (ConstraintError) a constraint no answer can follow with this model's
        tokenizer: nothing can begin it, or only an empty answer satisfies it. Loads no
        weights. Only with `capabilities.constrained`; otherwise raises CapabilityError."""
        ...

    def generate(
        self,
        inputs: Sequence[ModelInput],
        params: GenerationParams,
        *,
        seeds: Sequence[int] | None = None,
        batch_size: int | None = None,
        on_batch: Callable[[list[tuple[int, Generation]]], None] | None = None,
        cancel: Cancel | None = None,
        rows_as_they_finish: bool = False,
    ) -> list[Generation | None]: ...

    def stream(
        self, model_input: ModelInput, params: GenerationParams, cancel: Cancel | None = None
    ) -> TextStream: ...


def check_context(
    info: ModelInfo, prompt_tokens: int, params: GenerationParams, *, estimate: bool = False
) -> None:
    """Refuse a request that cannot fit the model's context window, before it is sent."""
    window = info.context_window
    if prompt_tokens + params.max_new_tokens > window:
        about = "about " if estimate else ""
        raise ContextOverflowError(
            f"the prompt is {about}{prompt_tokens} tokens; with max_new_tokens "
            f"{params.max_new_tokens} it needs {prompt_tokens + params.max_new_tokens}, more "
            f"than {info.name}'s context window of {window} tokens"
        )


def first_stop(text: str, stops: Sequence[str]) -> int | None:
    """Where the earliest stop string begins in `text`, or None."""
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else None


REMOTE_PREFIX = "openai"


def is_remote_spec(spec: str) -> bool:
    """Whether a model spec names a server (`openai`, `openai:MODEL[@URL]`) rather than a local
    model. Decided here, below both backends, so a local model does not import the HTTP client
    (about 0.1 s) and neither backend imports the other."""
    spec = spec.strip()
    return spec == REMOTE_PREFIX or spec.startswith(REMOTE_PREFIX + ":")
