"""How fast the History page's queries are with 100,000 stored outputs.

Run on demand (not part of the test suite):

    .venv/bin/python benchmarks/history.py                  # 100,000 outputs, 5 repeats
    .venv/bin/python benchmarks/history.py --outputs 20000  # a quicker look

Seeds a temporary SQLite database (migrated like a real one) with outputs spread over 4
prompts × 3 versions × 3 models, 50 rows a run, answers of 40–1,500 characters, through
`tests/history_data.py`, in batches of 5,000. Then times each query the page makes, as
`workbench.history` makes it, against the obvious way of writing the same query with the ORM:
full `Output` objects (model input, messages, parameters and all), joins to filter by prompt,
an exact `count(*)`, and OFFSET paging. Both sides are run in this process on the same file;
printed are the median of the repeats in milliseconds and naive ÷ ours.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Text, cast, func, or_, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from history_data import MODELS, RARE_WORD, START, Seeded, seed_history  # noqa: E402

from workbench.history import (  # noqa: E402
    HistoryFilter,
    filter_choices,
    search_outputs,
    search_runs,
)
from workbench.library import Library  # noqa: E402
from workbench.store import Label, Output, Prompt, PromptVersion, Run, Store  # noqa: E402

PAGE = 50


def naive_page(
    store: Store,
    *where: Any,
    join_label: bool = False,
    offset: int = 0,
) -> int:
    """Full ORM rows joined to their prompt, filtered in the join, exact count, OFFSET paging."""
    with store.read() as s:
        query = (
            select(Output, Prompt.name, PromptVersion.number)
            .join(PromptVersion, PromptVersion.id == Output.version_id)
            .join(Prompt, Prompt.id == PromptVersion.prompt_id)
        )
        if join_label:
            query = query.join(Label, Label.version_id == Output.version_id)
        query = query.where(*where)
        rows = s.execute(query.order_by(Output.id.desc()).offset(offset).limit(PAGE)).all()
        total = s.scalar(select(func.count()).select_from(query.subquery()))
        return len(rows) + (total or 0)


def naive_choices(store: Store) -> int:
    with store.read() as s:
        prompts = s.scalars(
            select(Prompt.name)
            .distinct()
            .join(PromptVersion, PromptVersion.prompt_id == Prompt.id)
            .join(Output, Output.version_id == PromptVersion.id)
        ).all()
        models = s.scalars(select(Output.model).distinct()).all()
        return len(prompts) + len(models)


def naive_runs(store: Store) -> int:
    with store.read() as s:
        runs = s.scalars(select(Run).order_by(Run.id.desc()).limit(20)).all()
        done = [
            s.scalar(select(func.count()).select_from(Output).where(Output.run_id == r.id))
            for r in runs
        ]
        return len(done)


def timed(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm: statement compilation, page cache
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--outputs", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--database-url",
        help="An empty database to seed and time instead of a temporary SQLite file, e.g. a "
        "PostgreSQL one: createdb it first (it is left filled for a look afterwards).",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.db"
        url = args.database_url or f"sqlite:///{path}"
        store = Store(url)
        lib = Library(store)
        start = time.perf_counter()
        seeded = seed_history(lib, args.outputs)
        seed_s = time.perf_counter() - start
        size_mb = database_size_mb(store, path)
        print(
            f"seeded {seeded.outputs:,} outputs in {seeded.runs:,} runs in {seed_s:.1f} s "
            f"({size_mb:.0f} MB); median of {args.repeats} repeats\n"
        )
        deep = search_outputs(store, page_size=PAGE)  # find the id halfway down
        halfway = args.outputs // 2
        deep_cursor = (deep.rows[0].id - halfway) if deep.rows else None
        version_ids = [
            vid for ref, vid in seeded.version_ids.items() if ref.startswith("classify@")
        ]

        def ours(flt: HistoryFilter, before: int | None = None) -> Callable[[], object]:
            return lambda: search_outputs(store, flt, page_size=PAGE, before_id=before)

        production = Label.name == "production"
        postgres = store.engine.dialect.name == "postgresql"
        text_like = or_(
            Output.text.contains(RARE_WORD), cast(Output.variables, Text).contains(RARE_WORD)
        )
        cases: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
            ("first page, no filter", ours(HistoryFilter()), lambda: naive_page(store)),
            (
                "prompt",
                ours(HistoryFilter(prompt="classify")),
                lambda: naive_page(store, Prompt.name == "classify"),
            ),
            (
                "prompt + version",
                ours(HistoryFilter(prompt="classify", version=2)),
                lambda: naive_page(store, Prompt.name == "classify", PromptVersion.number == 2),
            ),
            (
                "model",
                ours(HistoryFilter(model=MODELS[1])),
                lambda: naive_page(store, Output.model == MODELS[1]),
            ),
            (
                "label (any prompt)",
                ours(HistoryFilter(label="production")),
                lambda: naive_page(store, production, join_label=True),
            ),
            (
                "errors only",
                ours(HistoryFilter(status="errors")),
                lambda: naive_page(store, Output.error.is_not(None)),
            ),
            (
                "text search, rare word",
                ours(HistoryFilter(text=RARE_WORD)),
                lambda: naive_page(store, text_like),
            ),
            (
                "text search, no match",
                ours(HistoryFilter(text="no such phrase", search_in="text")),
                lambda: naive_page(store, Output.text.contains("no such phrase")),
            ),
            (
                "text search, common word",
                ours(HistoryFilter(text="battery", search_in="text")),
                lambda: naive_page(store, Output.text.contains("battery")),
            ),
            (
                "one day",
                ours(HistoryFilter(date_from=_day(seeded), date_to=_day(seeded))),
                lambda: naive_page(
                    store,
                    func.date(Output.created_at)
                    == (_day(seeded) if postgres else _day(seeded).isoformat()),
                ),
            ),
            (
                f"page {halfway // PAGE + 1} (cursor vs OFFSET)",
                ours(HistoryFilter(), deep_cursor),
                lambda: naive_page(store, offset=halfway),
            ),
            (
                "prompt, deep page",
                ours(HistoryFilter(prompt="classify"), deep_cursor),
                lambda: naive_page(store, Output.version_id.in_(version_ids), offset=halfway // 4),
            ),
            ("filter dropdown values", lambda: filter_choices(store), lambda: naive_choices(store)),
            ("runs, first page", lambda: search_runs(store), lambda: naive_runs(store)),
        ]
        print(f"{'query':<34}{'ours ms':>10}{'naive ms':>11}{'naive/ours':>12}")
        for name, fast, slow in cases:
            a = timed(fast, args.repeats)
            b = timed(slow, args.repeats)
            print(f"{name:<34}{a:>10.1f}{b:>11.1f}{b / a:>11.1f}x")
        store.close()
        whole_page(url, args.repeats)


def database_size_mb(store: Store, path: Path) -> float:
    """Its size on disk, as a long-lived database would be: SQLite's WAL folded in first,
    PostgreSQL's statistics gathered first."""
    with store.engine.connect() as conn:
        if store.engine.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE")  # planner statistics, as autovacuum would leave them
            conn.commit()
            size = conn.exec_driver_sql("SELECT pg_database_size(current_database())")
            return float(size.scalar_one()) / 1e6
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    wal = path.with_name("history.db-wal")
    return path.stat().st_size / 1e6 + (wal.stat().st_size / 1e6 if wal.exists() else 0)


def whole_page(url: str, repeats: int) -> None:
    """The History page itself on this database (AppTest: the script run, no browser), so
    the figure includes everything the page does, not only its queries."""
    import os

    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ["WORKBENCH_DATABASE_URL"] = url
    os.environ["WORKBENCH_PROMPTS_DIR"] = str(Path(tempfile.gettempdir()) / "no-builtins")
    st.cache_resource.clear()
    page = str(ROOT / "workbench" / "app" / "pages" / "4_History.py")
    times = []
    for _ in range(repeats + 1):  # the first run opens the database and imports
        at = AppTest.from_file(page, default_timeout=120)
        started = time.perf_counter()
        at.run()
        times.append((time.perf_counter() - started) * 1000)
        if at.exception:
            raise SystemExit(f"the page failed: {at.exception}")
    print(
        f"\nHistory page, whole script run (AppTest): first {times[0]:.0f} ms, "
        f"then median {statistics.median(times[1:]):.0f} ms"
    )


def _day(seeded: Seeded) -> date:
    """A day in the middle of the seeded period (the seeder starts a run every 10 minutes)."""
    return (START + timedelta(minutes=10) * (seeded.runs // 2)).date()


if __name__ == "__main__":
    main()
