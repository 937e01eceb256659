"""Exceptions whose messages are written for the person at the screen.

The CLI prints `str(error)` on one line and the app shows it in `st.error`; neither ever shows a
traceback, so every message says what is wrong, where, and what to do.
"""

from __future__ import annotations


class WorkbenchError(Exception):
    """Base class: anything a user can cause and fix."""


class PromptFileError(WorkbenchError):
    """A prompt file or template that cannot be used, with its source and line when known.

    `line` is the file's line, front matter included: what a person with the file open in an
    editor, or on a command line, looks for. `template_line` is the same place counted in the
    template alone (1 = the line after the closing `---`): what the app's template box shows.
    The template code that knows where the body starts sets it; None means the problem is not
    in the template (or its line is unknown).
    """

    def __init__(self, problem: str, *, source: str | None = None, line: int | None = None):
        self.problem = problem
        self.source = source
        self.line = line
        self.template_line: int | None = None
        where = source or "prompt"
        if line is not None:
            where = f"{where}, line {line}"
        super().__init__(f"{where}: {problem}")


class UnsafeTemplateError(PromptFileError):
    """The template reaches for Python internals; it is refused before anything renders."""


class TemplateLimitError(PromptFileError):
    """A prompt file that would take more time or memory than any prompt needs: a template that
    renders a gigabyte or loops for minutes, front matter whose aliases expand a billion-fold.
    Refused with the limit it crossed, so one saved file cannot stall the app for everyone."""


class MissingVariablesError(WorkbenchError):
    def __init__(self, names: list[str], prompt: str | None = None):
        self.names = sorted(names)
        listed = ", ".join(self.names)
        owner = f"{prompt}: " if prompt else ""
        super().__init__(
            f"{owner}missing variable{'s' if len(self.names) > 1 else ''}: {listed} "
            f"(pass {'them' if len(self.names) > 1 else 'it'} with --var NAME=VALUE or a vars file)"
        )


class NotFoundError(WorkbenchError):
    """A prompt, version or label that does not exist."""


class ImportRejected(WorkbenchError):
    """An import that was refused whole; nothing was written. One (file, problem) per bad file."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        listed = "; ".join(f"{source}: {problem}" for source, problem in problems)
        super().__init__(f"import rejected, nothing was written: {listed}")
