"""Generation parameters: one validated record, built from a prompt's options and overrides.

Validation needs no model, so a bad temperature or a max_new_tokens of 0 is rejected before
anything is loaded.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .constraints import Constraint, ConstraintError
from .errors import WorkbenchError


@dataclass(frozen=True)
class ModelOption:
    """One option a prompt file may set under `model.options`, and what becomes of it.

    `name` is Prompty's spelling (`additionalProperties.repetitionPenalty` for one nested under
    `additionalProperties`, where Prompty puts what it does not name itself); `field` is the
    GenerationParams field it sets; `local` and `server` say what the transformers backend and
    an OpenAI-compatible server do with it. An option not in this table is not used: lint says
    so, and `build` ignores it (files from other Prompty tools still load and run).
    """

    name: str
    field: str
    local: str
    server: str


# The one table of model options: `build` reads it, lint checks against it, the README lists it.
MODEL_OPTIONS: tuple[ModelOption, ...] = (
    ModelOption("temperature", "temperature", "sampling temperature; 0 is greedy", "temperature"),
    ModelOption("maxOutputTokens", "max_new_tokens", "longest answer in tokens", "max_tokens"),
    ModelOption("topP", "top_p", "nucleus sampling, when sampling", "top_p, when sampling"),
    ModelOption(
        "topK", "top_k", "top-k sampling, when sampling (0: off)", "top_k, when sampling and > 0"
    ),
    ModelOption("seed", "seed", "the seed of a sampled answer", "seed"),
    ModelOption(
        "stopSequences", "stop", "stop strings, cut from the answer", "stop (also cut here)"
    ),
    ModelOption(
        "frequencyPenalty",
        "frequency_penalty",
        "a logits processor: OpenAI's formula over the tokens generated so far",
        "frequency_penalty, when not 0",
    ),
    ModelOption(
        "presencePenalty",
        "presence_penalty",
        "a logits processor: OpenAI's formula over the tokens generated so far",
        "presence_penalty, when not 0",
    ),
    ModelOption(
        "additionalProperties.repetitionPenalty",
        "repetition_penalty",
        "transformers' repetition penalty (prompt and answer tokens)",
        "repetition_penalty (vLLM, TGI) and repeat_penalty (llama.cpp), when not 1",
    ),
)
EXTRA_OPTIONS = "additionalProperties"  # Prompty's place for options it does not name
OPTIONS_BY_NAME: dict[str, ModelOption] = {o.name: o for o in MODEL_OPTIONS}
# Spellings people bring from other tools, with the Prompty name to write instead.
OPTION_ALIASES: dict[str, str] = {
    "max_tokens": "maxOutputTokens",
    "max_new_tokens": "maxOutputTokens",
    "maxTokens": "maxOutputTokens",
    "top_p": "topP",
    "top_k": "topK",
    "stop": "stopSequences",
    "stop_sequences": "stopSequences",
    "frequency_penalty": "frequencyPenalty",
    "presence_penalty": "presencePenalty",
    "repetition_penalty": "additionalProperties.repetitionPenalty",
    "repetitionPenalty": "additionalProperties.repetitionPenalty",
}
PENALTY_RANGE = 2.0  # frequency and presence penalties lie in [-2, 2], as OpenAI's do


def option_values(options: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The GenerationParams values a prompt's `model.options` set, and the option names (dotted
    for `additionalProperties.X`) that the table does not know, which are not used."""
    values: dict[str, Any] = {}
    unused: list[str] = []
    for key, value in options.items():
        if key == EXTRA_OPTIONS and isinstance(value, Mapping):
            for sub, sub_value in value.items():
                name = f"{EXTRA_OPTIONS}.{sub}"
                if name in OPTIONS_BY_NAME:
                    values[OPTIONS_BY_NAME[name].field] = sub_value
                else:
                    unused.append(name)
        elif key in OPTIONS_BY_NAME:
            values[OPTIONS_BY_NAME[key].field] = value
        else:
            unused.append(str(key))
    return values, unused


class ParameterError(WorkbenchError):
    pass


@dataclass(frozen=True)
class GenerationParams:
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 256
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0  # OpenAI's: minus penalty × times the token was generated
    presence_penalty: float = 0.0  # OpenAI's: minus penalty once the token was generated
    do_sample: bool | None = None  # None: sample exactly when temperature > 0
    seed: int = 0
    stop: tuple[str, ...] = field(default_factory=tuple)
    # Decode under the prompt's declared output constraint: None when it declares one, False
    # never, True required (a prompt that declares none is refused). See workbench.constraints.
    constrain: bool | None = None
    # The constraint this request decodes under, resolved per row by the runner from the
    # prompt (never typed as an option): part of the key, and stored with each output.
    constraint: Constraint | None = None

    @property
    def sampling(self) -> bool:
        return self.temperature > 0 if self.do_sample is None else self.do_sample

    def validate(self, context_window: int | None = None) -> GenerationParams:
        def bad(problem: str) -> ParameterError:
            return ParameterError(f"invalid generation parameter: {problem}")

        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise bad(f"temperature must be ≥ 0, got {self.temperature}")
        if self.do_sample and self.temperature == 0:
            raise bad("do_sample needs a temperature > 0 (temperature 0 means greedy)")
        if not (0 < self.top_p <= 1):
            raise bad(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise bad(f"top_k must be ≥ 0 (0 turns it off), got {self.top_k}")
        if self.max_new_tokens <= 0:
            raise bad(f"max_new_tokens must be ≥ 1, got {self.max_new_tokens}")
        if context_window is not None and self.max_new_tokens >= context_window:
            raise bad(
                f"max_new_tokens {self.max_new_tokens} leaves no room for the prompt in the "
                f"model's context window of {context_window} tokens"
            )
        if not math.isfinite(self.repetition_penalty) or self.repetition_penalty <= 0:
            raise bad(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        for name in ("frequency_penalty", "presence_penalty"):
            value = getattr(self, name)
            if not math.isfinite(value) or abs(value) > PENALTY_RANGE:
                raise bad(f"{name} must be between -2 and 2, got {value}")
        if self.seed < 0:
            raise bad(f"seed must be ≥ 0, got {self.seed}")
        if any(not s for s in self.stop):
            raise bad("stop strings must not be empty")
        return self

    def as_dict(self) -> dict[str, Any]:
        """The fields as JSON values; `constrain` and `constraint` only when set, so the
        parameters stored before they existed (and every free request's) read as before."""
        d = asdict(self)
        d["stop"] = list(self.stop)
        if self.constrain is None:
            d.pop("constrain")
        if self.constraint is None:
            d.pop("constraint")
        else:
            d["constraint"] = self.constraint.as_dict()
        return d

    @property
    def penalised(self) -> bool:
        """Whether frequency or presence penalties apply (either is not 0)."""
        return self.frequency_penalty != 0 or self.presence_penalty != 0

    def key(self) -> str:
        """Canonical JSON of what changes the output (sampling knobs only count when sampling).

        Frequency and presence penalties count only when set, so the keys of outputs stored
        before they existed (and of every request without them) stay what they were.
        """
        d = self.as_dict()
        d["do_sample"] = self.sampling
        if not self.sampling:
            for knob in ("temperature", "top_p", "top_k", "seed"):
                d.pop(knob)
        for penalty in ("frequency_penalty", "presence_penalty"):
            if d[penalty] == 0:
                d.pop(penalty)
        d.pop("constrain", None)  # the switch: what it resolved to (`constraint`) is the key
        return json.dumps(d, sort_keys=True)

    @classmethod
    def build(
        cls,
        prompt_options: Mapping[str, Any] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> GenerationParams:
        """Defaults, then the prompt file's Prompty options, then the caller's overrides.

        Options the table (MODEL_OPTIONS) does not know are ignored here; lint names them."""
        values, _ = option_values(prompt_options or {})
        values.update(overrides or {})
        return cls.from_values(values)

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> GenerationParams:
        typed = typed_values(values)
        if "stop" in typed:
            typed["stop"] = tuple(typed["stop"])
        if typed.get("constraint") is not None:
            typed["constraint"] = Constraint.from_dict(typed["constraint"])
        return cls(**typed).validate()

    def with_(self, **changes: Any) -> GenerationParams:
        return replace(self, **changes).validate()


def typed_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Parameter values as their fields' types, ready for JSON: `{"max_new_tokens": "16"}` →
    `{"max_new_tokens": 16}`, `stop` as a list of strings, `do_sample` true, false or null.

    The one place where text typed on a command line (`--param`), in the app's Parameters
    fields or in a prompt file's options becomes a number. A run stores its overrides through
    it, so History, `runs show` and exports read 16, not "16", however the run was started.
    Names are checked (an unknown one is refused); ranges are `validate`'s job.
    """
    known = set(GenerationParams.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ParameterError(
            f"unknown generation parameter {unknown[0]!r}; known: " + ", ".join(sorted(known))
        )
    typed = {name: _coerce(name, value) for name, value in values.items()}
    if "stop" in typed:
        typed["stop"] = list(typed["stop"])
    if isinstance(typed.get("constraint"), Constraint):
        typed["constraint"] = typed["constraint"].as_dict()
    return typed


def _coerce(name: str, value: Any) -> Any:
    try:
        if name in (
            "temperature",
            "top_p",
            "repetition_penalty",
            "frequency_penalty",
            "presence_penalty",
        ):
            return float(value)
        if name in ("top_k", "max_new_tokens", "seed"):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if name == "do_sample":
            if value is None or isinstance(value, bool):
                return value
            low = str(value).strip().lower()
            if low in ("true", "1", "yes"):
                return True
            if low in ("false", "0", "no"):
                return False
            if low in ("", "auto", "none"):
                return None
            raise ValueError
        if name == "stop":
            if isinstance(value, str):
                return (value,)
            return tuple(str(s) for s in value)
        if name == "constrain":
            return _coerce("do_sample", value)
        if name == "constraint":
            if value is None or isinstance(value, Constraint):
                return value
            if isinstance(value, Mapping):
                return Constraint.from_dict(value)
            raise ValueError
    except (TypeError, ValueError, ConstraintError):
        raise ParameterError(f"invalid generation parameter: {name} cannot be {value!r}") from None
    return value


def parse_param_pairs(pairs: list[str]) -> dict[str, Any]:
    """`--param k=v` pairs (and the app's comma-separated Parameters), typed by `typed_values`;
    `stop` may repeat."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ParameterError(f"--param expects NAME=VALUE, got {pair!r}")
        if key == "stop":
            out.setdefault("stop", []).append(_unescape(value))
        else:
            out[key] = value
    return typed_values(out)


def _unescape(text: str) -> str:
    r"""`\n`, `\t` and `\\` typed on a command line; everything else (é, 日本) stays as typed."""
    return re.sub(r"\\([nt\\])", lambda m: {"n": "\n", "t": "\t", "\\": "\\"}[m.group(1)], text)
