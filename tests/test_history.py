"""History search: every filter narrows to exactly what it names, and pages cover all rows once.

Each filtered result is checked against a plain-Python filter over every stored output (the
"oracle"), so a query that is fast but wrong cannot pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from conftest import Databases
from history_data import MODELS, RARE_WORD, seed_history
from sqlalchemy import select

import workbench.history as history
from workbench.errors import NotFoundError, WorkbenchError
from workbench.history import (
    HistoryFilter,
    filter_choices,
    rerun_request,
    search_outputs,
    search_runs,
)
from workbench.library import Library
from workbench.ratings import rate
from workbench.store import Output, Prompt, PromptVersion, Store

N = 600
ROWS_PER_RUN = 20


@pytest.fixture(scope="module")
def seeded(
    database: str, databases: Databases, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Library]:
    """One seeded database of each kind, shared by the read-only tests of this module."""
    url = databases.create(database, tmp_path_factory.mktemp("history"), "h")
    store = Store(url)
    lib = Library(store)
    seed_history(lib, N, rows_per_run=ROWS_PER_RUN, run_every=timedelta(hours=2))
    yield lib
    store.close()
    databases.release(url)


@pytest.fixture
def fresh(library: Library) -> Library:
    """A seeded library of one's own, for tests that write."""
    seed_history(library, 200, rows_per_run=ROWS_PER_RUN)
    return library


def all_outputs(store: Store) -> list[dict[str, Any]]:
    with store.read() as s:
        rows = s.execute(
            select(Output, Prompt.name, PromptVersion.number)
            .join(PromptVersion, PromptVersion.id == Output.version_id)
            .join(Prompt, Prompt.id == PromptVersion.prompt_id)
        ).all()
        return [
            {
                "id": o.id, "run_id": o.run_id, "prompt": name, "version": number,
                "model": o.model, "text": o.text, "variables": o.variables, "error": o.error,
                "finish_reason": o.finish_reason, "cached": o.cached, "created_at": o.created_at,
            }
            for o, name, number in rows
        ]  # fmt: skip


def label_target(lib: Library, prompt: str, label: str) -> int:
    return lib.get(f"{prompt}@{label}").number


def oracle(lib: Library, flt: HistoryFilter) -> list[int]:
    """Ids that match, newest first, decided row by row in Python."""
    labelled = {
        (name, label_target(lib, name, flt.label))
        for name in history.filter_choices(lib.store).labels
        if flt.label in history.filter_choices(lib.store).labels[name]
    } if flt.label else set()  # fmt: skip

    def keep(o: dict[str, Any]) -> bool:
        term = flt.text.lower()
        in_text = bool(term) and term in (o["text"] or "").lower()
        in_vars = bool(term) and any(term in str(v).lower() for v in o["variables"].values())
        status = {
            "all": True,
            "ok": o["error"] is None and o["finish_reason"] != "cancelled",
            "errors": o["error"] is not None,
            "cancelled": o["finish_reason"] == "cancelled",
            "truncated": o["finish_reason"] == "length",
            "cached": o["cached"],
        }[flt.status]
        return (
            (flt.prompt is None or o["prompt"] == flt.prompt)
            and (flt.version is None or o["version"] == flt.version)
            and (flt.label is None or (o["prompt"], o["version"]) in labelled)
            and (flt.model is None or o["model"] == flt.model)
            and (flt.run_id is None or o["run_id"] == flt.run_id)
            and (flt.date_from is None or o["created_at"] >= flt.date_from)
            and (flt.date_to is None or o["created_at"].date() <= flt.date_to)
            and (
                not term
                or {"text": in_text, "variables": in_vars, "both": in_text or in_vars}[
                    flt.search_in
                ]
            )
            and status
        )

    return sorted((o["id"] for o in all_outputs(lib.store) if keep(o)), reverse=True)


def every_page(
    store: Store, flt: HistoryFilter, page_size: int, search: Callable[..., Any] = search_outputs
) -> tuple[list[int], list[Any]]:
    ids: list[int] = []
    pages = []
    before: int | None = None
    while True:
        page = search(store, flt, page_size=page_size, before_id=before)
        pages.append(page)
        ids += [r.id for r in page.rows]
        before = page.next_before_id
        if before is None:
            return ids, pages


FILTERS = {
    "prompt": HistoryFilter(prompt="classify"),
    "prompt and version": HistoryFilter(prompt="translate", version=3),
    "prompt and label": HistoryFilter(prompt="extract", label="production"),
    "label on any prompt": HistoryFilter(label="production"),
    "model": HistoryFilter(model=MODELS[1]),
    "run": HistoryFilter(run_id=3),
    "date from": HistoryFilter(date_from=datetime(2026, 1, 1, 3, 0)),
    "date to (whole day)": HistoryFilter(date_to=date(2026, 1, 1)),
    "text in answers": HistoryFilter(text="BATTERY screen", search_in="text"),
    "rare word": HistoryFilter(text=RARE_WORD),
    "non-ASCII in variables": HistoryFilter(text="café crème", search_in="variables"),
    "variables only": HistoryFilter(text="review 12", search_in="variables"),
    "errors": HistoryFilter(status="errors"),
    "cancelled": HistoryFilter(status="cancelled"),
    "truncated": HistoryFilter(status="truncated"),
    "cached": HistoryFilter(status="cached"),
    "ok": HistoryFilter(status="ok"),
    "everything at once": HistoryFilter(
        prompt="summarize", model=MODELS[0], status="ok", text="the", search_in="text"
    ),
}


@pytest.mark.parametrize("flt", FILTERS.values(), ids=FILTERS.keys())
def test_each_filter_narrows_to_exactly_its_outputs(seeded: Library, flt: HistoryFilter) -> None:
    expected = oracle(seeded, flt)
    assert 0 < len(expected) < N, "the seeded data must exercise this filter"
    ids, pages = every_page(seeded.store, flt, page_size=40)
    assert ids == expected
    assert pages[0].total == len(expected) and not pages[0].total_capped


def test_pages_visit_every_output_once_newest_first(seeded: Library) -> None:
    ids, pages = every_page(seeded.store, HistoryFilter(), page_size=7)
    assert ids == sorted(ids, reverse=True)
    assert len(ids) == len(set(ids)) == N
    assert [len(p.rows) for p in pages] == [7] * (N // 7) + [N % 7]
    assert all(p.total == N for p in pages)


def test_a_page_that_ends_exactly_has_no_next_page(seeded: Library) -> None:
    flt = HistoryFilter(prompt="translate", version=3)
    n = len(oracle(seeded, flt))
    page = search_outputs(seeded.store, flt, page_size=n)
    assert len(page.rows) == n and page.next_before_id is None and page.total == n


def test_outputs_written_while_paging_neither_repeat_nor_shift_rows(fresh: Library) -> None:
    first = search_outputs(fresh.store, page_size=50)
    seed_history(fresh, 40, rows_per_run=ROWS_PER_RUN, seed=8)  # newer outputs arrive
    rest, _ = every_page_from(fresh.store, first.next_before_id)
    ids = [r.id for r in first.rows] + rest
    assert len(ids) == len(set(ids)) == 200


def every_page_from(store: Store, before: int | None) -> tuple[list[int], int]:
    ids: list[int] = []
    pages = 0
    while before is not None:
        page = search_outputs(store, page_size=50, before_id=before)
        ids += [r.id for r in page.rows]
        before, pages = page.next_before_id, pages + 1
    return ids, pages


def test_the_label_filter_follows_the_label_when_it_moves(fresh: Library) -> None:
    flt = HistoryFilter(prompt="classify", label="production")
    before = search_outputs(fresh.store, flt, page_size=200)
    assert {r.version for r in before.rows} == {2}
    fresh.set_label("classify@3", "production")
    after = search_outputs(fresh.store, flt, page_size=200)
    assert {r.version for r in after.rows} == {3}
    assert [r.id for r in after.rows] == oracle(fresh, flt)


@pytest.mark.parametrize(
    "flt",
    [
        HistoryFilter(text="no such words anywhere"),
        HistoryFilter(text="%", search_in="text"),  # LIKE wildcards are searched for literally
        HistoryFilter(text="_", search_in="text"),
        HistoryFilter(model="not-a-model"),
        HistoryFilter(prompt="classify", label="no-such-label"),
        HistoryFilter(prompt="classify", version=99),
        HistoryFilter(label="no-such-label"),
        HistoryFilter(date_from=date(2030, 1, 1)),
        HistoryFilter(prompt="classify", model=MODELS[0], text=RARE_WORD, status="errors"),
    ],
    ids=repr,
)
def test_a_filter_that_matches_nothing_gives_an_empty_page(
    seeded: Library, flt: HistoryFilter
) -> None:
    page = search_outputs(seeded.store, flt)
    assert (page.rows, page.total, page.next_before_id) == ([], 0, None)
    assert page.total_text == "0"


@pytest.mark.parametrize(
    ("flt", "page_size", "message"),
    [
        (HistoryFilter(prompt="nope"), 50, "no prompt named 'nope'"),
        (HistoryFilter(version=2), 50, "choose a prompt"),
        (HistoryFilter(), 0, "a page holds 1 to"),
        (HistoryFilter(status="weird"), 50, "status is one of"),  # type: ignore[arg-type]
        (HistoryFilter(text="x", search_in="title"), 50, "search in one of"),  # type: ignore[arg-type]
    ],
)
def test_a_bad_filter_is_refused_with_a_message(
    seeded: Library, flt: HistoryFilter, page_size: int, message: str
) -> None:
    with pytest.raises(WorkbenchError, match=message):
        search_outputs(seeded.store, flt, page_size=page_size)


def test_an_unknown_prompt_is_not_found(seeded: Library) -> None:
    with pytest.raises(NotFoundError):
        search_runs(seeded.store, HistoryFilter(prompt="nope"))


def test_the_total_stops_counting_at_the_cap(
    seeded: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history, "COUNT_CAP", 100)
    page = search_outputs(seeded.store, page_size=10)
    assert (page.total, page.total_capped, page.total_text) == (100, True, "more than 100")
    errors = HistoryFilter(status="errors")
    small = search_outputs(seeded.store, errors, page_size=1)
    assert not small.total_capped and small.total == len(oracle(seeded, errors))


def test_rows_carry_a_text_preview_and_ratings_but_not_the_model_input(fresh: Library) -> None:
    newest = search_outputs(fresh.store, page_size=200).rows
    long = next(r for r in newest if r.text and r.text_chars > history.PREVIEW_CHARS)
    assert long.truncated and len(long.text or "") == history.PREVIEW_CHARS
    rate(fresh.store, newest[0].id, verdict=1, stars=4)
    row = search_outputs(fresh.store, page_size=1).rows[0]
    assert (row.verdict, row.stars) == (1, 4)
    assert not hasattr(row, "model_input") and not hasattr(row, "messages")


def test_runs_page_newest_first_and_filter_like_outputs(seeded: Library) -> None:
    runs, pages = every_page(seeded.store, HistoryFilter(), page_size=4, search=search_runs)
    assert runs == list(range(N // ROWS_PER_RUN, 0, -1))
    assert pages[0].total == N // ROWS_PER_RUN
    first = pages[0].rows[0]
    assert first.done == first.total == ROWS_PER_RUN and len(first.versions) == 1

    flt = HistoryFilter(prompt="classify", model=MODELS[0])
    expected = sorted({seeded_run(seeded, i) for i in oracle(seeded, flt)}, reverse=True)
    got = search_runs(seeded.store, flt, page_size=100).rows
    assert [r.id for r in got] == expected
    assert all(r.model == MODELS[0] and r.versions[0].startswith("classify@") for r in got)
    assert search_runs(seeded.store, status="unfinished").rows == []


def seeded_run(lib: Library, output_id: int) -> int:
    with lib.store.read() as s:
        return s.get_one(Output, output_id).run_id


def test_filter_choices_come_from_the_small_tables(seeded: Library) -> None:
    choices = filter_choices(seeded.store)
    assert choices.prompts == ["classify", "extract", "summarize", "translate"]
    assert choices.versions["classify"] == [3, 2, 1]
    assert choices.labels["classify"] == ["production"] and choices.all_labels == ["production"]
    assert choices.models == sorted(MODELS)


def test_a_rerun_request_has_the_runs_versions_rows_and_overrides(seeded: Library) -> None:
    request = rerun_request(seeded.store, 2)
    run = search_runs(seeded.store, HistoryFilter(run_id=2)).rows[0]
    assert request.versions == run.versions
    assert len(request.rows) == ROWS_PER_RUN and request.rows[0]["text"].startswith("review ")
    assert request.overrides == run.params and request.model == run.model
    with pytest.raises(NotFoundError, match="no run 9999"):
        rerun_request(seeded.store, 9999)


def test_errors_only_reads_the_partial_index_not_every_output(seeded: Library) -> None:
    """Migration 0004: without this index "errors only" reads every output to find a few."""
    query = "SELECT id FROM output WHERE error IS NOT NULL ORDER BY id DESC LIMIT 51"
    with seeded.store.read() as s:
        if seeded.store.is_sqlite:
            plan = s.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {query}")
            assert any("ix_output_error" in row[3] for row in plan)
        else:  # at 600 rows PostgreSQL's planner rightly prefers a scan; show the index fits
            s.connection().exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = s.connection().exec_driver_sql(f"EXPLAIN {query}")
            assert any("ix_output_error" in row[0] for row in plan)


@pytest.mark.parametrize(
    ("search_in", "indexes"),
    [
        ("text", {"ix_output_text_trgm"}),
        ("variables", {"ix_output_variables_trgm"}),
        ("both", {"ix_output_text_trgm", "ix_output_variables_trgm"}),
    ],
)
def test_postgres_text_search_fits_the_trigram_indexes(
    seeded: Library, search_in: history.SearchIn, indexes: set[str]
) -> None:
    """Migration 0008: ILIKE '%term%' (History's substring search, same semantics) can be
    answered by pg_trgm GIN indexes instead of reading every output. At 600 rows the planner
    rightly prefers a scan, so scans are turned off to show the index matches the query."""
    if seeded.store.is_sqlite:
        pytest.skip("PostgreSQL's search index; SQLite's search is unchanged")
    from sqlalchemy.dialects import postgresql

    flt = HistoryFilter(text=RARE_WORD, search_in=search_in)
    with seeded.store.read() as s:
        conditions = history._output_conditions(s, flt, is_sqlite=False)
        assert conditions is not None
        query = select(Output.id).where(*conditions)
        sql = str(
            query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
        )
        conn = s.connection()
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        conn.exec_driver_sql("SET LOCAL enable_indexscan = off")
        plan = "\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {sql}"))
    used = {name for name in ("ix_output_text_trgm", "ix_output_variables_trgm") if name in plan}
    assert used == indexes, plan


def test_without_pg_trgm_the_migration_goes_on_and_logs_how_to_add_the_index(
    database: str,
    make_database: Callable[..., str],
    caplog: pytest.LogCaptureFixture,
    prompt_text: Callable[..., str],
) -> None:
    """A role that may not create extensions (no CREATE on the database) still gets a working,
    unindexed search, and the log says what an administrator can run."""
    if database != "postgresql":
        pytest.skip("PostgreSQL only")
    from sqlalchemy import create_engine, inspect
    from sqlalchemy import text as sql_text
    from sqlalchemy.pool import NullPool

    url = make_database("no-trgm", migrated=False)
    admin = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        name = conn.execute(sql_text("SELECT current_database()")).scalar_one()
        conn.execute(sql_text(f'REVOKE CREATE ON DATABASE "{name}" FROM PUBLIC, CURRENT_USER'))
    admin.dispose()

    with caplog.at_level("WARNING", logger="workbench.migrations"):
        store = Store(url)
    notes = [r.getMessage() for r in caplog.records if r.name == "workbench.migrations"]
    assert len(notes) == 1, notes
    assert "History's text search has no index on this PostgreSQL database" in notes[0]
    assert "CREATE EXTENSION pg_trgm; CREATE INDEX ix_output_text_trgm" in notes[0]
    with store.engine.connect() as conn:
        names = {i["name"] for i in inspect(conn).get_indexes("output")}
    assert not names & {"ix_output_text_trgm", "ix_output_variables_trgm"}
    assert "ix_run_running" in {i["name"] for i in inspect(store.engine).get_indexes("run")}
    Library(store).save(prompt_text("still-works"))
    assert search_outputs(store, HistoryFilter(text="anything")).rows == []
    store.close()
