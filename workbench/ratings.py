"""People's ratings of outputs: 👍/👎, 1–5 stars and a comment, one current rating per output.

A rating belongs to the stored output, not to the screen that showed it, so Compare, History
and the CLI see the same verdicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .errors import NotFoundError, WorkbenchError
from .store import Output, Rating, Store, utcnow

MAX_COMMENT = 2000


@dataclass(frozen=True)
class RatingRecord:
    output_id: int
    verdict: int | None  # +1 👍, -1 👎
    stars: int | None
    comment: str
    updated_at: datetime

    @property
    def thumbs(self) -> str:
        return {1: "👍", -1: "👎"}.get(self.verdict or 0, "")


def rate(
    store: Store,
    output_id: int,
    *,
    verdict: int | None = None,
    stars: int | None = None,
    comment: str = "",
) -> RatingRecord | None:
    """Set (or replace) the rating of an output; an empty rating removes it and returns None."""
    if verdict not in (None, 1, -1):
        raise WorkbenchError(f"a verdict is 1 (👍) or -1 (👎), got {verdict!r}")
    if stars is not None and not 1 <= stars <= 5:
        raise WorkbenchError(f"stars go from 1 to 5, got {stars}")
    comment = comment.strip()
    if len(comment) > MAX_COMMENT:
        raise WorkbenchError(f"a comment is at most {MAX_COMMENT} characters, got {len(comment)}")

    def save(s: Session) -> RatingRecord | None:
        store.lock(s, "rating", output_id)  # two people rating at once: the later one counts
        if s.get(Output, output_id) is None:
            raise NotFoundError(f"no output {output_id}")
        row = s.scalar(select(Rating).where(Rating.output_id == output_id))
        if verdict is None and stars is None and not comment:
            if row is not None:
                s.execute(delete(Rating).where(Rating.output_id == output_id))
            return None
        if row is None:
            row = Rating(output_id=output_id)
            s.add(row)
        row.verdict, row.stars, row.comment, row.updated_at = verdict, stars, comment, utcnow()
        s.flush()
        return _record(row)

    return store.transaction(save)


def ratings(store: Store, output_ids: Sequence[int]) -> dict[int, RatingRecord]:
    """The current rating of each of these outputs that has one."""
    found: dict[int, RatingRecord] = {}
    ids = list(dict.fromkeys(output_ids))
    with store.read() as s:
        for start in range(0, len(ids), 500):
            for row in s.scalars(
                select(Rating).where(Rating.output_id.in_(ids[start : start + 500]))
            ):
                found[row.output_id] = _record(row)
    return found


def _record(row: Rating) -> RatingRecord:
    return RatingRecord(row.output_id, row.verdict, row.stars, row.comment, row.updated_at)
