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
from sqlalchemy.orm import Session

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
    return store.transaction(lambda s: _save_in(store, s, name, dataset, note))


def add_rows(
    store: Store, name: str, rows: Sequence[Mapping[str, Any]], note: str = ""
) -> tuple[TestSetInfo, bool]:
    """A new version of `name` with these rows appended (a new test set if there is none).

    The current rows are read in the same locked transaction that writes the new version, so
    two people adding rows at once get one version with both additions, never a lost one.
    """
    check_name(name)

    def add(s: Session) -> tuple[TestSetInfo, bool]:
        store.lock(s, "test_set", name)
        current = _latest(s, name)
        base_rows = _rows(s, current) if current else []
        columns = list(current.columns) if current else []
        for row in rows:
            columns += [c for c in row if c not in columns]
        dataset = Dataset(name, tuple(columns), tuple([*base_rows, *(dict(r) for r in rows)]))
        return _save_in(store, s, name, dataset, note)

    return store.transaction(add)


def _save_in(
    store: Store, s: Session, name: str, dataset: Dataset, note: str
) -> tuple[TestSetInfo, bool]:
    if not dataset.rows:
        raise WorkbenchError(f"test set {name}: no rows to save")
    if len(dataset.rows) > MAX_ROWS:
        raise WorkbenchError(f"test set {name}: {len(dataset.rows)} rows is over {MAX_ROWS:,}")
    rows = [json.loads(json.dumps(dict(r), ensure_ascii=False, default=str)) for r in dataset.rows]
    columns = list(dataset.columns)
    digest = _hash(columns, rows)
    store.lock(s, "test_set", name)  # two saves of one name: v2 and v3, never two v2
    latest = _latest(s, name)
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
        TestSetRow(test_set_id=row.id, row_index=i, values=values) for i, values in enumerate(rows)
    )
    return _info(row, len(rows)), True


def _latest(s: Session, name: str) -> TestSet | None:
    return s.scalar(
        select(TestSet).where(TestSet.name == name).order_by(TestSet.version.desc()).limit(1)
    )


def _rows(s: Session, test_set: TestSet) -> list[dict[str, Any]]:
    values = s.scalars(
        select(TestSetRow.values)
        .where(TestSetRow.test_set_id == test_set.id)
        .order_by(TestSetRow.row_index)
    ).all()
    return [dict(v) for v in values]


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
        return Dataset(f"{row.name}@{row.version}", tuple(row.columns), tuple(_rows(s, row)))


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
