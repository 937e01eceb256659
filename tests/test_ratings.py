"""Ratings: one current verdict per output, replaced on re-rating, removed when emptied."""

from __future__ import annotations

from typing import Any

import pytest

from workbench import ratings
from workbench.errors import NotFoundError, WorkbenchError
from workbench.library import Library
from workbench.runner import Runner


@pytest.fixture
def output_id(library: Library, prompt_text: Any, tiny_backend: Any) -> int:
    library.save(prompt_text(), "v1")
    summary = Runner(library, tiny_backend).run(
        [library.get("demo")], [{}], overrides={"max_new_tokens": 2}
    )
    return summary.outputs[0].id


def test_rate_replace_and_clear(library: Library, output_id: int) -> None:
    first = ratings.rate(library.store, output_id, verdict=1, comment="  good  ")
    assert first is not None and first.thumbs == "👍" and first.comment == "good"
    ratings.rate(library.store, output_id, verdict=-1, stars=2)
    current = ratings.ratings(library.store, [output_id, 999])
    assert list(current) == [output_id]
    assert (current[output_id].verdict, current[output_id].stars) == (-1, 2)
    assert current[output_id].comment == ""
    assert ratings.rate(library.store, output_id) is None
    assert ratings.ratings(library.store, [output_id]) == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"verdict": 2}, "a verdict is 1"),
        ({"stars": 0}, "stars go from 1 to 5"),
        ({"stars": 6}, "stars go from 1 to 5"),
        ({"comment": "x" * 2001}, "at most 2000"),
    ],
)
def test_bad_ratings_are_refused(
    library: Library, output_id: int, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(WorkbenchError, match=message):
        ratings.rate(library.store, output_id, **kwargs)
    assert ratings.ratings(library.store, [output_id]) == {}


def test_rating_an_unknown_output(library: Library) -> None:
    with pytest.raises(NotFoundError):
        ratings.rate(library.store, 12345, verdict=1)
