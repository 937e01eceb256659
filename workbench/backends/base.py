"""What every model backend is: the interface the runner uses and the records it exchanges.

A backend turns rendered messages into the exact text the model reads (`model_input`), and
generates for a batch (`generate`) or streams one answer (`stream`). What a backend can do beyond
that (see its token ids, read its logits) it declares in `capabilities`; callers ask there
instead of reaching into the object for a tokenizer or a model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from ..errors import WorkbenchError
from ..params import GenerationParams
from ..templates import Rendered

FinishReason = Literal["eos", "length", "stop", "cancelled"]


class ModelError(WorkbenchError):
    """A model that cannot be found, loaded or used, with what to do about it."""


class ContextOverflowError(WorkbenchError):
    pass


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

    def model_input(self, rendered: Rendered) -> ModelInput: ...

    def count_tokens(self, model_input: ModelInput) -> int: ...

    def count_is_estimate(self, model_input: ModelInput) -> bool:
        """Whether count_tokens is an estimate (a server that does not tokenize for us)."""
        ...

    def check_fits(self, prompt_tokens: int, params: GenerationParams) -> None: ...

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
