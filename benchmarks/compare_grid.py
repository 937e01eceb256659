"""How fast the Compare grid is with 1,000 rows × 4 columns, against the page it replaced.

Run on demand (not part of the test suite):

    .venv/bin/python benchmarks/compare_grid.py               # 1,000 rows, 5 repeats
    .venv/bin/python benchmarks/compare_grid.py --rows 200    # a quicker look

Seeds a temporary SQLite database (migrated like a real one) with one prompt in two versions
and four stored runs over the same rows — v1 and v2 on two models — each row with an
`expected` answer, written as table rows (generating 4,000 answers would take an hour). Then
times, as medians in milliseconds:

- the grid's model: lining the stored outputs up (`compare.compare_runs`), judging every cell
  (`grid.column_checks`, `grid.build_grid` with the stored scores) and the summary strip;
- the "diverges at token N" column (`grid.divergence_column`): every output's stored token
  log-probabilities read (4,000 blobs, WLP1 at k = 5), ids compared for the two columns of
  model-a's tokenizer, token texts decoded (a toy tokenizer: word lists) for model-b's two;
- the same rows in one AgGrid (streamlit-aggrid, when it is installed: the workbench does
  not depend on it) — every row sent to the browser at once, the page's filter rerun;
- the page script run through Streamlit's AppTest: the run that opens the stored comparison
  (a click) and a rerun with it open (a filter switched), for this page and for the Compare
  page before the grid (read from git at BASELINE_COMMIT), in the same process and database.

AppTest times the script and the messages it sends, not the browser drawing them; the grid
sends one page of rows (20), the old page sent every output to its ratings table. With `--cpu`
every figure is the process's CPU time instead of the wall clock (AppTest runs the page script
in a thread of this process), which other work on a shared machine does not stretch.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from history_data import output_record, run_record  # noqa: E402

from workbench import compare, evaluate, grid, ratings  # noqa: E402
from workbench.library import Library  # noqa: E402
from workbench.logprobs import TokenLogprobs  # noqa: E402
from workbench.store import Output, Run, RunRow, RunVersion  # noqa: E402

PAGE = ROOT / "workbench" / "app" / "pages" / "3_Compare.py"
BASELINE_COMMIT = "58dd751"  # main before the grid: the form-like Compare page
WORDS = ("the", "film", "was", "great", "awful", "fine", "plot", "acting", "long", "short")
LABELS = ("Positive", "Negative", "Neutral")
VOCABULARY = ("<eos>", ".", *LABELS, *(" " + w for w in WORDS))  # the toy tokenizer's pieces
EOS = 0
clock = time.perf_counter  # --cpu: time.process_time (the script's thread is in this process)


def toy_decode(ids: Any, *, in_sequence: bool = True) -> list[str]:
    return [VOCABULARY[i] for i in ids]


def token_blob(text: str, rng: random.Random) -> bytes:
    """Stored token log-probabilities for a seeded answer: a token per label, full stop and
    word (the toy tokenizer), end-of-sequence last, five alternatives a step."""
    label, _, rest = text.partition(".")
    tokens = [VOCABULARY.index(label), 1, *(VOCABULARY.index(" " + w) for w in rest.split())]
    tokens.append(EOS)
    tops = [[t, *rng.sample(range(len(VOCABULARY)), 4)] for t in tokens]
    top_lps = [sorted((-rng.uniform(0, 6) for _ in step), reverse=True) for step in tops]
    record = TokenLogprobs(
        tuple(tokens),
        tuple(step[0] for step in top_lps),
        tuple(tuple(step) for step in tops),
        tuple(tuple(step) for step in top_lps),
    )
    return record.to_bytes()


def prompt_text(number: int) -> str:
    return (
        "---\nname: sentiment\ndescription: Labels a review.\n"
        "inputs:\n  text:\n    kind: string\n    default: hello\n---\n"
        f"user:\nLabel this review (revision {number}): {{{{ text }}}}\n"
    )


def seed(library: Library, rows: int, *, logprobs: bool = True) -> list[int]:
    """Two versions × two models over the same rows; returns the four run ids."""
    rng = random.Random(13)
    refs = [library.save(prompt_text(n), f"v{n}").version.ref for n in (1, 2)]
    with library.store.read() as s:
        ids = {ref: library.resolve_in(s, ref).id for ref in refs}
        first = (s.scalar(select(func.max(Run.id))) or 0) + 1
    variables = [
        {"text": " ".join(rng.choice(WORDS) for _ in range(12)), "expected": rng.choice(LABELS)}
        for _ in range(rows)
    ]
    runs, versions, run_rows, outputs = [], [], [], []
    start = datetime(2026, 1, 1)
    for c, (ref, model) in enumerate(
        [(refs[0], "model-a"), (refs[1], "model-a"), (refs[0], "model-b"), (refs[1], "model-b")]
    ):
        run_id = first + c
        runs.append(run_record(run_id, model, rows, start, dataset="reviews.csv"))
        versions.append({"run_id": run_id, "position": 0, "version_id": ids[ref]})
        for i, values in enumerate(variables):
            run_rows.append({"run_id": run_id, "row_index": i, "variables": values})
            answer = values["expected"] if rng.random() < 0.6 else rng.choice(LABELS)
            text = f"{answer}. " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 20)))
            outputs.append(
                output_record(
                    run_id,
                    ids[ref],
                    i,
                    values,
                    model,
                    text,
                    start + timedelta(seconds=i),
                    latency_s=rng.uniform(0.2, 1.5),
                    cached=i % 7 == 0,
                    token_logprobs=token_blob(text, rng) if logprobs else None,
                )
            )
    with library.store.write() as s:
        s.execute(insert(Run), runs)
        s.execute(insert(RunVersion), versions)
        s.execute(insert(RunRow), run_rows)
        s.execute(insert(Output), outputs)
    return [first + c for c in range(4)]


def median_ms(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = clock()
        fn()
        times.append(clock() - started)
    return statistics.median(times) * 1000


def grid_model(library: Library, run_ids: list[int], *, diverges: bool = True) -> grid.GridModel:
    pairs = compare.stored_columns(library.store, run_ids)
    comparison = compare.compare_runs(library.store, pairs)
    scores = evaluate.stored_scores(library.store, comparison.output_ids)
    parts = (
        grid.divergence_column(library.store, comparison, 0, lambda output: toy_decode)
        if diverges
        else None
    )
    checks = grid.column_checks(library, comparison)
    model = grid.build_grid(comparison, 0, checks, scores, parts)
    grid.summarise(model, ratings.ratings(library.store, comparison.output_ids))
    grid.select_rows(model, worse_first=True)
    return model


def baseline_page(folder: Path) -> Path | None:
    """The Compare page as it was before the grid, from git (None outside a clone)."""
    try:
        text = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{BASELINE_COMMIT}:workbench/app/pages/3_Compare.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = folder / "pages" / "3_Compare_before.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def sort_times(page: Path, run_ids: list[int], repeats: int) -> tuple[float, float]:
    """(first sort by where answers part: every row's divergence read, a rerun after it)."""
    from streamlit.testing.v1 import AppTest

    first, again = [], []
    for _ in range(repeats):
        at = AppTest.from_file(str(page), default_timeout=300).run()
        at.radio(key="cmp_mode").set_value("Stored runs").run()
        at.multiselect(key="cmp_runs").set_value(run_ids).run()
        at.button(key="cmp_stored").click().run()
        started = clock()
        at.selectbox(key="cmp_parts").set_value("earliest first").run()
        first.append(clock() - started)
        assert not at.exception, at.exception
        started = clock()
        at.toggle(key="cmp_timing").set_value(True).run()
        again.append(clock() - started)
    return statistics.median(first) * 1000, statistics.median(again) * 1000


def page_times(page: Path, run_ids: list[int], repeats: int, rerun: str) -> tuple[float, float]:
    """(open the stored comparison, rerun with it open) for a page, medians in ms."""
    from streamlit.testing.v1 import AppTest

    opened, again = [], []
    for _ in range(repeats):
        at = AppTest.from_file(str(page), default_timeout=300).run()
        at.radio(key="cmp_mode").set_value("Stored runs").run()
        at.multiselect(key="cmp_runs").set_value(run_ids).run()
        started = clock()
        at.button(key="cmp_stored").click().run()
        opened.append(clock() - started)
        assert not at.exception, at.exception
        started = clock()
        at.toggle(key=rerun).set_value(not at.toggle(key=rerun).value).run()
        again.append(clock() - started)
        assert not at.exception, at.exception
    return statistics.median(opened) * 1000, statistics.median(again) * 1000


AGGRID_SCRIPT = """
import os
import pandas as pd
import streamlit as st
from st_aggrid import AgGrid, GridOptionsBuilder
from workbench import compare, evaluate, grid
from workbench.workspace import open_library

lib = open_library()
if "model" not in st.session_state:
    ids = [int(i) for i in os.environ["COMPARE_GRID_RUNS"].split(",")]
    comparison = compare.compare_runs(lib.store, compare.stored_columns(lib.store, ids))
    scores = evaluate.stored_scores(lib.store, comparison.output_ids)
    st.session_state["model"] = grid.build_grid(
        comparison, 0, grid.column_checks(lib, comparison), scores
    )
model = st.session_state["model"]
records = []
for row in grid.select_rows(model, worse_first=st.toggle("worse first", key="worse")):
    record = {"row": row.index + 1, **row.variables, "expected": row.expected}
    for label, cell in zip(model.labels, row.cells):
        record[label] = cell.output.text if cell.output else None
        record[label + " pass"] = cell.passed
    records.append(record)
options = GridOptionsBuilder.from_dataframe(pd.DataFrame(records))
options.configure_default_column(wrapText=True, autoHeight=True)
AgGrid(pd.DataFrame(records), gridOptions=options.build(), height=700, key="grid")
"""


def aggrid_times(folder: Path, run_ids: list[int], repeats: int) -> tuple[float, float] | None:
    """The same rows in one AgGrid (streamlit-aggrid, every row sent at once), if installed."""
    try:
        import st_aggrid  # noqa: F401
    except ImportError:
        return None
    from streamlit.testing.v1 import AppTest

    script = folder / "aggrid_page.py"
    script.write_text(AGGRID_SCRIPT, encoding="utf-8")
    os.environ["COMPARE_GRID_RUNS"] = ",".join(map(str, run_ids))
    opened, again = [], []
    for _ in range(repeats):
        at = AppTest.from_file(str(script), default_timeout=300)
        started = clock()
        at.run()
        opened.append(clock() - started)
        assert not at.exception, at.exception
        started = clock()
        at.toggle(key="worse").set_value(True).run()
        again.append(clock() - started)
    return statistics.median(opened) * 1000, statistics.median(again) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--no-logprobs",
        action="store_true",
        help="seed outputs without token log-probabilities (as before they were stored)",
    )
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="time CPU (process time) instead of wall-clock: steadier on a shared machine",
    )
    args = parser.parse_args()
    global clock
    if args.cpu:
        clock = time.process_time
    folder = Path(tempfile.mkdtemp(prefix="compare-grid-"))
    os.environ["WORKBENCH_DATABASE_URL"] = f"sqlite:///{folder}/bench.db"
    os.environ["WORKBENCH_STORAGE_DIR"] = str(folder)
    from workbench.workspace import open_library

    library = open_library()
    started = clock()
    run_ids = seed(library, args.rows, logprobs=not args.no_logprobs)
    print(f"seeded {args.rows} rows × 4 columns in {clock() - started:.1f} s")

    plain_ms = median_ms(lambda: grid_model(library, run_ids, diverges=False), args.repeats)
    print(f"grid model (align, judge {args.rows * 4} cells, summary, sort): {plain_ms:8.1f} ms")
    model_ms = median_ms(lambda: grid_model(library, run_ids), args.repeats)
    print(f"  ... with the divergence column:                    {model_ms:8.1f} ms")
    comparison = compare.compare_runs(library.store, compare.stored_columns(library.store, run_ids))
    ids = median_ms(lambda: grid.divergence_column(library.store, comparison, 0), args.repeats)
    texts = median_ms(
        lambda: grid.divergence_column(library.store, comparison, 0, lambda o: toy_decode),
        args.repeats,
    )
    print(f"divergence column alone: ids only {ids:8.1f} ms   with token texts {texts:8.1f} ms")

    opened, rerun = page_times(PAGE, run_ids, args.repeats, "cmp_timing")
    print(f"grid page via AppTest:   open {opened:8.1f} ms   rerun {rerun:8.1f} ms")
    first, after = sort_times(PAGE, run_ids, args.repeats)
    print(f"  sort by where answers part: first {first:8.1f} ms   rerun {after:8.1f} ms")
    aggrid = aggrid_times(folder, run_ids, args.repeats)
    if aggrid is None:
        print("streamlit-aggrid is not installed: no AgGrid figures")
    else:
        print(f"all rows in AgGrid:      open {aggrid[0]:8.1f} ms   rerun {aggrid[1]:8.1f} ms")
    before = baseline_page(folder)
    if before is None:
        print("the page before the grid is not in this checkout's git history: no baseline")
        return
    old_open, old_rerun = page_times(before, run_ids, args.repeats, "cmp_diff")
    print(f"old page via AppTest:    open {old_open:8.1f} ms   rerun {old_rerun:8.1f} ms")
    ratio_open, ratio_rerun = old_open / opened, old_rerun / rerun
    print(f"old ÷ grid:              open {ratio_open:8.2f} ×    rerun {ratio_rerun:8.2f} ×")


if __name__ == "__main__":
    main()
