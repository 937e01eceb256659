"""Report files, shared by evaluation and stability reports: one JSON and CSV encoding, one
check of the file name, one writer — so every report command behaves alike.

`csv_bytes` is also the CSV of run exports, test sets and the app's comparison download: every
CSV the workbench writes goes through it, so every one is safe to open in a spreadsheet.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .errors import WorkbenchError


def json_bytes(data: Any) -> bytes:
    """Indented UTF-8 JSON (model output keeps its own characters, not \\u escapes)."""
    return (json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n").encode("utf-8")


# A spreadsheet takes a cell that starts with one of these for a formula: model output such as
# `=HYPERLINK("http://…", "click")` would run when the file is opened (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def spreadsheet_safe(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text instead of running it as a formula.

    As OWASP recommends, text starting with `=`, `+`, `-`, `@`, tab or carriage return gets a
    leading single quote, which spreadsheets read as "this is text" and do not display. Text
    that is just a number (`-3`, `+1.5`, `-2e-3`) is left alone, as are numbers themselves, so
    numeric columns stay numbers; `-3+A1` is not a number and is quoted. The cost: a CSV cell
    no longer round-trips exactly — JSON Lines and JSON reports keep the exact text.
    """
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False)
    formula = isinstance(value, str) and value.startswith(FORMULA_STARTS)
    return "'" + value if formula and not _PLAIN_NUMBER.fullmatch(value) else value


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    """UTF-8 CSV with every cell made spreadsheet-safe (lists and dicts written as JSON)."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow([spreadsheet_safe(h) for h in header])
    writer.writerows([spreadsheet_safe(cell) for cell in row] for row in rows)
    return buf.getvalue().encode("utf-8")


def unsupported(fmt: str, formats: Sequence[str]) -> WorkbenchError:
    return WorkbenchError(f"report format {fmt!r} is not supported: use {', '.join(formats)}")


def report_format(path: Path, formats: Sequence[str], option: str = "--output") -> str:
    """The format a report file's name asks for, checked before any work is done."""
    fmt = path.suffix.lower()
    if fmt not in formats:
        raise WorkbenchError(f"{option} {path.name}: use a file ending in {', '.join(formats)}")
    return fmt


def write_file(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise WorkbenchError(f"cannot write the report to {path}: {exc.strerror}") from None
