"""The template editor's view of a draft: the file it builds, its preview, and every problem
placed on a line of the box the person types in.

Errors and lint speak in file lines (front matter included), which is right for a file open in
an editor or named on a command line. The Compose page shows the template alone, so a syntax
error on the second line of the box must say "template line 2", not "line 25". Problems in
the front matter, which Compose writes for the person, keep their file line: the page shows the
whole file, numbered, under "Prompt file".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from . import compose
from .errors import MissingVariablesError, PromptFileError, WorkbenchError
from .lint import LintIssue, lint
from .templates import PromptFile, Rendered

Severity = Literal["error", "warning", "info"]

# What to do about a lint finding when the front matter is written by the page, not typed:
# it replaces the advice after the finding's first clause (which names the variable).
_IN_THE_EDITOR = {
    "undeclared-variable": "type a sample value for it under Sample inputs (it is saved as "
    "its default)",
}


@dataclass(frozen=True)
class Finding:
    """One problem as the editor shows it. `line` is a line of the template box; `file_line`
    a line of the prompt file, for a problem in the front matter; neither when unknown."""

    severity: Severity
    message: str
    line: int | None = None
    file_line: int | None = None

    @property
    def where(self) -> str:
        if self.line is not None:
            return f"template line {self.line}"
        if self.file_line is not None:
            return f"prompt file line {self.file_line}"
        return ""

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


@dataclass(frozen=True)
class Checked:
    """A draft checked: the file it builds and its preview (None when they cannot be made),
    and what is wrong or doubtful, errors first, then by line."""

    file: PromptFile | None
    rendered: Rendered | None
    findings: tuple[Finding, ...]

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")


def check(base: PromptFile, draft: compose.Draft) -> Checked:
    """Build the draft, lint it and render its preview with the sample inputs.

    Never raises for a problem the person can fix: each becomes a finding at its box line.
    """
    box = draft.body.replace("\r\n", "\n")
    try:
        pf = compose.build(base, draft)
    except PromptFileError as exc:
        return Checked(None, None, (error_finding(exc, box),))
    except WorkbenchError as exc:
        return Checked(None, None, (Finding("error", str(exc)),))
    found = lint_findings(pf, box)
    rendered = None
    try:
        rendered = pf.render()
    except MissingVariablesError as exc:
        found.insert(0, _no_value(pf, box, exc.names))
    except PromptFileError as exc:
        found.insert(0, error_finding(exc, box, pf.body))
    return Checked(pf, rendered, tuple(found))


def error_finding(exc: PromptFileError, box: str, built: str | None = None) -> Finding:
    """A file that cannot be built or rendered, at the box line it points to.

    `built` is the template the error's line counts in, when it is not the box's own text
    (compose.build maps its errors itself)."""
    line = exc.template_line
    if built is not None:
        line = compose.box_line(built, box, line)
    return _placed("error", exc.problem, box, line, exc.line)


def lint_findings(pf: PromptFile, box: str) -> list[Finding]:
    """Lint of the built file, each warning at its box line (front matter: its file line)."""
    return [_located(issue, pf, box) for issue in lint(pf)]


def _located(issue: LintIssue, pf: PromptFile, box: str) -> Finding:
    message = issue.message
    if issue.code in _IN_THE_EDITOR:
        message = f"{message.split(',')[0]}: {_IN_THE_EDITOR[issue.code]}"
    line = compose.box_line(pf.body, box, pf.template_line(issue.line))
    return _placed(issue.severity, message, box, line, issue.line)


def _no_value(pf: PromptFile, box: str, names: Sequence[str]) -> Finding:
    used = pf.template_variables()
    lines = [pf.template_line(used[n]) for n in names if n in used]
    first = min((n for n in lines if n is not None), default=None)
    line = compose.box_line(pf.body, box, first)
    listed = ", ".join(repr(n) for n in names)
    return _placed(
        "error",
        f"nothing to preview: {listed} {'have' if len(names) > 1 else 'has'} no value; type "
        "a sample value under Sample inputs (a run without one is refused)",
        box,
        line,
    )


def _placed(
    severity: Severity, message: str, box: str, line: int | None, file_line: int | None = None
) -> Finding:
    """A finding at its box line when it has one, else at its file line (front matter)."""
    if line is not None:
        return Finding(severity, message, line=_within(line, box))
    return Finding(severity, message, file_line=file_line)


def _within(line: int, box: str) -> int:
    """A line the box shows: an error "at the end of the template" counts the empty line after
    the last line break, which a numbered view does not show."""
    return max(1, min(line, len(box.rstrip("\n").split("\n"))))


def numbered(box: str, findings: Sequence[Finding]) -> str:
    """The box's text for a view with line numbers, each line with a finding marked at its end
    with the worst severity there, so the eye finds the line the message names."""
    worst: dict[int, Severity] = {}
    order = {"error": 0, "warning": 1, "info": 2}
    for finding in findings:
        if finding.line is None:
            continue
        now = worst.get(finding.line)
        if now is None or order[finding.severity] < order[now]:
            worst[finding.line] = finding.severity
    lines = box.replace("\r\n", "\n").rstrip("\n").split("\n")
    return "\n".join(
        f"{text}    <-- {worst[i]}" if i in worst else text for i, text in enumerate(lines, 1)
    )
