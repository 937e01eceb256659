"""What the CLI draws: result tables on stdout and a run's progress on stderr, with rich.

Tables keep one line per row and a rule of ASCII dashes under the header, so they read the same
in a terminal, a CI log or a pasted snippet; on a terminal, cells wider than the screen wrap
inside their column instead of breaking the layout, and off a terminal nothing wraps, so `grep`
and `cut` see whole rows. Widths are measured in terminal cells, so CJK text and emoji align.

Progress redraws in place on a terminal (bar, outputs done/total, tok/s, cached, ETA, elapsed).
Anywhere else — a pipe, a CI log — it prints a plain line at the start, at every quarter and at
least every half minute, and at the end, never one carriage-return segment per row.

Text from outside (model output, prompt names, notes) reaches rich only as `Text` on consoles
with markup, emoji codes and highlighting off, so `[bold]` and `:smile:` print as typed; control
characters (an escape sequence in a model's answer) print as `\\x1b`, never reach the terminal.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from .runner import Progress

NO_WRAP_WIDTH = 100_000  # off a terminal a row stays on one line, however long
PLAIN_STEP = 0.25  # off a terminal: a line at every quarter of the outputs…
PLAIN_EVERY_S = 30.0  # …and at least this often while outputs keep coming

# Only a rule of dashes under the header (box rows: top, head, head rule, mid, row, foot rule,
# foot, bottom; columns: left, line, divider, right); cells are separated by spaces.
HEADER_RULE = box.Box("    \n    \n -  \n    \n    \n    \n    \n    \n", ascii=True)

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def plain(value: object) -> str:
    """One line of printable text: newlines and tabs become spaces, other control characters
    their escape, so an answer cannot move the cursor, recolour the terminal or split a row."""

    def escape(match: re.Match[str]) -> str:
        char = match.group()
        return " " if char in "\n\r\t" else char.encode("unicode_escape").decode("ascii")

    return _CONTROL.sub(escape, str(value))


_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def shown(text: str) -> str:
    """Text for a terminal as it was written: lines and tabs kept, every other control character
    (an escape sequence, a carriage return) printed as its escape, so a streamed answer cannot
    move the cursor or recolour the terminal."""
    return _CONTROL_BUT_LINES.sub(
        lambda m: m.group().encode("unicode_escape").decode("ascii"), text
    )


def console(*, stderr: bool = False) -> Console:
    """A console that prints text as given: no markup, no emoji codes, no highlighting."""
    return Console(stderr=stderr, markup=False, emoji=False, highlight=False)


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], *, out: Console | None = None
) -> None:
    """Columns under their headers, one line per row; trailing spaces are trimmed."""
    out = out or console()
    if not out.is_terminal:
        out.width = NO_WRAP_WIDTH
    table = Table(
        box=HEADER_RULE,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),
        header_style="bold",
    )
    for header in headers:
        table.add_column(Text(plain(header)), overflow="fold")
    for row in rows:
        table.add_row(*[Text(plain(cell)) for cell in row])
    with out.capture() as captured:
        out.print(table)
    out.file.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
    out.file.flush()


def duration(seconds: float) -> str:
    """12 s, 4:05, 1:02:03."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def details(p: Progress) -> str:
    """tok/s, cached outputs and the time left, as the runner measures them. A run that
    generates no tokens (answer choices are scored, not generated) says rows/s instead."""
    made = p.done - p.cached
    if p.tokens_per_s == 0 and made > 0 and p.elapsed_s > 0:
        parts = [f"{made / p.elapsed_s:.1f} rows/s"]
    else:
        parts = [f"{p.tokens_per_s:.1f} tok/s"]
    if p.cached:
        parts.append(f"{p.cached} cached")
    if p.eta_s is not None and p.done < p.total:
        parts.append(f"ETA {duration(p.eta_s)}")
    return " · ".join(parts)


@dataclass
class _Plain:
    """Where the plain lines of one label stand."""

    step: int = -1
    printed_at: float = 0.0
    last: Progress | None = None
    printed: bool = False


class ProgressDisplay:
    """A run's progress on stderr; call it with the runner's `Progress` (and a label).

    Use it as a context manager around the run. On a terminal the bar starts at once (a pulsing
    bar while the model loads) and stays on screen when the run ends; one bar per label (eval
    shows one per version). Off a terminal see `PLAIN_STEP` and `PLAIN_EVERY_S`.
    """

    def __init__(
        self,
        label: str = "",
        *,
        out: Console | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.out = out or console(stderr=True)
        self.clock = clock
        self._bar: RichProgress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._waiting: TaskID | None = None  # the pulsing bar before the first report
        self._plain: dict[str, _Plain] = {}

    def __enter__(self) -> ProgressDisplay:
        if self.out.is_terminal:
            self._bar = RichProgress(
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[details]}", markup=False),
                TimeElapsedColumn(),
                console=self.out,
                redirect_stdout=False,  # stdout may be a file while stderr is the terminal
            )
            self._waiting = self._bar.add_task(plain(self.label), total=None, details="starting")
            self._bar.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            if self._waiting is not None and exc_type is None:
                self._bar.remove_task(self._waiting)  # nothing to report: no empty bar left
            elif self._waiting is not None:
                # A run that failed before its first report keeps its bar, marked as stopped:
                # rich ends a bar's line when it stops, but erases a removed one and leaves the
                # cursor there, so the error printed next would share the bar's line.
                self._bar.update(self._waiting, details="stopped")
            self._bar.stop()
            return
        for label, state in self._plain.items():  # a run that stopped early: where it stopped
            if state.last is not None and not state.printed:
                self._print_plain(label, state.last)

    def __call__(self, p: Progress, label: str | None = None) -> None:
        label = self.label if label is None else label
        if self._bar is not None:
            self._draw(label, p)
        else:
            self._plain_line(label, p)

    def _draw(self, label: str, p: Progress) -> None:
        assert self._bar is not None
        task = self._tasks.get(label)
        if task is None:
            if self._waiting is not None:
                task, self._waiting = self._waiting, None
            else:
                task = self._bar.add_task("", total=p.total, details="")
            self._tasks[label] = task
        self._bar.update(
            task,
            description=plain(label),
            total=p.total,
            completed=p.done,
            details=details(p),
        )

    def _plain_line(self, label: str, p: Progress) -> None:
        state = self._plain.setdefault(label, _Plain())
        now = self.clock()
        step = int(p.done / p.total / PLAIN_STEP) if p.total else 0
        state.last, state.printed = p, False
        due = (
            state.step < 0
            or step > state.step
            or p.done >= p.total
            or now - state.printed_at >= PLAIN_EVERY_S
        )
        if due:
            state.step, state.printed_at = step, now
            self._print_plain(label, p)

    def _print_plain(self, label: str, p: Progress) -> None:
        share = f" ({p.done / p.total:.0%})" if p.total else ""
        prefix = f"{plain(label)}: " if label else ""
        line = f"{prefix}{p.done}/{p.total}{share} · {details(p)} · {duration(p.elapsed_s)} elapsed"
        self.out.print(Text(line), soft_wrap=True)
        self._plain[label].printed = True
