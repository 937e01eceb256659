"""What the CLI draws: tables on stdout and run progress on stderr (workbench/terminal.py)."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import BUILTIN_PROMPTS_DIR
from rich.console import Console

from workbench.cli import main
from workbench.runner import Progress
from workbench.terminal import PLAIN_EVERY_S, ProgressDisplay, print_table, shown

UNTRUSTED = ["[bold]x[/bold]", ":smile:", "[link=http://x]y[/link]"]


def terminal(width: int = 100) -> Console:
    """A console that believes it is a terminal, writing into a string."""
    return Console(file=io.StringIO(), force_terminal=True, width=width, color_system="standard")


def pipe() -> Console:
    return Console(file=io.StringIO(), force_terminal=False)


def written(console: Console) -> str:
    file = console.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


def visible(text: str) -> str:
    """What a terminal shows, without its colour and cursor codes."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def progress(done: int, total: int = 40, cached: int = 0, eta: float | None = 5.0) -> Progress:
    return Progress(
        done=done, total=total, cached=cached, tokens_per_s=12.34, eta_s=eta, elapsed_s=done / 2
    )


# --- tables ---------------------------------------------------------------------------------------


def test_a_table_has_its_header_a_rule_of_dashes_and_one_line_per_row() -> None:
    out = pipe()
    print_table(["ROW", "OUTPUT"], [[1, "Positive"], [22, "a much longer answer"]], out=out)
    lines = written(out).splitlines()
    assert lines[0].split() == ["ROW", "OUTPUT"]
    assert set(lines[1]) == {"-", " "}
    assert [line.split()[0] for line in lines[2:]] == ["1", "22"]
    assert lines[3].index("a much") == lines[0].index("OUTPUT")
    assert all(line == line.rstrip() for line in lines), "no trailing spaces"


@pytest.mark.parametrize("text", UNTRUSTED)
def test_untrusted_text_in_a_table_prints_as_typed(text: str) -> None:
    for out in (pipe(), terminal()):
        print_table(["NAME", "OUTPUT"], [[text, f"says {text}"]], out=out)
        shown = visible(written(out))
        assert f"says {text}" in shown, shown
        assert "😄" not in shown


def test_control_characters_in_a_cell_are_escaped_and_newlines_keep_the_row_whole() -> None:
    out = terminal()
    print_table(["OUTPUT"], [["red \x1b[31malert\x1b[0m\nsecond line"]], out=out)
    text = written(out)
    assert "\x1b[31m" not in text
    assert "red \\x1b[31malert\\x1b[0m second line" in visible(text)


@pytest.mark.parametrize(
    ("answer", "on_screen"),
    [
        ("line one\nline\ttwo", "line one\nline\ttwo"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("over\rwrite", "over\\rwrite"),
        ("bell\x07 é 日本", "bell\\x07 é 日本"),
    ],
)
def test_a_streamed_answer_keeps_its_lines_but_not_its_escape_sequences(
    answer: str, on_screen: str
) -> None:
    assert shown(answer) == on_screen


def test_off_a_terminal_a_long_row_stays_on_one_line() -> None:
    out = pipe()
    print_table(["ROW", "OUTPUT"], [[1, "word " * 60]], out=out)
    assert len(written(out).splitlines()) == 3


def test_on_a_narrow_terminal_a_long_cell_wraps_inside_its_column() -> None:
    out = terminal(width=40)
    print_table(["ROW", "OUTPUT"], [[1, "word " * 20]], out=out)
    lines = visible(written(out)).splitlines()
    assert len(lines) > 3 and all(len(line) <= 40 for line in lines)
    assert all(line.startswith("     ") for line in lines[3:]), "continuations stay in OUTPUT"


def test_wide_characters_are_aligned_by_their_width_on_screen() -> None:
    out = pipe()
    print_table(["TEXT", "NEXT"], [["日本語", "x"], ["abc", "y"]], out=out)
    lines = written(out).splitlines()
    # 日本語 is three characters but six cells wide: x and y line up on screen
    assert lines[2].index("x") + 3 == lines[3].index("y")


# --- progress off a terminal ------------------------------------------------------------------


def test_off_a_terminal_progress_is_a_few_plain_lines() -> None:
    out = pipe()
    with ProgressDisplay("sentiment@1", out=out, clock=lambda: 0.0) as display:
        for done in range(41):
            display(progress(done, cached=min(done, 3), eta=None if done == 40 else 5.0))
    text = written(out)
    assert "\r" not in text
    lines = text.splitlines()
    assert [line.split(" · ")[0] for line in lines] == [
        "sentiment@1: 0/40 (0%)",
        "sentiment@1: 10/40 (25%)",
        "sentiment@1: 20/40 (50%)",
        "sentiment@1: 30/40 (75%)",
        "sentiment@1: 40/40 (100%)",
    ]
    assert lines[1] == "sentiment@1: 10/40 (25%) · 12.3 tok/s · 3 cached · ETA 5 s · 5 s elapsed"
    assert "ETA" not in lines[-1]


def test_off_a_terminal_a_slow_run_still_prints_a_line_every_half_minute() -> None:
    out = pipe()
    now = [0.0]
    with ProgressDisplay(out=out, clock=lambda: now[0]) as display:
        display(progress(0, total=100))
        display(progress(1, total=100))  # no news yet
        now[0] = PLAIN_EVERY_S + 1
        display(progress(2, total=100))
    assert [line.split(" · ")[0] for line in written(out).splitlines()] == [
        "0/100 (0%)",
        "2/100 (2%)",
    ]


def test_off_a_terminal_a_run_that_stops_early_says_where_it_stopped() -> None:
    out = pipe()
    with pytest.raises(KeyboardInterrupt), ProgressDisplay(out=out) as display:
        display(progress(0))
        display(progress(7))
        raise KeyboardInterrupt
    assert written(out).splitlines()[-1].startswith("7/40 (18%)")


def test_each_label_has_its_own_lines() -> None:
    out = pipe()
    with ProgressDisplay(out=out) as display:
        for ref in ("a@1", "b@2"):
            display(progress(0, total=2), ref)
            display(progress(2, total=2), ref)
    assert [line.split(" · ")[0] for line in written(out).splitlines()] == [
        "a@1: 0/2 (0%)",
        "a@1: 2/2 (100%)",
        "b@2: 0/2 (0%)",
        "b@2: 2/2 (100%)",
    ]


# --- progress on a terminal -------------------------------------------------------------------


def test_on_a_terminal_the_bar_redraws_in_place_and_stays_when_done() -> None:
    out = terminal()
    with ProgressDisplay("[bold]x[/bold]@1", out=out) as display:
        for done in range(0, 41, 10):
            display(progress(done, cached=2))
    text = written(out)
    assert "\x1b[" in text, "cursor and colour codes: drawn in place"
    last = visible(text).splitlines()[-1]
    assert "[bold]x[/bold]@1" in last and "40/40" in last and "2 cached" in last, last
    assert "12.3 tok/s" in last


@pytest.mark.parametrize("reports", [0, 2], ids=["before-the-first-report", "mid-run"])
def test_on_a_terminal_a_run_that_fails_leaves_the_cursor_on_a_new_line(reports: int) -> None:
    """Whatever is printed next (the `error: …` line) starts a line of its own, under the bar,
    which stays to say where the run stopped."""
    out = terminal()
    with pytest.raises(RuntimeError), ProgressDisplay("x@1", out=out) as display:
        for done in range(reports):
            display(progress(done))
        raise RuntimeError("the server went away")
    before, _, after = written(out).rpartition("\n")
    assert visible(after) == "", repr(written(out)[-200:])  # only cursor codes after the newline
    bar = visible(before).split("\r")[-1]
    assert "x@1" in bar and ("stopped" if reports == 0 else f"{reports - 1}/40") in bar, bar


def test_a_failed_dataset_run_on_a_terminal_prints_its_error_on_a_line_of_its_own(
    tmp_path: Path,
) -> None:
    """The CLI in a pseudo-terminal: the model cannot be loaded once the bar is up."""
    import os
    import pty
    import subprocess
    import sys

    rows = tmp_path / "rows.csv"
    rows.write_text("text\nhello\n", encoding="utf-8")
    env = {**os.environ, "WORKBENCH_PROMPTS_DIR": str(BUILTIN_PROMPTS_DIR), "COLUMNS": "100"}
    command = [sys.executable, "-m", "workbench.cli", "run", "zero-shot-sentiment"]
    command += ["--dataset", str(rows), "--model", str(tmp_path / "no-model")]
    leader, follower = pty.openpty()
    proc = subprocess.Popen(command, stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    os.close(leader)
    assert proc.wait(timeout=60) == 1
    text = screen.decode("utf-8", errors="replace")
    assert "━" in text, "the progress bar was drawn"
    before, _, error = visible(text).partition("error: ")
    assert "no-model" in error and before.endswith("\n"), repr(text[-300:])


def test_on_a_terminal_one_bar_per_version() -> None:
    out = terminal()
    with ProgressDisplay(out=out) as display:
        display(progress(2, total=2), "a@1")
        display(progress(2, total=2), "b@2")
    shown = visible(written(out))
    assert "a@1" in shown and "b@2" in shown


# --- through the CLI ----------------------------------------------------------------------------


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tiny_backend: Any
) -> Callable[..., tuple[int, str, str]]:
    monkeypatch.setenv("WORKBENCH_PROMPTS_DIR", str(BUILTIN_PROMPTS_DIR))

    def run(*args: object) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_a_dataset_run_in_a_pipe_prints_plain_progress_lines(
    cli: Callable[..., tuple[int, str, str]], tiny_model_dir: Path, tmp_path: Path
) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("text\n" + "".join(f"review {i}\n" for i in range(12)), encoding="utf-8")
    args = ["run", "zero-shot-sentiment", "--dataset", rows, "--model", tiny_model_dir]
    code, out, err = cli(*args, "--param", "max_new_tokens=2", "--batch-size", "1")
    assert code == 0, err
    assert "\r" not in err
    lines = err.splitlines()
    assert 2 <= len(lines) <= 6, err
    assert lines[0].startswith("zero-shot-sentiment@1: 0/12 (0%) · ")
    assert lines[-1].startswith("zero-shot-sentiment@1: 12/12 (100%) · ")
    assert out.splitlines()[0].split()[:2] == ["ROW", "SAMPLE"]


def test_json_output_draws_no_progress(
    cli: Callable[..., tuple[int, str, str]], tiny_model_dir: Path, tmp_path: Path
) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("text\nhello\n", encoding="utf-8")
    args = ["run", "zero-shot-sentiment", "--dataset", rows, "--model", tiny_model_dir, "--json"]
    code, _, err = cli(*args, "--param", "max_new_tokens=2")
    assert code == 0 and err == ""


def test_a_run_that_generates_no_tokens_says_rows_per_second() -> None:
    """Scored answer choices generate nothing: "0.0 tok/s" would say the run is stuck."""
    from workbench.terminal import details

    scored = Progress(done=12, total=20, cached=2, tokens_per_s=0.0, eta_s=4.0, elapsed_s=5.0)
    assert details(scored) == "2.0 rows/s · 2 cached · ETA 4 s"
    nothing_yet = Progress(done=0, total=20, cached=0, tokens_per_s=0.0, eta_s=None, elapsed_s=0)
    assert details(nothing_yet) == "0.0 tok/s"
