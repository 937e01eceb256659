"""Report files, shared by evaluation and stability reports: one JSON and CSV encoding, one
check of the file name, one writer — so every report command behaves alike."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .errors import WorkbenchError


def json_bytes(data: Any) -> bytes:
    """Indented UTF-8 JSON (model output keeps its own characters, not \\u escapes)."""
    return (json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n").encode("utf-8")


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
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
