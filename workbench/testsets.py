"""Test sets: datasets kept in the database under a name, versioned like prompts.

Saving rows that differ from the latest version makes a new immutable version; saving the same
rows again keeps the version. An evaluation names a test set (`sentiment`, `sentiment@2`) so
two prompt versions evaluated weeks apart are scored on exactly the same rows.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from .datasets import Dataset
from .errors import NotFoundError, WorkbenchError
from .store import Store, TestSet, TestSetRow, utcnow

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
MAX_ROWS = 100_000


@dataclass(frozen=True)
class TestSetInfo:
    name: str
    version: int
    rows: int
    columns: tuple[str, ...]
    note: str
    created_at: datetime

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


def _hash(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    blob = json.dumps([list(columns), list(rows)], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def check_name(name: str) -> None:
    if not NAME.match(name):
        raise WorkbenchError(
            f"test set name {name!r}: use lowercase letters, digits, '.', '_' or '-' "
            "(at most 100 characters, starting with a letter or digit)"
        )


def save_test_set(
    store: Store, name: str, dataset: Dataset, note: str = ""
) -> tuple[TestSetInfo, bool]:
    """Store the rows as the next version of `name`; (info, False) when they are unchanged."""
    check_name(name)
    if not dataset.rows:
        raise WorkbenchError(f"test set {name}: no rows to save")
    if len(dataset.rows) > MAX_ROWS:
        raise WorkbenchError(f"test set {name}: {len(dataset.rows)} rows is over {MAX_ROWS:,}")
    rows = [json.loads(json.dumps(dict(r), ensure_ascii=False, default=str)) for r in dataset.rows]
    columns = list(dataset.columns)
    digest = _hash(columns, rows)
    with store.write() as s:
        latest = s.scalar(
            select(TestSet).where(TestSet.name == name).order_by(TestSet.version.desc()).limit(1)
        )
        if latest is not None and latest.content_hash == digest:
            return _info(latest, len(rows)), False
        row = TestSet(
            name=name,
            version=(latest.version + 1) if latest else 1,
            columns=columns,
            content_hash=digest,
            note=note.strip(),
            created_at=utcnow(),
        )
        s.add(row)
        s.flush()
        s.add_all(
            TestSetRow(test_set_id=row.id, row_index=i, values=values)
            for i, values in enumerate(rows)
        )
        return _info(row, len(rows)), True


def add_rows(
    store: Store, name: str, rows: Sequence[Mapping[str, Any]], note: str = ""
) -> tuple[TestSetInfo, bool]:
    """A new version of `name` with these rows appended (a new test set if there is none)."""
    try:
        current = get_test_set(store, name)
        base_rows, columns = list(current.rows), list(current.columns)
    except NotFoundError:
        base_rows, columns = [], []
    for row in rows:
        columns += [c for c in row if c not in columns]
    dataset = Dataset(name, tuple(columns), tuple([*base_rows, *(dict(r) for r in rows)]))
    return save_test_set(store, name, dataset, note)


def get_test_set(store: Store, ref: str) -> Dataset:
    """`name` (latest) or `name@N` as a Dataset named after its exact version."""
    name, _, number = ref.partition("@")
    with store.read() as s:
        query = select(TestSet).where(TestSet.name == name)
        if number:
            if not number.lstrip("v").isdigit():
                raise WorkbenchError(f"test set {ref!r}: a version is a number, like {name}@2")
            query = query.where(TestSet.version == int(number.lstrip("v")))
        row = s.scalar(query.order_by(TestSet.version.desc()).limit(1))
        if row is None:
            known = s.scalars(select(TestSet.name).distinct().order_by(TestSet.name)).all()
            hint = f" (stored: {', '.join(known)})" if known else " (none stored yet)"
            raise NotFoundError(f"no test set {ref!r}{hint}")
        values = s.scalars(
            select(TestSetRow.values)
            .where(TestSetRow.test_set_id == row.id)
            .order_by(TestSetRow.row_index)
        ).all()
        rows = tuple(dict(v) for v in values)
        return Dataset(f"{row.name}@{row.version}", tuple(row.columns), rows)


def list_test_sets(store: Store) -> list[TestSetInfo]:
    """The latest version of every test set, by name."""
    with store.read() as s:
        latest = (
            select(TestSet.name, func.max(TestSet.version).label("version"))
            .group_by(TestSet.name)
            .subquery()
        )
        rows = s.scalars(
            select(TestSet)
            .join(latest, (TestSet.name == latest.c.name) & (TestSet.version == latest.c.version))
            .order_by(TestSet.name)
        ).all()
        counts = dict(
            s.execute(
                select(TestSetRow.test_set_id, func.count())
                .where(TestSetRow.test_set_id.in_([r.id for r in rows]))
                .group_by(TestSetRow.test_set_id)
            ).all()
        )
        return [_info(r, counts.get(r.id, 0)) for r in rows]


def _info(row: TestSet, n: int) -> TestSetInfo:
    return TestSetInfo(row.name, row.version, n, tuple(row.columns), row.note, row.created_at)
