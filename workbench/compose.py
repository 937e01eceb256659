"""Editing a prompt through technique blocks: the service behind the Compose page.

People think of a few-shot prompt as "these examples", not as a YAML list under
`inputs.examples.default`; of a role prompt as "this persona". A `Draft` holds those blocks as
plain values a form can show (rows of examples, a list of rules, schema text, a trigger line,
samples and an answer pattern). `build` writes them back into the prompt file they came from,
touching only what changed, so a draft read and built again is byte-for-byte the same canonical
text and saving it gives "unchanged" rather than a new version.

Each technique's data lives in `inputs` with defaults (see techniques.py), so a built file still
renders the same in any Prompty tool.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from jinja2 import TemplateError, nodes

from . import json_text
from .choices import ChoicesError, parse_choices
from .errors import PromptFileError, WorkbenchError
from .techniques import TECHNIQUES
from .templates import (
    NAME_PATTERN,
    ROLE_LINE,
    Mode,
    PromptFile,
    coerce_value,
    dump_prompt,
    parse_prompt,
    strip_volatile,
)

PERSONA_INPUT = "persona"
SCHEMA_INPUT = "schema"
TRIGGER_INPUT = "trigger"
DEFAULT_TRIGGER = "Let's think step by step."


class ComposeError(WorkbenchError):
    """A draft that cannot become a prompt file as it is; the message says what to change."""


class SchemaError(ComposeError):
    """The JSON schema block is not a JSON object."""


class SelfConsistencyError(ComposeError):
    """Samples or answer pattern that a majority vote could not use."""


@dataclass(frozen=True)
class Examples:
    """Few-shot examples: the input that holds them and its rows as a table (one dict a row)."""

    input: str
    columns: tuple[str, ...]
    rows: tuple[Mapping[str, str], ...]


@dataclass(frozen=True)
class Constraints:
    """Rules as a list of strings held by one input (`constraints`, `requirements`, …)."""

    input: str
    items: tuple[str, ...]


@dataclass(frozen=True)
class Schema:
    """The `schema` input as the text a person edits; `as_object` if the file keeps a mapping."""

    text: str
    as_object: bool = False


@dataclass(frozen=True)
class SelfConsistencyBlock:
    samples: int
    answer_pattern: str = ""


@dataclass(frozen=True)
class Draft:
    """A prompt as its editor sees it. `None` for a block means the prompt has no such block.

    `values` are the sample inputs of the template's other variables (the form under the
    template); they become the inputs' defaults, so a new variable typed into the template is
    declared with the value given for it. A variable with no value here and no default stays
    as it is: lint flags it where it is used and a run without a value for it is refused,
    rather than it quietly becoming empty text.
    """

    name: str
    description: str
    mode: Mode
    techniques: tuple[str, ...]
    body: str
    values: Mapping[str, Any] = field(default_factory=dict)
    examples: Examples | None = None
    persona: str | None = None
    constraints: Constraints | None = None
    schema: Schema | None = None
    trigger: str | None = None
    self_consistency: SelfConsistencyBlock | None = None
    # metadata.choices: the answers a classification prompt allows (None: it declares none)
    choices: tuple[str, ...] | None = None

    @property
    def block_inputs(self) -> set[str]:
        """Inputs edited through a block, which the sample-inputs form leaves out."""
        names = set()
        if self.examples is not None:
            names.add(self.examples.input)
        if self.constraints is not None:
            names.add(self.constraints.input)
        if self.persona is not None:
            names.add(PERSONA_INPUT)
        if self.schema is not None:
            names.add(SCHEMA_INPUT)
        if self.trigger is not None:
            names.add(TRIGGER_INPUT)
        return names

    def edit(self, **changes: Any) -> Draft:
        return replace(self, **changes)


# --- starters -------------------------------------------------------------------------------

_JSON_SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"type": "string", "description": "The answer, as short as possible."},
        "confidence": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "description": "How sure you are that the answer is right, from 0 to 1.",
        },
    },
    "required": ["answer", "confidence"],
    "additionalProperties": False,
}
_QUESTION = {
    "kind": "string",
    "description": "The word problem to solve.",
    "default": "A shop sells pens in packs of 4. Sam buys 3 packs and gives away 5 pens. "
    "How many pens does Sam have left?",
}

# technique → (description, inputs, body, options, extra metadata); modelled on prompts/.
_STARTERS: dict[str, tuple[str, dict[str, Any], str, dict[str, Any], dict[str, Any]]] = {
    "zero-shot": (
        "Labels the sentiment of a text with a direct instruction and no examples.",
        {
            "text": {
                "kind": "string",
                "description": "The text to classify.",
                "default": "I love this product!",
            }
        },
        "user:\nClassify the sentiment of the following text as Positive, Negative, or "
        "Neutral.\nText: {{ text }}\nSentiment:\n",
        {"temperature": 0, "maxOutputTokens": 8},
        {},
    ),
    "few-shot": (
        "Labels sentiment after labelled examples given as earlier chat turns.",
        {
            "text": {
                "kind": "string",
                "description": "The text to classify.",
                "default": "I love this product!",
            },
            "examples": {
                "kind": "array",
                "description": "Labelled examples, each with an input text and its output label.",
                "items": {"kind": "object"},
                "default": [
                    {"input": "Great!", "output": "Positive"},
                    {"input": "Terrible", "output": "Negative"},
                ],
            },
        },
        "system:\nClassify the sentiment of each text as Positive, Negative, or Neutral. Reply "
        "with the label only.\n{% for example in examples %}\nuser:\n{{ example.input }}\n"
        "assistant:\n{{ example.output }}\n{% endfor %}\nuser:\n{{ text }}\n",
        {"temperature": 0, "maxOutputTokens": 8},
        {},
    ),
    "chain-of-thought": (
        "Solves a word problem after asking for its reasoning steps.",
        {
            "question": _QUESTION,
            TRIGGER_INPUT: {
                "kind": "string",
                "description": "The line that asks for reasoning before the answer.",
                "default": DEFAULT_TRIGGER,
            },
        },
        'system:\nSolve math word problems. Reason step by step, then end with "The answer is '
        'N."\nuser:\n{{ question }}\n{{ trigger }}\n',
        {"temperature": 0, "maxOutputTokens": 256},
        {},
    ),
    "role": (
        "Answers from a system persona that sets expertise and style.",
        {
            PERSONA_INPUT: {
                "kind": "string",
                "description": "The system persona: who the model is and how it works.",
                "default": "You are an experienced teacher. You explain clearly, "
                "with one short example.",
            },
            "task": {
                "kind": "string",
                "description": "What to do.",
                "default": "Explain what a prime number is.",
            },
        },
        "system:\n{{ persona }}\nuser:\n{{ task }}\n",
        {"temperature": 0.2, "maxOutputTokens": 256},
        {},
    ),
    "json-format": (
        "Answers a question as JSON that follows a JSON Schema.",
        {
            "question": {
                "kind": "string",
                "description": "The question to answer.",
                "default": "What is the capital of Australia?",
            },
            SCHEMA_INPUT: {
                "kind": "string",
                "description": "The JSON Schema the reply must match.",
                "default": json.dumps(_JSON_SCHEMA, indent=2),
            },
        },
        "system:\nYou reply with a single JSON object and nothing else: no Markdown, no code "
        "fences, no text before or after it.\nuser:\n{{ question }}\n\nReply with JSON only, "
        "matching this schema:\n{{ schema }}\n",
        {"temperature": 0, "maxOutputTokens": 200},
        {},
    ),
    "constraints": (
        "Explains something under explicit rules on length and audience.",
        {
            "question": {
                "kind": "string",
                "description": "What to explain.",
                "default": "Why is the sky blue?",
            },
            "constraints": {
                "kind": "array",
                "description": "Rules the answer must follow, one per item.",
                "items": {"kind": "string"},
                "default": [
                    "Answer in at most 50 words.",
                    "Use simple language suitable for a 10-year-old.",
                ],
            },
        },
        "user:\n{{ question }}\n\nFollow these rules:\n{% for rule in constraints -%}\n"
        "- {{ rule }}\n{% endfor %}\n",
        {"temperature": 0.3, "maxOutputTokens": 128},
        {},
    ),
    "self-consistency": (
        "Samples several step-by-step solutions and keeps the majority answer.",
        {"question": _QUESTION},
        "user:\n{{ question }}\n\nThink step by step, showing each calculation. Then end with a "
        'last line of the form "The answer is N.", where N is the final number.\n',
        {"temperature": 0.7, "topP": 0.95, "maxOutputTokens": 256},
        {"samples": 5, "answer_pattern": r"The answer is (-?\d+)"},
    ),
}


def new_prompt(technique: str, name: str) -> str:
    """The file text of a working starter prompt for a technique, ready to edit and save.

    A starter that already renders and lints clean shows where each block goes; an empty page
    would not.
    """
    if technique not in _STARTERS:
        raise ComposeError(
            f"unknown technique {technique!r}; choose one of " + ", ".join(TECHNIQUES)
        )
    check_name(name)
    description, inputs, body, options, extra = _STARTERS[technique]
    front: dict[str, Any] = {
        "name": name,
        "description": description,
        "model": {"apiType": "chat", "options": dict(options)},
        "inputs": copy.deepcopy(inputs),
        "template": {"format": "jinja2", "parser": "prompty"},
        "metadata": {"technique": technique, **extra},
    }
    return parse_prompt(dump_prompt(front, body), name).canonical_text()


def check_name(name: str, existing: Iterable[str] = ()) -> None:
    """A new prompt's name must be usable and not already taken (saving would add a version)."""
    if not NAME_PATTERN.match(name):
        raise ComposeError(
            f"name {name!r} is not usable: use lowercase letters, digits, '-', '_' or '.', "
            "starting with a letter or digit"
        )
    if name in set(existing):
        raise ComposeError(
            f"a prompt named {name!r} already exists: pick another name, or open it to edit"
        )


# --- reading blocks -------------------------------------------------------------------------


def read_draft(pf: PromptFile) -> Draft:
    """The editable blocks of a prompt file, as plain values a form can show."""
    specs = pf.inputs
    examples = _read_examples(pf)
    constraints = _read_constraints(pf, skip={examples.input} if examples else set())
    persona = specs.get(PERSONA_INPUT)
    schema = specs.get(SCHEMA_INPUT)
    trigger = specs.get(TRIGGER_INPUT)
    samples = pf.metadata.get("samples")
    draft = Draft(
        name=pf.name,
        description=pf.description,
        mode=pf.mode,
        techniques=pf.techniques,
        body=pf.body,
        examples=examples,
        persona=_text_default(persona.default) if persona else None,
        constraints=constraints,
        schema=_read_schema(schema.default) if schema else None,
        trigger=_text_default(trigger.default) if trigger else None,
        self_consistency=None
        if samples is None
        else SelfConsistencyBlock(
            samples=samples if isinstance(samples, int) else 0,
            answer_pattern=str(pf.metadata.get("answer_pattern") or ""),
        ),
        choices=_read_choices(pf),
    )
    managed = draft.block_inputs
    values = {
        name: specs[name].default
        for name in pf.template_variables()
        if name not in managed and name in specs and specs[name].has_default
    }
    return draft.edit(values=values)


def _read_choices(pf: PromptFile) -> tuple[str, ...] | None:
    value = pf.metadata.get("choices")
    if value is None:
        return None
    return tuple(str(v) for v in value) if isinstance(value, list) else (str(value),)


MAX_SUGGESTED_CHOICES = 10
CLASSIFYING = re.compile(r"classif|categor|\blabel|sentiment")
MAX_CHOICE_WORDS = 3


def suggested_choices(draft: Draft) -> tuple[str, ...]:
    """Labels a prompt looks like it classifies into: the distinct outputs of its few-shot
    examples when there are 2–10 of them, each a short label (at most three words), in a prompt
    that says it classifies or names the labels in its instructions. This is
    how Compose spots a classification prompt and offers answer choices prefilled; empty when
    the examples are free text (translations, summaries) or there are none."""
    if draft.examples is None or not draft.examples.rows:
        return ()
    columns = [c for c in draft.examples.columns if c.lower() in ("output", "label", "answer")]
    if not columns:
        return ()
    labels = tuple(
        dict.fromkeys(
            str(row.get(columns[0], "")).strip()
            for row in draft.examples.rows
            if str(row.get(columns[0], "")).strip()
        )
    )
    short = all(len(label.split()) <= MAX_CHOICE_WORDS for label in labels)
    if not (short and 2 <= len(labels) <= MAX_SUGGESTED_CHOICES):
        return ()
    # Short outputs alone could be translations ("Merci"): the prompt must also say it
    # classifies, or name every label in its instructions.
    said = f"{draft.description}\n{draft.body}".lower()
    named = all(label.lower() in said for label in labels)
    return labels if named or CLASSIFYING.search(said) else ()


def choices_from_text(text: str) -> tuple[str, ...]:
    """The comma-separated field as a list (checked when the draft is built)."""
    return tuple(part.strip() for part in text.split(","))


def _text_default(value: Any) -> str:
    return "" if value is None else str(value)


def _read_schema(value: Any) -> Schema:
    if isinstance(value, Mapping):
        return Schema(json.dumps(value, indent=2, ensure_ascii=False), as_object=True)
    return Schema(_text_default(value))


def _read_examples(pf: PromptFile) -> Examples | None:
    """The first input whose default is a list of dicts (or an empty list the template loops
    over reading fields): few-shot examples, shown as a table."""
    for name, spec in pf.inputs.items():
        value = spec.default
        if not isinstance(value, list) or not all(isinstance(row, Mapping) for row in value):
            continue
        fields = template_fields(pf, name)
        if not value and not fields:
            continue
        columns = list(fields)
        for row in value:
            columns += [str(k) for k in row if str(k) not in columns]
        rows = tuple({c: _text_default(row.get(c)) for c in columns if c in row} for row in value)
        return Examples(name, tuple(columns), rows)
    return None


def _read_constraints(pf: PromptFile, skip: set[str]) -> Constraints | None:
    """The first input whose default is a list of strings (rules, requirements)."""
    for name, spec in pf.inputs.items():
        value = spec.default
        if name in skip or not isinstance(value, list):
            continue
        if all(isinstance(item, str) for item in value) and (
            value or not template_fields(pf, name)
        ):
            return Constraints(name, tuple(value))
    return None


def template_fields(pf: PromptFile, input_name: str) -> tuple[str, ...]:
    """Fields the template reads from each item of a list input (`example.input`, …).

    They name the columns of an examples table even when it has no rows yet.
    """
    loop_vars = {
        node.target.name
        for node in pf.ast.find_all(nodes.For)
        if isinstance(node.iter, nodes.Name)
        and node.iter.name == input_name
        and isinstance(node.target, nodes.Name)
    }
    fields: list[str] = []
    for node in pf.ast.find_all((nodes.Getattr, nodes.Getitem)):
        key: object = None
        if isinstance(node, nodes.Getattr):
            owner, key = node.node, node.attr
        elif isinstance(node, nodes.Getitem):
            owner = node.node
            key = node.arg.value if isinstance(node.arg, nodes.Const) else None
        else:
            continue
        in_loop = isinstance(owner, nodes.Name) and owner.name in loop_vars
        if in_loop and isinstance(key, str) and key not in fields:
            fields.append(key)
    return tuple(fields)


def template_variables(body: str) -> list[str]:
    """Variables a template body reads, in order of first use; none if it does not compile yet
    (build reports the syntax error with its line)."""
    try:
        pf = PromptFile(front={"name": "draft"}, body=body.replace("\r\n", "\n"))
        used = pf.template_variables()
    except TemplateError:
        return []
    return sorted(used, key=lambda name: (used[name], name))


# --- validation -----------------------------------------------------------------------------


def parse_schema(text: str) -> dict[str, Any]:
    """The schema block's text as a JSON object, or a SchemaError saying where it breaks."""
    try:
        value = json_text.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaError(
            f"the JSON schema is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    if not isinstance(value, dict):
        raise SchemaError(
            f"the JSON schema must be a JSON object ({{ … }}), not {type(value).__name__}"
        )
    return value


def check_self_consistency(block: SelfConsistencyBlock) -> None:
    samples = block.samples
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise SelfConsistencyError(
            f"samples must be a whole number of at least 1 (2 or more for a vote), got {samples!r}"
        )
    if block.answer_pattern:
        try:
            re.compile(block.answer_pattern)
        except re.error as exc:
            raise SelfConsistencyError(
                f"the answer pattern is not a valid regular expression: {exc}; its first group "
                "(…) should capture the answer"
            ) from None


# --- building ---------------------------------------------------------------------------------


def build(base: PromptFile, draft: Draft) -> PromptFile:
    """The prompt file the draft describes, made from `base` by changing only what was edited.

    Raises ComposeError for a block that cannot be saved, PromptFileError (with the line) for a
    template that does not compile.
    """
    front: dict[str, Any] = copy.deepcopy(strip_volatile(base.front))
    body = draft.body.replace("\r\n", "\n")
    if draft.name != base.name:
        check_name(draft.name)
        front["name"] = draft.name
    if draft.description != base.description:
        front["description"] = draft.description
    if draft.mode != base.mode:
        model = front.get("model")
        front["model"] = {**(model if isinstance(model, dict) else {}), "apiType": draft.mode}
    techniques = list(draft.techniques)
    old = read_draft(base)

    if draft.examples is not None and (
        old.examples is None or _example_rows(draft.examples) != _example_rows(old.examples)
    ):
        _set_default(front, draft.examples.input, _example_rows(draft.examples))
    if draft.constraints is not None and (
        old.constraints is None or _rules(draft.constraints) != _rules(old.constraints)
    ):
        _set_default(front, draft.constraints.input, _rules(draft.constraints))
    if draft.schema is not None:
        parsed = parse_schema(draft.schema.text)
        if draft.schema != old.schema:
            value = parsed if draft.schema.as_object else draft.schema.text
            _set_default(front, SCHEMA_INPUT, value)
    body = _apply_persona(front, body, draft.mode, draft.persona, old.persona, techniques)
    body = _apply_trigger(front, body, draft.trigger, old.trigger, techniques)
    _apply_self_consistency(front, draft.self_consistency, old.self_consistency, techniques)
    _apply_choices(front, draft.choices, old.choices)
    if techniques != list(base.techniques):
        _set_techniques(front, techniques)

    box = draft.body.replace("\r\n", "\n")
    try:
        first = parse_prompt(dump_prompt(front, body), draft.name)
        used = first.template_variables()
        if draft.trigger is None and old.trigger is not None and TRIGGER_INPUT in used:
            line = box_line(body, box, first.template_line(used[TRIGGER_INPUT]))
            raise ComposeError(
                f"chain-of-thought is off but template line {line} still uses "
                "{{ trigger }}: remove it there, or switch chain-of-thought back on"
            )
        _apply_values(front, first, base, draft.values, protected=draft.block_inputs)
        return parse_prompt(dump_prompt(front, body), draft.name)
    except PromptFileError as exc:  # the line in the box the person typed, not the one built
        exc.template_line = box_line(body, box, exc.template_line)
        raise


def box_line(built: str, box: str, line: int | None) -> int | None:
    """The line of the template box that line `line` of the built template stands for.

    Building adds lines nobody typed (a `{{ persona }}` line when the persona is switched on)
    and drops some (switching a block off), so the two texts can differ until the page shows
    the saved version. Lines both have map to each other; a line only the build has maps to
    the box line it follows (the first line, at the top).
    """
    if line is None or built == box:
        return line
    ours, theirs = built.split("\n"), box.split("\n")
    matcher = difflib.SequenceMatcher(None, ours, theirs, autojunk=False)
    follows = 1
    for i, j, size in matcher.get_matching_blocks():
        if line - 1 < i:
            break
        if line - 1 < i + size:
            return j + (line - 1 - i) + 1
        follows = j + size
    return max(1, min(follows, len(theirs)))


def apply_draft(base: PromptFile, draft: Draft) -> str:
    """The new prompt file text (canonical), as Library.save would store it."""
    return build(base, draft).canonical_text()


def changes(base: PromptFile, new: PromptFile) -> str:
    """Unified diff of the edits not saved yet (empty when there are none)."""
    return "".join(
        difflib.unified_diff(
            base.canonical_text().splitlines(keepends=True),
            new.canonical_text().splitlines(keepends=True),
            fromfile="saved",
            tofile="edited",
        )
    )


def _example_rows(examples: Examples) -> list[dict[str, str]]:
    """Table rows back to a list of dicts; empty cells are left out, empty rows dropped."""
    out = []
    for row in examples.rows:
        kept = {str(k): str(v) for k, v in row.items() if v is not None and str(v) != ""}
        if any(v.strip() for v in kept.values()):
            out.append(kept)
    return out


def _var_line(name: str) -> re.Pattern[str]:
    """A template line that is only `{{ name }}`, with its line break."""
    return re.compile(r"^[ \t]*\{\{-?\s*" + name + r"\s*-?\}\}[ \t]*(?:\n|\Z)", re.M)


def _rules(constraints: Constraints) -> list[str]:
    """Rules back to a list; blank rows (a table's empty new line) are dropped."""
    return [str(item) for item in constraints.items if item is not None and str(item).strip()]


def _apply_trigger(
    front: dict[str, Any], body: str, trigger: str | None, old: str | None, techniques: list[str]
) -> str:
    """Chain-of-thought on adds a `trigger` input and a `{{ trigger }}` line at the end of the
    template; off removes both. The technique name is added when switched on but not removed
    when switched off: worked examples may still make it a chain-of-thought prompt."""
    if trigger is not None and not trigger.strip():
        raise ComposeError("the chain-of-thought trigger line is empty: write one or switch it off")
    if trigger is None:
        if old is not None:
            _drop_input(front, TRIGGER_INPUT)
            body = _var_line(TRIGGER_INPUT).sub("", body)
        return body
    if old is None:
        _add_input(
            front,
            TRIGGER_INPUT,
            {
                "kind": "string",
                "description": "The line that asks for reasoning before the answer.",
                "default": trigger,
            },
        )
        if not _var_line(TRIGGER_INPUT).search(body):
            body = body.rstrip("\n") + "\n{{ " + TRIGGER_INPUT + " }}\n"
        if "chain-of-thought" not in techniques:
            techniques.append("chain-of-thought")
    elif trigger != old:
        _set_default(front, TRIGGER_INPUT, trigger)
    return body


_EMPTY_SYSTEM = re.compile(
    r"^[ \t]*system[ \t]*:[ \t]*\n(?=[ \t]*(?:user|assistant|developer)[ \t]*:|\s*\Z)",
    re.M | re.I,
)


def _apply_persona(
    front: dict[str, Any],
    body: str,
    mode: Mode,
    persona: str | None,
    old: str | None,
    techniques: list[str],
) -> str:
    """A persona is the `persona` input shown as the system message. Switching it on adds the
    input and a `{{ persona }}` line at the start of the system message (making one if there is
    none); off removes both. As for chain-of-thought, `role` is added but never removed."""
    if persona is None:
        if old is not None:
            _drop_input(front, PERSONA_INPUT)
            body = _EMPTY_SYSTEM.sub("", _var_line(PERSONA_INPUT).sub("", body))
        return body
    if old is None:
        _add_input(
            front,
            PERSONA_INPUT,
            {
                "kind": "string",
                "description": "The system persona: who the model is and how it works.",
                "default": persona,
            },
        )
        if not _var_line(PERSONA_INPUT).search(body):
            body = _insert_persona_line(body, mode)
        if "role" not in techniques:
            techniques.append("role")
    elif persona != old:
        _set_default(front, PERSONA_INPUT, persona)
    return body


def _insert_persona_line(body: str, mode: Mode) -> str:
    line = "{{ " + PERSONA_INPUT + " }}"
    if mode == "completion":
        return f"{line}\n\n{body.lstrip(chr(10))}"
    lines = body.split("\n")
    for i, text in enumerate(lines):
        if not text.strip():
            continue
        match = ROLE_LINE.match(text.strip())
        if match and match.group(1).lower() == "system":
            lines.insert(i + 1, line)
        elif match:
            lines.insert(i, f"system:\n{line}")
        else:  # text before any role line is already the system message
            lines.insert(i, line)
        return "\n".join(lines)
    return f"system:\n{line}\n{body}"


def _apply_self_consistency(
    front: dict[str, Any],
    block: SelfConsistencyBlock | None,
    old: SelfConsistencyBlock | None,
    techniques: list[str],
) -> None:
    """Samples and answer pattern live in metadata; switching the block adds or removes the
    `self-consistency` technique with them, since nothing else in the file is about it."""
    if block is not None:
        check_self_consistency(block)
    if block == old:
        return
    meta = front.get("metadata")
    meta = dict(meta) if isinstance(meta, dict) else {}
    if block is None:
        meta.pop("samples", None)
        meta.pop("answer_pattern", None)
        if "self-consistency" in techniques:
            techniques.remove("self-consistency")
    else:
        meta["samples"] = block.samples
        if block.answer_pattern:
            meta["answer_pattern"] = block.answer_pattern
        else:
            meta.pop("answer_pattern", None)
        if "self-consistency" not in techniques:
            techniques.append("self-consistency")
    if meta:
        front["metadata"] = meta
    else:
        front.pop("metadata", None)


def with_calibration(pf: PromptFile, on: bool) -> PromptFile:
    """`pf` declaring (or not) that its answer choices are calibrated (metadata.calibrate)."""
    if bool(pf.metadata.get("calibrate")) == on:
        return pf
    front: dict[str, Any] = copy.deepcopy(strip_volatile(pf.front))
    meta = dict(front.get("metadata") or {})
    if on:
        meta["calibrate"] = True
    else:
        meta.pop("calibrate", None)
    front["metadata"] = meta
    return parse_prompt(dump_prompt(front, pf.body), pf.name)


def _apply_choices(
    front: dict[str, Any], choices: tuple[str, ...] | None, old: tuple[str, ...] | None
) -> None:
    """metadata.choices, written only when edited; refused in one line when unusable."""
    if choices == old:
        return
    meta = front.get("metadata")
    meta = dict(meta) if isinstance(meta, dict) else {}
    if choices is None:
        meta.pop("choices", None)
        meta.pop("calibrate", None)  # calibration is of the choices: it goes with them
    else:
        try:
            meta["choices"] = list(parse_choices(list(choices)))
        except ChoicesError as exc:
            raise ComposeError(f"Answer choices: {exc}") from None
    if meta:
        front["metadata"] = meta
    else:
        front.pop("metadata", None)


def _set_techniques(front: dict[str, Any], techniques: Sequence[str]) -> None:
    meta = front.get("metadata")
    meta = dict(meta) if isinstance(meta, dict) else {}
    unique = list(dict.fromkeys(techniques))
    if not unique:
        meta.pop("technique", None)
    else:
        meta["technique"] = unique[0] if len(unique) == 1 else unique
    if meta:
        front["metadata"] = meta
    else:
        front.pop("metadata", None)


def _apply_values(
    front: dict[str, Any],
    first: PromptFile,
    base: PromptFile,
    values: Mapping[str, Any],
    protected: set[str],
) -> None:
    """Sample inputs become defaults; variables new to the template are declared with the
    value typed for them; inputs whose last use the edit removed from the template go with it
    (lint would flag them as unused).

    A value equal to the text the form showed for the default is no edit, even when the
    default is not text (`5` under `kind: string`): an untouched form builds the saved file.
    A new variable with nothing typed is left undeclared, never given an empty default that
    would render as nothing without a word.
    """
    used = first.template_variables()
    specs = first.inputs
    was_used = base.template_variables()
    for name in specs:
        if name in was_used and name not in used and name not in protected:
            _drop_input(front, name)
    for name, value in values.items():
        if name not in used or value is None:
            continue
        spec = specs.get(name)
        if spec is None:
            if value != "":
                _add_input(front, name, {"kind": "string", "default": value})
            continue
        if spec.has_default and value == form_text(spec.default):
            continue
        new = coerce_value(name, spec.kind, value)
        current = spec.default if spec.has_default else ""
        if new != current:
            _set_default(front, name, new)


def form_text(value: Any) -> str:
    """The text a form box shows for a value (the Sample inputs, the Playground's inputs)."""
    return "" if value is None else str(value)


# --- raw input entries (Prompty allows a mapping or a list of specs) -------------------------


def _entry(front: dict[str, Any], name: str) -> dict[str, Any] | None:
    raw = front.get("inputs")
    if isinstance(raw, dict) and name in raw:
        if not isinstance(raw[name], dict):  # `name: example` shorthand → a full spec
            raw[name] = {"kind": "string"}
        entry: dict[str, Any] = raw[name]
        return entry
    if isinstance(raw, list):
        for item in raw:
            if isinstance(item, dict) and item.get("name") == name:
                return item
    return None


def _set_default(front: dict[str, Any], name: str, value: Any) -> None:
    entry = _entry(front, name)
    if entry is None:
        _add_input(front, name, {"kind": "string", "default": value})
    else:
        entry["default"] = value


def _add_input(front: dict[str, Any], name: str, spec: dict[str, Any]) -> None:
    raw = front.get("inputs")
    if isinstance(raw, list):
        raw.append({"name": name, **spec})
    else:
        front["inputs"] = {**(raw if isinstance(raw, dict) else {}), name: spec}


def _drop_input(front: dict[str, Any], name: str) -> None:
    raw = front.get("inputs")
    if isinstance(raw, dict):
        raw.pop(name, None)
    elif isinstance(raw, list):
        raw[:] = [i for i in raw if not (isinstance(i, dict) and i.get("name") == name)]
    if not front.get("inputs"):
        front.pop("inputs", None)
