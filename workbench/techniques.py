"""The prompting techniques the workbench knows, and the front-matter fields each one uses.

A technique is a way of shaping a prompt, not a kind of task: the same summary task can be asked
zero-shot or with a role. Prompt files name theirs in `metadata.technique` (one name or a list);
the technique's data (examples, schema, persona, constraints) lives in `inputs` with defaults so
the file renders the same in any Prompty tool.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .answers import extract_answer

TECHNIQUES: dict[str, str] = {
    "zero-shot": "a direct instruction with no examples",
    "few-shot": "worked examples (an `examples` input) before the real question",
    "chain-of-thought": "asks for reasoning steps before the answer (trigger line, worked example)",
    "role": "a system persona that sets expertise and style",
    "json-format": "asks for JSON that follows a schema (a `schema` input)",
    "constraints": "a list of explicit rules on length, style or audience",
    "self-consistency": "samples several answers and keeps the majority answer",
}


@dataclass(frozen=True)
class SelfConsistency:
    """n sampled answers, each reduced by a regex group or a JSON field, then a majority vote."""

    samples: int
    answer_pattern: str | None = None
    answer_field: str | None = None

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> SelfConsistency | None:
        samples = meta.get("samples")
        if samples is None:
            return None
        return cls(
            samples=samples if isinstance(samples, int) else 0,
            answer_pattern=meta.get("answer_pattern"),
            answer_field=meta.get("answer_field"),
        )

    def problems(self) -> list[str]:
        out = []
        if isinstance(self.samples, bool) or self.samples < 2:
            out.append("samples must be a whole number of at least 2 for a majority vote")
        if not self.answer_pattern and not self.answer_field:
            out.append(
                "self-consistency needs answer_pattern (a regex; its first group is the answer) "
                "or answer_field (a JSON field) to compare samples"
            )
        if self.answer_pattern:
            try:
                re.compile(self.answer_pattern)
            except re.error as exc:
                out.append(f"answer_pattern is not a valid regex: {exc}")
        return out

    def extract(self, text: str) -> str | None:
        """The answer a vote counts in one sample (see `answers.extract_answer`)."""
        return extract_answer(text, self.answer_pattern, self.answer_field)
