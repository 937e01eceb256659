"""Many writers at once: nothing lost, nothing doubled, no crash — on SQLite and on PostgreSQL.

SQLite serialises writers by itself (BEGIN IMMEDIATE); PostgreSQL lets them overlap, so these
tests are what shows that the locks and retries in store.py make the services come out the same.
Every worker is released at one moment (a barrier) and saves as fast as it can.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import PromptText
from sqlalchemy import func, select

from workbench import ratings
from workbench.datasets import Dataset
from workbench.evaluate import store_scores
from workbench.library import Library
from workbench.runner import Runner
from workbench.runs import get_run, run_outputs
from workbench.scorers import Score, parse_assertion
from workbench.store import Prompt, Rating, Store
from workbench.store import Score as ScoreRow
from workbench.testsets import add_rows, get_test_set, save_test_set

WORKERS = 6
SAVES = 8


def body(tag: str) -> str:
    return f"system:\nYou are version {tag}.\n\nuser:\n{{{{ text }}}}\n"


def together(workers: int, work: Callable[[int], None], timeout: float = 120) -> None:
    """Run work(0) … work(workers - 1) in threads released at the same moment; re-raise the
    first error any of them hit."""
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a worker hung"
    if errors:
        raise errors[0]


@pytest.fixture
def stores(make_database: Callable[..., str]) -> Iterator[Callable[[int], list[Store]]]:
    """`stores(n)`: n Stores on one new database, as n processes (app, CLI…) would have."""
    opened: list[Store] = []

    def make(n: int) -> list[Store]:
        url = make_database("shared")
        opened.extend(Store(url) for _ in range(n))
        return opened[-n:]

    yield make
    for s in opened:
        s.close()


def test_concurrent_saves_of_one_prompt_number_every_version_once(
    stores: Callable[[int], list[Store]], prompt_text: PromptText
) -> None:
    """Everyone reads "latest is vN" at once; still 1…N with every note, each exactly once."""
    workers = stores(WORKERS)
    Library(workers[0]).save(prompt_text(body=body("seed")), "seed")

    def work(i: int) -> None:
        library = Library(workers[i])
        for j in range(SAVES):
            result = library.save(prompt_text(body=body(f"w{i}-{j}")), f"worker {i} save {j}")
            assert result.created

    together(WORKERS, work)
    versions = Library(workers[0]).versions("demo")
    total = 1 + WORKERS * SAVES
    assert [v.number for v in versions] == list(range(1, total + 1))
    assert [v.parent for v in versions] == [None, *range(1, total)]
    notes = {v.note: v.file.body for v in versions}
    assert len(notes) == total
    for i in range(WORKERS):
        for j in range(SAVES):
            assert notes[f"worker {i} save {j}"] == body(f"w{i}-{j}")
    # one worker's saves keep their order among themselves
    for i in range(WORKERS):
        mine = [v.number for v in versions if v.note.startswith(f"worker {i} ")]
        assert mine == sorted(mine)


def test_first_saves_of_a_new_prompt_at_once_make_one_prompt(
    stores: Callable[[int], list[Store]], prompt_text: PromptText
) -> None:
    """Nobody has the prompt yet: one prompt row, versions 1…N, none lost to the race."""
    workers = stores(WORKERS)

    def work(i: int) -> None:
        Library(workers[i]).save(prompt_text("brand-new", body=body(f"first {i}")), f"by {i}")

    together(WORKERS, work)
    library = Library(workers[0])
    assert [v.number for v in library.versions("brand-new")] == list(range(1, WORKERS + 1))
    assert {v.note for v in library.versions("brand-new")} == {f"by {i}" for i in range(WORKERS)}
    with workers[0].read() as s:
        assert s.scalar(select(func.count()).select_from(Prompt)) == 1


def test_the_same_content_saved_at_once_is_one_version(
    stores: Callable[[int], list[Store]], prompt_text: PromptText
) -> None:
    workers = stores(WORKERS)
    created: list[bool] = []

    def work(i: int) -> None:
        created.append(Library(workers[i]).save(prompt_text(), f"by {i}").created)

    together(WORKERS, work)
    assert sorted(created) == [False] * (WORKERS - 1) + [True]
    assert [v.number for v in Library(workers[0]).versions("demo")] == [1]


def test_label_moves_at_once_keep_a_history_without_gaps(
    stores: Callable[[int], list[Store]], prompt_text: PromptText
) -> None:
    """Each recorded move starts where the previous one ended, and the label is where the last
    move put it: no move was made from a stale position."""
    workers = stores(WORKERS)
    library = Library(workers[0])
    for n in range(WORKERS):
        library.save(prompt_text(body=body(str(n))), f"v{n + 1}")

    def work(i: int) -> None:
        lib = Library(workers[i])
        for j in range(4):
            lib.set_label(f"demo@{(i + j) % WORKERS + 1}", "production")

    together(WORKERS, work)
    moves = library.label_history("demo", "production")
    assert moves[0].from_version is None
    for before, after in itertools.pairwise(moves):
        assert after.from_version == before.to_version
    assert library.get("demo@production").number == moves[-1].to_version


def test_rows_added_to_a_test_set_at_once_are_all_kept(
    stores: Callable[[int], list[Store]],
) -> None:
    workers = stores(WORKERS)
    save_test_set(workers[0], "picked", Dataset("x", ("text",), ({"text": "start"},)))

    def work(i: int) -> None:
        for j in range(3):
            add_rows(workers[i], "picked", [{"text": f"{i}-{j}"}], note=f"{i}-{j}")

    together(WORKERS, work)
    latest = get_test_set(workers[0], "picked")
    assert latest.name == f"picked@{1 + WORKERS * 3}"
    assert sorted(r["text"] for r in latest.rows) == sorted(
        ["start", *(f"{i}-{j}" for i in range(WORKERS) for j in range(3))]
    )


@pytest.fixture
def runs(
    stores: Callable[[int], list[Store]], prompt_text: PromptText, tiny_backend: Any
) -> tuple[list[Store], list[Runner]]:
    workers = stores(4)
    Library(workers[0]).save(prompt_text(), "v1")
    return workers, [Runner(Library(s), tiny_backend) for s in workers]


def test_runs_at_once_each_store_all_their_outputs(
    runs: tuple[list[Store], list[Runner]],
) -> None:
    """Four runs in four threads write their outputs one at a time, interleaved."""
    _workers, runners = runs
    rows = [{"text": f"row {n}"} for n in range(6)]
    done: dict[int, Any] = {}

    def work(i: int) -> None:
        runner = runners[i]
        summary = runner.run(
            [runner.library.get("demo")],
            rows,
            overrides={"max_new_tokens": 2},
            use_cache=False,
            batch_size=1,
        )
        done[i] = summary

    together(len(runners), work)
    run_ids = {s.run.id for s in done.values()}
    assert len(run_ids) == len(runners)
    for summary in done.values():
        record = get_run(runners[0].store, summary.run.id)
        assert (record.status, record.done, record.total) == ("done", len(rows), len(rows))
        outputs = run_outputs(runners[0].store, summary.run.id)
        assert [o.row_index for o in outputs] == list(range(len(rows)))


def test_ratings_and_scores_of_one_output_at_once(
    runs: tuple[list[Store], list[Runner]],
) -> None:
    """One current rating per output, one score per metric, whoever wrote last."""
    workers, runners = runs
    runner = runners[0]
    summary = runner.run([runner.library.get("demo")], [{}], overrides={"max_new_tokens": 2})
    output_id = summary.outputs[0].id
    check = parse_assertion("contains:x")

    def work(i: int) -> None:
        for j in range(5):
            ratings.rate(workers[i], output_id, stars=1 + (i + j) % 5, comment=f"{i}-{j}")
            score = Score(check.name, float(i), bool(i % 2), f"{i}-{j}")
            store_scores(workers[i], [(output_id, [score])], [check])

    together(len(workers), work)
    with workers[0].read() as s:
        assert s.scalar(select(func.count()).select_from(Rating)) == 1
        assert s.scalar(select(func.count()).select_from(ScoreRow)) == 1
    current = ratings.ratings(workers[0], [output_id])[output_id]
    assert current.comment.endswith("-4")  # some worker's last rating
