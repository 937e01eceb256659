"""Answer choices: the labels a classification prompt allows, scored instead of sampled.

A prompt declares them in its front matter (`metadata.choices: [Positive, Negative, Neutral]`)
or a run is given them (`--choices`). The runner then asks the backend for each choice's summed
token log-probability after the prompt (`Backend.score_choices`), and the answer is the most
likely choice: no sampling, no parsing of free text, and the whole distribution is kept.

Contextual calibration (Zhao et al., 2021, "Calibrate Before Use") corrects the prompt's own
bias towards some labels: the same prompt with each content-free input ("N/A", "", "[MASK]")
put into every input variable gives a distribution `p_cf` (averaged over those inputs) that
should be uniform and is not; every row's distribution is then divided by it and renormalised,
`q_i ∝ p_i / p_cf_i`, and the answer is q's argmax. The content-free inputs and each version's
`p_cf` are stored with the run (`run.calibration`), so the run can be reproduced.

This module holds the plain parts — parsing, the maths, what is stored — with no model in it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from .errors import WorkbenchError

CONTENT_FREE = ("N/A", "", "[MASK]")  # Zhao et al.'s content-free inputs
FINISH_REASON: Final = "choice"  # an output whose text is the chosen answer, not generated text


class ChoicesError(WorkbenchError):
    """Answer choices or a calibration request that cannot be used, said in one line."""


def parse_choices(value: Any) -> tuple[str, ...]:
    """Choices as declared (a YAML list, or a comma-separated string from `--choices`).

    Refused with one line: not a list, empty, an entry that is not text or is blank, or the
    same choice twice (two labels that cannot be told apart would split one probability)."""
    if isinstance(value, str):
        items: list[Any] = [part.strip() for part in value.split(",")]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ChoicesError("choices must be a list of answers, e.g. [Positive, Negative, Neutral]")
    if not items or all(isinstance(i, str) and not i.strip() for i in items):
        raise ChoicesError("choices is empty: give at least two answers")
    out: list[str] = []
    for position, item in enumerate(items, start=1):
        if not isinstance(item, str):
            raise ChoicesError(
                f"choice {position} is {type(item).__name__} {item!r}, not text: quote it"
            )
        if not item.strip():
            raise ChoicesError(f"choice {position} is empty")
        if item in out:
            raise ChoicesError(f"choice {item!r} is given twice")
        out.append(item)
    if len(out) < 2:
        raise ChoicesError(f"only one choice ({out[0]!r}): give at least two answers")
    return tuple(out)


def declared_choices(metadata: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The choices a prompt's metadata declares, or None (raises ChoicesError when bad)."""
    value = metadata.get("choices")
    return None if value is None else parse_choices(value)


def declared_calibration(metadata: Mapping[str, Any]) -> bool:
    """Whether a prompt asks for its choices to be calibrated (`metadata.calibrate: true`).

    Calibration is otherwise a run option (--calibrate); a prompt whose choices only work
    calibrated — what the few-shot search saves — declares it, so running the saved version
    as it is reproduces the score it was chosen for."""
    return metadata.get("calibrate") is True


def normalise(logprobs: Sequence[float]) -> list[float]:
    """Summed log-probabilities → probabilities over the choices (a softmax)."""
    top = max(logprobs)
    weights = [math.exp(lp - top) for lp in logprobs]
    total = sum(weights)
    return [w / total for w in weights]


def average(distributions: Sequence[Sequence[float]]) -> list[float]:
    """The mean of several distributions over the same choices (the content-free p_cf)."""
    n = len(distributions)
    return [sum(d[i] for d in distributions) / n for i in range(len(distributions[0]))]


def calibrate(probs: Sequence[float], content_free: Sequence[float]) -> list[float]:
    """Zhao et al.'s correction with W = diag(p_cf)^-1, b = 0: q_i ∝ p_i / p_cf_i."""
    raw = [p / max(c, 1e-300) for p, c in zip(probs, content_free, strict=True)]
    total = sum(raw)
    return [r / total for r in raw]


def argmax(values: Sequence[float]) -> int:
    """The first index of the largest value (ties go to the earlier choice)."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


@dataclass(frozen=True)
class ChoiceResult:
    """One row's scored choices, as stored in `output.choices`."""

    choices: tuple[str, ...]
    logprobs: tuple[float, ...]  # each choice's summed token log-probability after the prompt
    probs: tuple[float, ...]  # normalised over the choices
    calibrated: tuple[float, ...] | None  # after contextual calibration, when asked

    @classmethod
    def score(
        cls,
        choices: Sequence[str],
        logprobs: Sequence[float],
        content_free: Sequence[float] | None = None,
    ) -> ChoiceResult:
        probs = normalise(logprobs)
        calibrated = calibrate(probs, content_free) if content_free is not None else None
        return cls(
            tuple(choices),
            tuple(logprobs),
            tuple(probs),
            tuple(calibrated) if calibrated is not None else None,
        )

    @property
    def answer(self) -> str:
        """The calibrated argmax when calibrated, else the raw argmax."""
        return self.choices[argmax(self.calibrated or self.probs)]

    @property
    def raw_answer(self) -> str:
        return self.choices[argmax(self.probs)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "choices": list(self.choices),
            "logprobs": list(self.logprobs),
            "probs": list(self.probs),
            "calibrated": list(self.calibrated) if self.calibrated is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChoiceResult:
        calibrated = data.get("calibrated")
        return cls(
            tuple(data["choices"]),
            tuple(float(x) for x in data["logprobs"]),
            tuple(float(x) for x in data["probs"]),
            tuple(float(x) for x in calibrated) if calibrated is not None else None,
        )


@dataclass(frozen=True)
class ChoiceRequest:
    """What a run asks for: choices that override the prompts' own, and calibration.

    Stored in `run.calibration` (with the content-free distributions once computed) so a resumed
    run scores the same way; None when a run neither overrides choices nor calibrates."""

    choices: tuple[str, ...] | None = None  # None: each prompt's metadata.choices
    calibrate: bool = False

    @classmethod
    def build(cls, choices: Any = None, calibrate: bool = False) -> ChoiceRequest | None:
        parsed = parse_choices(choices) if choices is not None else None
        if not parsed and not calibrate:
            return None
        return cls(parsed, calibrate)

    @classmethod
    def from_form(cls, enabled: bool, text: str, calibrate: bool) -> ChoiceRequest | None:
        """The Evaluate page's switch: off → None; on → these choices (an empty field: each
        version's own metadata.choices, refused for a version without them)."""
        if not enabled:
            return None
        return cls(parse_choices(text) if text.strip() else None, calibrate)

    def stored(self) -> dict[str, Any]:
        """The start of `run.calibration`; `distributions` fills in per version as computed."""
        return {
            "choices": list(self.choices) if self.choices is not None else None,
            "content_free": list(CONTENT_FREE) if self.calibrate else None,
            "distributions": {},
        }

    @classmethod
    def from_stored(cls, data: Mapping[str, Any] | None) -> ChoiceRequest | None:
        if not data:
            return None
        choices = data.get("choices")
        return cls(
            tuple(choices) if choices is not None else None,
            data.get("content_free") is not None,
        )


def content_free_variables(
    names: Sequence[str], value: str, row: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A row with `value` in every input variable the template uses; other values (examples
    with their defaults) stay as in `row`, so only the content the model classifies changes."""
    out = dict(row or {})
    for name in names:
        out[name] = value
    return out


LEADING_SPACE = True  # see `continuation`


def continuation(prompt_text: str, choice: str) -> str:
    """The text a choice is scored as after the prompt: with a leading space when the prompt
    ends in a word or punctuation ("Sentiment:" → " Positive"), as the label follows in real
    text; unchanged after whitespace (a chat template's "assistant\\n") or when the choice
    already starts with whitespace. Without the space, byte-pair tokenizers read a glued-on
    word ("Sentiment:Positive") that is far less likely than the label written normally."""
    if LEADING_SPACE and prompt_text and not prompt_text[-1].isspace() and choice[:1].strip():
        return " " + choice
    return choice
