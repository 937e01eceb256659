"""Few-shot demonstrations: put a chosen list of labelled examples into a prompt file.

The few-shot search (workbench.improve) tries many example lists on one prompt, so every trial
must be an ordinary prompt file that renders, lints and is stored as a version. A prompt that
already has an examples block gets its rows replaced through compose's Draft/build, so nothing
else in the file moves. A zero-shot prompt gets a block made from its *own* question format,
which is what a small model copies best:

- completion mode: the lines of the last message from the first one that uses the question
  variable (`Text: {{ text }}` / `Sentiment:`) are repeated in a loop above the question, with
  the example's input in place of the variable and its label after the last line;
- chat mode: each example is an earlier user turn (the whole last user message, with the
  example's input in it) answered by an assistant turn holding the label.

The examples live in an `examples` input with a default, like the built-in few-shot prompts,
so the file still renders the same in any Prompty tool.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .compose import Examples, build, read_draft, template_fields
from .errors import WorkbenchError
from .templates import ROLE_LINE, Mode, PromptFile, dump_prompt, parse_prompt, strip_volatile

EXAMPLES_INPUT = "examples"
LOOP_VARIABLE = "example"
INPUT_FIELD, OUTPUT_FIELD = "input", "output"
ZERO_SHOT, FEW_SHOT = "zero-shot", "few-shot"
COMPLETION_STOP = "\n"  # a completion prompt switched from chat stops at the end of its label


class DemosError(WorkbenchError):
    """A prompt the examples cannot be put into, said with what to change."""


@dataclass(frozen=True)
class Demo:
    """One labelled example: the text that fills the question variable, and its answer."""

    input: str
    output: str


def with_demos(pf: PromptFile, demos: Sequence[Demo], question: str) -> PromptFile:
    """`pf` with exactly these examples, in this order; `question` is the variable a dataset
    row fills (`text`). Zero examples on a zero-shot prompt leave it as it is."""
    draft = read_draft(pf)
    if draft.examples is not None:
        source, target = _fields(pf, draft.examples)
        rows = tuple({source: d.input, target: d.output} for d in demos)
        columns = tuple(dict.fromkeys((*draft.examples.columns, source, target)))
        return build(pf, draft.edit(examples=Examples(draft.examples.input, columns, rows)))
    if not demos:
        return pf
    used = pf.template_variables()
    if question not in used:
        raise DemosError(f"{pf.name}: the template does not use {{{{ {question} }}}}")
    for name in (EXAMPLES_INPUT, LOOP_VARIABLE):
        if name in used or (name == EXAMPLES_INPUT and name in pf.inputs):
            raise DemosError(
                f"{pf.name}: the template already uses a variable named {name!r}, which the "
                "examples block would take; rename it"
            )
    body = _chat_loop(pf.body, question) if pf.mode == "chat" else _completion_loop(pf, question)
    front: dict[str, Any] = copy.deepcopy(strip_volatile(pf.front))
    inputs = front.get("inputs")
    spec = {
        "kind": "array",
        "description": "Labelled examples, each with an input text and its output label.",
        "items": {"kind": "object"},
        "default": [{INPUT_FIELD: d.input, OUTPUT_FIELD: d.output} for d in demos],
    }
    if isinstance(inputs, list):
        inputs.append({"name": EXAMPLES_INPUT, **spec})
    else:
        front["inputs"] = {**(inputs if isinstance(inputs, dict) else {}), EXAMPLES_INPUT: spec}
    techniques = [t for t in pf.techniques if t != ZERO_SHOT]
    meta = dict(front.get("metadata") or {})
    meta["technique"] = list(dict.fromkeys([FEW_SHOT, *techniques]))
    if len(meta["technique"]) == 1:
        meta["technique"] = meta["technique"][0]
    front["metadata"] = meta
    return parse_prompt(dump_prompt(front, body), pf.name)


def with_mode(pf: PromptFile, mode: Mode) -> PromptFile:
    """`pf` sent as `mode`. A chat prompt turned into raw text has no end-of-turn to stop at,
    so it stops at the end of its line unless it names its own stop sequences."""
    if pf.mode == mode:
        return pf
    built = build(pf, read_draft(pf).edit(mode=mode))
    if mode != "completion" or built.options.get("stopSequences"):
        return built
    return with_line_stop(built)


def with_line_stop(pf: PromptFile) -> PromptFile:
    """`pf` stopping at the end of a line as well. A generated label in a completion prompt is
    followed by the next example's text; a stop sequence that is a whole word ("Text:") can
    arrive after the token limit, leaving "Positive\n\nText" where "Positive" was meant."""
    stops = pf.options.get("stopSequences")
    stops = list(stops) if isinstance(stops, list) else []
    if COMPLETION_STOP in stops:
        return pf
    front: dict[str, Any] = copy.deepcopy(strip_volatile(pf.front))
    options = front.setdefault("model", {}).setdefault("options", {})
    options["stopSequences"] = [*stops, COMPLETION_STOP]
    return parse_prompt(dump_prompt(front, pf.body), pf.name)


def with_choices(pf: PromptFile, choices: Sequence[str] | None) -> PromptFile:
    """`pf` declaring these answer choices (metadata.choices; None removes them)."""
    draft = read_draft(pf)
    wanted = tuple(choices) if choices is not None else None
    return pf if draft.choices == wanted else build(pf, draft.edit(choices=wanted))


def demo_count(pf: PromptFile) -> int:
    draft = read_draft(pf)
    return len(draft.examples.rows) if draft.examples is not None else 0


# --- reading an existing examples block -----------------------------------------------------


def _fields(pf: PromptFile, examples: Examples) -> tuple[str, str]:
    """Which fields of an example row hold its input and its label: `input`/`output` when the
    block has them, else the first two fields the template reads from each example."""
    columns = list(template_fields(pf, examples.input)) or list(examples.columns)
    if INPUT_FIELD in columns and OUTPUT_FIELD in columns:
        return INPUT_FIELD, OUTPUT_FIELD
    if len(columns) < 2:
        raise DemosError(
            f"{pf.name}: its examples block ({examples.input}) has no input and output fields "
            f"to fill (it reads: {', '.join(columns) or 'none'})"
        )
    return columns[0], columns[1]


# --- making a block from the prompt's own question ------------------------------------------


def _uses(question: str) -> re.Pattern[str]:
    return re.compile(r"\{\{(-?\s*)" + re.escape(question) + r"\b")


def _last_message(body: str) -> tuple[list[str], list[str]]:
    """The body's lines split before the last role line (all of it when there is none)."""
    lines = body.rstrip("\n").split("\n")
    start = 0
    for i, line in enumerate(lines):
        if ROLE_LINE.match(line.strip()):
            start = i
    return lines[:start], lines[start:]


def _completion_loop(pf: PromptFile, question: str) -> str:
    before, message = _last_message(pf.body)
    uses = _uses(question)
    first = next((i for i, line in enumerate(message) if uses.search(line)), None)
    if first is None:
        raise DemosError(
            f"{pf.name}: {{{{ {question} }}}} is not in the last message, so there is no "
            "question format to repeat for the examples"
        )
    head, asked = message[:first], message[first:]
    while asked and not asked[-1].strip():
        asked.pop()
    shown = [uses.sub(r"{{\1" + f"{LOOP_VARIABLE}.{INPUT_FIELD}", line) for line in asked]
    answer = "{{ " + f"{LOOP_VARIABLE}.{OUTPUT_FIELD}" + " }}"
    if uses.search(asked[-1]):  # the question is the last line: the label goes under it
        shown.append(answer)
    else:
        shown[-1] = f"{shown[-1].rstrip()} {answer}"
    separator = [""] if head and not ROLE_LINE.match(head[-1].strip()) else []
    loop = [
        f"{{% for {LOOP_VARIABLE} in {EXAMPLES_INPUT} -%}}",
        *shown,
        "",
        "{% endfor -%}",
    ]
    return "\n".join([*before, *head, *separator, *loop, *asked]) + "\n"


def _chat_loop(body: str, question: str) -> str:
    before, message = _last_message(body)
    if not message or not ROLE_LINE.match(message[0].strip()):
        before, message = [], ["user:", *message]  # a body with no role line is one user turn
    uses = _uses(question)
    content = message[1:]
    while content and not content[-1].strip():
        content.pop()
    if not any(uses.search(line) for line in content):
        raise DemosError(
            f"{{{{ {question} }}}} is not in the last message, so there is no question to "
            "repeat for the examples"
        )
    shown = [uses.sub(r"{{\1" + f"{LOOP_VARIABLE}.{INPUT_FIELD}", line) for line in content]
    loop = [
        f"{{% for {LOOP_VARIABLE} in {EXAMPLES_INPUT} -%}}",
        "user:",
        *shown,
        "assistant:",
        "{{ " + f"{LOOP_VARIABLE}.{OUTPUT_FIELD}" + " }}",
        "{% endfor -%}",
    ]
    return "\n".join([*before, *loop, message[0], *content]) + "\n"
