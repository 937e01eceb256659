"""A prompt's instruction: find it, replace it, and ask a model to rewrite it.

Instruction candidates (`workbench improve --instructions N`) are rewrites of the one sentence
or paragraph that tells the model what to do; each rewrite is scored like any other variant.
"The instruction" is read from the body, not declared: the first run of plain lines — no
template syntax, no role line — before the question. That covers the built-ins
("Classify the sentiment of the following text as …") and most hand-written prompts; a prompt
without one (all template, or a question only) has no instruction to rewrite and the search
says so instead of guessing.

A rewrite comes back from a model as free text; it is kept only when it is one plain paragraph
(no template syntax that would change what the file renders, no role line that would add a
turn), so a variant is always an ordinary prompt that renders and lints.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .templates import ROLE_LINE, PromptFile, dump_prompt, parse_prompt, strip_volatile

TEMPLATE_SYNTAX = re.compile(r"\{\{|\{%|\{#|%\}|\}\}|#\}")
MAX_INSTRUCTION_CHARS = 600  # a rewrite longer than this is an essay, not an instruction
MIN_WORDS = 3

# The meta-prompt: chat, so an instruction-tuned model answers in its own turn. Plain words,
# because the 135M default follows a short request better than a long one (README).
META_PROMPT = """\
---
name: rewrite-instruction
description: Asks a model for a rewrite of a prompt's instruction.
model:
  apiType: chat
  options:
    temperature: 0.9
    maxOutputTokens: 80
inputs:
  instruction:
    kind: string
    default: Classify the text.
template:
  format: jinja2
  parser: prompty
---
system:
You improve instructions for a language model. Keep the task and every answer label. Reply with \
the new instruction only, in one or two sentences.
user:
Rewrite this instruction so that it is clearer:
{{ instruction }}
"""


@dataclass(frozen=True)
class Span:
    """Lines [start, end) of the body holding the instruction."""

    start: int
    end: int


def instruction_span(pf: PromptFile) -> Span | None:
    """The first run of plain lines before any template syntax, or None."""
    lines = pf.body.split("\n")
    start: int | None = None
    for i, line in enumerate(lines):
        text = line.strip()
        plain = bool(text) and not ROLE_LINE.match(text) and not TEMPLATE_SYNTAX.search(text)
        if plain and start is None:
            start = i
        elif not plain and start is not None:
            return _worded(lines, Span(start, i))
        if TEMPLATE_SYNTAX.search(text) and start is None:
            return None  # the question came first: nothing before it instructs
    return _worded(lines, Span(start, len(lines))) if start is not None else None


def _worded(lines: list[str], span: Span) -> Span | None:
    words = " ".join(lines[span.start : span.end]).split()
    return span if len(words) >= MIN_WORDS else None


def instruction_of(pf: PromptFile) -> str | None:
    span = instruction_span(pf)
    if span is None:
        return None
    return "\n".join(pf.body.split("\n")[span.start : span.end]).strip()


def with_instruction(pf: PromptFile, text: str) -> PromptFile:
    """`pf` with its instruction replaced by `text` (checked by `clean_rewrite` first)."""
    span = instruction_span(pf)
    if span is None:
        raise ValueError(f"{pf.name} has no instruction to replace")
    lines = pf.body.split("\n")
    body = "\n".join([*lines[: span.start], text.strip(), *lines[span.end :]])
    return parse_prompt(dump_prompt(dict(strip_volatile(pf.front)), body), pf.name)


_LEAD = re.compile(
    r"^\s*(?:here(?:'s| is)[^:\n]*:|(?:new|rewritten|improved|revised)?\s*instruction\s*:)\s*",
    re.IGNORECASE,
)


def clean_rewrite(text: str, original: str, labels: Sequence[str] = ()) -> str | None:
    """A model's answer as an instruction, or None when it is not usable: empty, the original
    again, too short or long, holding template syntax or a role line, or dropping one of the
    `labels` the original names (a rewrite that forgets "Neutral" has changed the task)."""
    answer = _LEAD.sub("", text.strip())
    paragraph = answer.split("\n\n")[0].strip().strip('"“”').strip()
    lines = [line.strip() for line in paragraph.split("\n") if line.strip()]
    if any(ROLE_LINE.match(line) for line in lines):
        return None
    out = " ".join(lines)
    if (
        len(out.split()) < MIN_WORDS
        or len(out) > MAX_INSTRUCTION_CHARS
        or TEMPLATE_SYNTAX.search(out)
        or _same(out, original)
        or any(
            label.lower() in original.lower() and label.lower() not in out.lower()
            for label in labels
        )
    ):
        return None
    return out


def _same(a: str, b: str) -> bool:
    def norm(s: str) -> str:
        return " ".join(s.lower().split()).rstrip(".")

    return norm(a) == norm(b)


def meta_prompt() -> PromptFile:
    return parse_prompt(META_PROMPT, "rewrite-instruction")
