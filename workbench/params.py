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

from .errors import WorkbenchError

# Prompty option name → our field name.
PROMPTY_OPTIONS = {
    "temperature": "temperature",
    "topP": "top_p",
    "topK": "top_k",
    "maxOutputTokens": "max_new_tokens",
    "seed": "seed",
    "stopSequences": "stop",
}


class ParameterError(WorkbenchError):
    pass


@dataclass(frozen=True)
class GenerationParams:
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 256
    repetition_penalty: float = 1.0
    do_sample: bool | None = None  # None: sample exactly when temperature > 0
    seed: int = 0
    stop: tuple[str, ...] = field(default_factory=tuple)

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
        if self.seed < 0:
            raise bad(f"seed must be ≥ 0, got {self.seed}")
        if any(not s for s in self.stop):
            raise bad("stop strings must not be empty")
        return self

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d

    def key(self) -> str:
        """Canonical JSON of what changes the output (sampling knobs only count when sampling)."""
        d = self.as_dict()
        d["do_sample"] = self.sampling
        if not self.sampling:
            for knob in ("temperature", "top_p", "top_k", "seed"):
                d.pop(knob)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def build(
        cls,
        prompt_options: Mapping[str, Any] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> GenerationParams:
        """Defaults, then the prompt file's Prompty options, then the caller's overrides."""
        values: dict[str, Any] = {}
        for key, value in (prompt_options or {}).items():
            if key in PROMPTY_OPTIONS:
                values[PROMPTY_OPTIONS[key]] = value
            elif (
                key == "additionalProperties"
                and isinstance(value, Mapping)
                and "repetitionPenalty" in value
            ):
                values["repetition_penalty"] = value["repetitionPenalty"]
        values.update(overrides or {})
        return cls.from_values(values)

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> GenerationParams:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ParameterError(
                f"unknown generation parameter {unknown[0]!r}; known: " + ", ".join(sorted(known))
            )
        typed: dict[str, Any] = {}
        for name, value in values.items():
            typed[name] = _coerce(name, value)
        return cls(**typed).validate()

    def with_(self, **changes: Any) -> GenerationParams:
        return replace(self, **changes).validate()


def _coerce(name: str, value: Any) -> Any:
    try:
        if name in ("temperature", "top_p", "repetition_penalty"):
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
    except (TypeError, ValueError):
        raise ParameterError(f"invalid generation parameter: {name} cannot be {value!r}") from None
    return value


def parse_param_pairs(pairs: list[str]) -> dict[str, Any]:
    """`--param k=v` pairs; `stop` may repeat."""
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
    return out


def _unescape(text: str) -> str:
    r"""`\n`, `\t` and `\\` typed on a command line; everything else (é, 日本) stays as typed."""
    return re.sub(r"\\([nt\\])", lambda m: {"n": "\n", "t": "\t", "\\": "\\"}[m.group(1)], text)
