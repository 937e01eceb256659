"""promptfoo's `echo` provider as a backend: the answer is the rendered prompt, at once, with no
model — so an assertion suite can be checked without loading or asking anything.

It declares no capabilities and refuses, in one line, whatever needs a model (token ids,
log-probabilities, scored choices, constrained decoding).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..constraints import Constraint
from ..params import GenerationParams
from ..templates import Rendered
from .base import (
    Cancel,
    Capabilities,
    CapabilityError,
    Generation,
    LogLikelihood,
    ModelInfo,
    ModelInput,
    Truncation,
)

ECHO = "echo"
ECHO_INFO = ModelInfo(
    name=ECHO,
    path="",
    revision="promptfoo-echo",
    dtype="-",
    context_window=1 << 30,
    chat_template_hash="",
    backend=ECHO,
)


class EchoBackend:
    """promptfoo's `echo` provider: the answer is the rendered prompt, at once, no model.

    A prompt written as JSON chat messages answers with them as JSON (two-space indent, as
    promptfoo writes a rendered JSON prompt); any other prompt with its text."""

    info = ECHO_INFO

    def __init__(self, chat_json: frozenset[str] = frozenset()):
        self.chat_json = chat_json  # prompt names whose echo is their messages' JSON

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities()

    def model_input(self, rendered: Rendered) -> ModelInput:
        base = rendered.prompt.removesuffix(".trials")
        if base in self.chat_json or rendered.prompt in self.chat_json:
            messages = [m.as_dict() for m in rendered.messages]
            return ModelInput(json.dumps(messages, indent=2, ensure_ascii=False), False)
        if rendered.mode == "completion":
            return ModelInput(rendered.text, False)
        return ModelInput("\n\n".join(m.content for m in rendered.messages), False)

    def count_tokens(self, model_input: ModelInput) -> int:
        return len(model_input.text.split())

    def count_is_estimate(self, model_input: ModelInput) -> bool:
        return True

    def check_fits(self, prompt_tokens: int, params: GenerationParams) -> None:
        return None

    def truncate_to_tokens(self, text: str, tokens: int) -> Truncation:
        return Truncation(text[: tokens * 4], exact=False)

    def _refuse(self, what: str) -> CapabilityError:
        return CapabilityError(f"the echo provider has no model: {what} needs one")

    def token_pieces(self, ids: Sequence[int], *, in_sequence: bool = True) -> list[str]:
        raise self._refuse("token pieces")

    def token_ids(self, text: str) -> list[int]:
        raise self._refuse("token ids")

    def generate_forced(
        self,
        model_input: ModelInput,
        forced: Sequence[int],
        params: GenerationParams,
        *,
        seed: int,
        cancel: Cancel | None = None,
    ) -> Generation:
        raise self._refuse("a forced answer")

    def log_likelihood(self, text: str) -> LogLikelihood:
        raise self._refuse("perplexity")

    def score_choices(self, inputs: Any, choices: Any, **kwargs: Any) -> Any:
        raise self._refuse("scoring answer choices")

    def check_constraint(self, constraint: Constraint) -> None:
        raise self._refuse("constrained decoding")

    def _answer(self, model_input: ModelInput) -> Generation:
        text = model_input.text
        return Generation(text, "eos", len(text.split()), len(text.split()), 0.0, 0.0)

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
    ) -> list[Generation | None]:
        answers: list[Generation | None] = [self._answer(i) for i in inputs]
        if on_batch is not None:
            on_batch([(i, g) for i, g in enumerate(answers) if g is not None])
        return answers

    def stream(
        self, model_input: ModelInput, params: GenerationParams, cancel: Cancel | None = None
    ) -> _EchoStream:
        return _EchoStream(self._answer(model_input))


class _EchoStream:
    def __init__(self, answer: Generation):
        self.result: Generation | None = answer

    def __iter__(self) -> Iterator[str]:
        assert self.result is not None
        yield self.result.text

    def cancel(self) -> None:
        return None
