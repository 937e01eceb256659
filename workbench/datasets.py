"""Datasets: rows of variables from CSV or JSON Lines, checked before anything is generated."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import json_text
from .errors import WorkbenchError

MAX_DATASET_BYTES = 50 * 1024 * 1024


class DatasetError(WorkbenchError):
    pass


@dataclass(frozen=True)
class Dataset:
    name: str
    columns: tuple[str, ...]
    rows: tuple[dict[str, Any], ...]

    @property
    def digest(self) -> str:
        blob = json.dumps(self.rows, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_dataset(path: Path) -> Dataset:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read dataset {path}: {exc.strerror}") from None
    return parse_dataset(data, path.name)


def parse_dataset(data: bytes, name: str) -> Dataset:
    if len(data) > MAX_DATASET_BYTES:
        raise DatasetError(f"{name}: {len(data) / 1e6:.0f} MB is over the 50 MB dataset limit")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{name}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save it as UTF-8 (in a spreadsheet: CSV UTF-8)"
        ) from None
    if not text.strip():
        raise DatasetError(f"{name}: the file is empty")
    if name.lower().endswith((".jsonl", ".ndjson", ".json")):
        return _jsonl(text, name)
    return _csv(text, name)


def _csv(text: str, name: str) -> Dataset:
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        columns = tuple(c.strip() for c in (reader.fieldnames or []) if c is not None)
        rows = []
        for number, raw in enumerate(reader, start=2):
            if None in raw:
                raise DatasetError(
                    f"{name}, line {number}: more values than the {len(columns)} columns"
                )
            rows.append({k.strip(): (v if v is not None else "") for k, v in raw.items()})
    except csv.Error as exc:
        raise DatasetError(f"{name}: not a readable CSV file: {exc}") from None
    if not columns or any(not c for c in columns):
        raise DatasetError(f"{name}: the first line must name every column")
    if len(set(columns)) != len(columns):
        raise DatasetError(f"{name}: column names repeat: {', '.join(columns)}")
    if not rows:
        raise DatasetError(f"{name}: has a header but no rows")
    return Dataset(name, columns, tuple(rows))


def _jsonl(text: str, name: str) -> Dataset:
    rows: list[dict[str, Any]] = []
    columns: dict[str, None] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json_text.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{name}, line {number}: not JSON: {exc.msg}") from None
        if not isinstance(row, dict):
            raise DatasetError(f"{name}, line {number}: each line must be a JSON object")
        rows.append(row)
        columns.update(dict.fromkeys(row))
    if not rows:
        raise DatasetError(f"{name}: has no rows")
    return Dataset(name, tuple(columns), tuple(rows))


def check_columns(
    dataset: Dataset, needs: dict[str, Sequence[str]], uses: dict[str, Sequence[str]]
) -> None:
    """Every required variable (no default) must be a column, and each version must take at
    least one of the variables it uses from the dataset — otherwise every row would render the
    defaults, which is never what a person running a dataset meant."""
    problems = []
    for ref, variables in needs.items():
        missing = [v for v in variables if v not in dataset.columns]
        if missing:
            problems.append(
                f"{ref} needs column{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
            )
        elif uses.get(ref) and not set(uses[ref]) & set(dataset.columns):
            problems.append(f"{ref} reads {', '.join(uses[ref])}, none of which is a column")
    if problems:
        raise DatasetError(
            f"{dataset.name} does not fit: "
            + "; ".join(problems)
            + f" (its columns: {', '.join(dataset.columns)})"
        )
