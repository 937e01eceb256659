"""Warnings about a prompt file that parses but probably does not say what its author meant.

Lint never raises: problems that make a file unusable are PromptFileErrors at parse time; what is
left here are the traps people fall into (an undeclared variable, JSON braces read as Jinja, a
role line in a completion prompt), each with the file line to look at.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .errors import WorkbenchError
from .params import (
    EXTRA_OPTIONS,
    MODEL_OPTIONS,
    OPTION_ALIASES,
    GenerationParams,
    option_values,
)
from .techniques import TECHNIQUES, SelfConsistency
from .templates import ROLE_LINE, PromptFile

Severity = Literal["warning", "info"]


@dataclass(frozen=True)
class LintIssue:
    code: str
    message: str
    line: int | None = None
    severity: Severity = "warning"

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.severity}: {self.message}"


_RAW_BLOCK = re.compile(r"\{%-?\s*raw\s*-?%\}.*?\{%-?\s*endraw\s*-?%\}", re.S)
_JSON_IN_EXPRESSION = re.compile(r"\{\{\s*(\{|\[\s*\{|\"[^\"\n]*\"\s*:)")
_COMMENT_START = re.compile(r"\{#")


def lint(pf: PromptFile) -> list[LintIssue]:
    issues: list[LintIssue] = []
    issues += _variables(pf)
    issues += _braces(pf)
    issues += _sections(pf)
    issues += _front(pf)
    return sorted(issues, key=lambda i: (i.line or 0, i.code))


def _variables(pf: PromptFile) -> list[LintIssue]:
    used = pf.template_variables()
    declared = pf.inputs
    out = []
    for name, line in used.items():
        if name not in declared:
            out.append(
                LintIssue(
                    "undeclared-variable",
                    f"variable {name!r} is used but not declared in inputs, so it has no "
                    "default and a run without a value for it is refused; declare it with a "
                    "default so forms and other Prompty tools know it",
                    line,
                )
            )
    for name in declared:
        if name not in used:
            out.append(
                LintIssue(
                    "unused-variable",
                    f"input {name!r} is declared but the template never uses it",
                    pf.line_of("inputs", name),
                )
            )
    return out


def _braces(pf: PromptFile) -> list[LintIssue]:
    out = []
    # Text inside {% raw %} is shown as is: blank it out, keeping its line breaks.
    unraw = _RAW_BLOCK.sub(lambda m: "\n" * m.group(0).count("\n"), pf.body)
    for offset, line in enumerate(unraw.splitlines()):
        lineno = pf.body_line + offset
        if _JSON_IN_EXPRESSION.search(line):
            out.append(
                LintIssue(
                    "braces-as-jinja",
                    "'{{' here starts a Jinja expression, so this JSON is evaluated, not shown; "
                    "wrap literal JSON in {% raw %}…{% endraw %}, or keep it in an input and "
                    "insert it with {{ name }} or {{ name | tojson }}",
                    lineno,
                )
            )
        if _COMMENT_START.search(line):
            out.append(
                LintIssue(
                    "jinja-comment",
                    "'{#' starts a Jinja comment: the text up to '#}' is dropped from the prompt; "
                    "use {% raw %}{#{% endraw %} if you meant the characters",
                    lineno,
                )
            )
    for name, spec in pf.inputs.items():
        if _has_jinja_text(spec.default):
            out.append(
                LintIssue(
                    "jinja-in-value",
                    f"the default of input {name!r} contains '{{{{' or '{{%': values are inserted "
                    "as text and never rendered, so it will reach the model literally",
                    pf.line_of("inputs", name),
                    "info",
                )
            )
    return out


def _has_jinja_text(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, Mapping):
        return any(_has_jinja_text(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_jinja_text(v) for v in value)
    return False


def _sections(pf: PromptFile) -> list[LintIssue]:
    out = []
    if not pf.body.strip():
        return [LintIssue("empty-template", "the template body is empty", pf.body_line)]
    sections = pf.sections()
    if pf.mode == "completion":
        for offset, line in enumerate(pf.body.splitlines()):
            if ROLE_LINE.match(line.strip()):
                out.append(
                    LintIssue(
                        "roles-in-completion",
                        f"{line.strip()!r} is a role line in a completion prompt: completion "
                        "prompts are fed as plain text, so role lines are dropped; remove it or "
                        "set model.apiType to chat",
                        pf.body_line + offset,
                    )
                )
        return out
    for section in sections:
        if section.line and not section.text.strip():
            out.append(
                LintIssue(
                    "empty-section",
                    f"the {section.role}: section is empty; models see an empty message",
                    section.line,
                )
            )
    roles = [s.role for s in sections]
    if "user" not in roles:
        out.append(
            LintIssue(
                "no-user-message",
                "a chat prompt without a user: section sends only a system message; most chat "
                "templates expect a user turn",
                pf.body_line,
            )
        )
    if "system" in roles[1:]:
        late = next(s.line for s in sections[1:] if s.role == "system")
        out.append(
            LintIssue(
                "system-not-first",
                "system: comes after other messages; chat templates put the system message first",
                late,
            )
        )
    return out


def _front(pf: PromptFile) -> list[LintIssue]:
    out = []
    for technique in pf.techniques:
        if technique not in TECHNIQUES:
            close = difflib.get_close_matches(technique, TECHNIQUES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            out.append(
                LintIssue(
                    "unknown-technique",
                    f"unknown technique {technique!r}{hint}; known: " + ", ".join(TECHNIQUES),
                    pf.line_of("metadata", "technique"),
                )
            )
    out += option_issues(pf)
    sc = SelfConsistency.from_metadata(pf.metadata)
    if sc is not None:
        for problem in sc.problems():
            out.append(LintIssue("self-consistency", problem, pf.line_of("metadata", "samples")))
        temperature = pf.options.get("temperature")
        if isinstance(temperature, int | float) and temperature <= 0:
            out.append(
                LintIssue(
                    "self-consistency",
                    "samples with temperature 0 are all the same answer; use a temperature > 0",
                    pf.line_of("model", "options", "temperature"),
                )
            )
    if "---" in pf.front_text.replace("\n---\n", "\n"):
        out.append(
            LintIssue(
                "dashes-in-front-matter",
                "'---' inside the front matter: other Prompty tools end the front matter there",
                None,
                "info",
            )
        )
    return out


def option_issues(pf: PromptFile) -> list[LintIssue]:
    """Every option is used as MODEL_OPTIONS says, or named here as ignored; every value used
    is checked as a run would check it."""
    out = []
    values, unused = option_values(pf.options)
    for name in unused:
        path = name.split(".", 1)
        line = pf.line_of("model", "options", *path) or pf.line_of("model", "options", path[0])
        alias = OPTION_ALIASES.get(path[-1])
        if alias is not None:
            hint = f"; write {alias!r}"
        elif len(path) > 1:
            inside = [o.name.split(".", 1)[1] for o in MODEL_OPTIONS if "." in o.name]
            hint = f"; under {EXTRA_OPTIONS} only {', '.join(inside)} is used"
        else:
            hint = "; the options used are " + ", ".join(o.name for o in MODEL_OPTIONS)
        out.append(
            LintIssue(
                "unknown-option",
                f"model option {name!r} is not used by the workbench and will be ignored{hint}",
                line,
            )
        )
    for option in MODEL_OPTIONS:
        if option.field not in values:
            continue
        try:
            GenerationParams.from_values({option.field: values[option.field]})
        except WorkbenchError as exc:
            problem = str(exc).removeprefix("invalid generation parameter: ")
            out.append(
                LintIssue(
                    "invalid-option",
                    f"model option {option.name!r} cannot be used: {problem}",
                    pf.line_of("model", "options", *option.name.split(".", 1)),
                )
            )
    return out
