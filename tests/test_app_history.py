"""History page: lists every run and output, filters them, opens a run, re-runs, resumes and
downloads it — on the tiny model, through the page as a person uses it."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import streamlit.testing.v1.app_test as app_test_module
from conftest import app_test, shown
from history_data import seed_history
from sqlalchemy import delete, func, select, update
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

from workbench.runner import Runner
from workbench.runs import OutputRecord, get_run, list_runs, run_outputs
from workbench.store import Output, Run
from workbench.workspace import open_library

PAGE = "pages/4_History.py"
REVIEWS = ["I love it", "Terrible service", "It is blue", "Fantastic!"]


@pytest.fixture
def make_run(app_env: Path, tiny_backend: Any) -> Any:
    """Run a built-in prompt over some reviews on the tiny model; returns the run id."""

    def make(
        rows: list[str] = REVIEWS[:2], prompt: str = "zero-shot-sentiment", **overrides: Any
    ) -> int:
        runner = Runner(open_library(), tiny_backend)
        version = runner.library.get(prompt)
        summary = runner.run(
            [version], [{"text": t} for t in rows], overrides={"max_new_tokens": 3, **overrides}
        )
        return summary.run.id

    return make


def open_page() -> Any:
    at = app_test(PAGE).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def table(at: Any, column: str) -> pd.DataFrame:
    """The first table that has this column (outputs: 'variables', runs: 'versions')."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def outputs_of(run_id: int) -> list[OutputRecord]:
    return run_outputs(open_library().store, run_id)


def run_count() -> int:
    with open_library().store.read() as s:
        return int(s.scalar(select(func.count()).select_from(Run)) or 0)


def test_the_page_lists_every_run_and_output_newest_first(make_run: Any) -> None:
    first = make_run(REVIEWS[:2])
    second = make_run(["Bonjour"], prompt="zero-shot-translation")
    at = open_page()

    outputs = table(at, "variables")
    assert list(outputs["run"]) == [second, first, first]
    assert list(outputs["id"]) == sorted(outputs["id"], reverse=True)
    assert list(outputs["prompt"]) == [
        "zero-shot-translation@1",
        "zero-shot-sentiment@1",
        "zero-shot-sentiment@1",
    ]
    runs = table(at, "versions")
    assert list(runs["run"]) == [second, first]
    assert list(runs["done"]) == ["1/1", "2/2"]
    assert at.selectbox(key="history:open").value == second  # the newest run is open


@pytest.mark.parametrize(
    ("widget", "value", "expected_rows"),
    [
        ("history:prompt", "zero-shot-translation", 1),
        ("history:text", "terrible", 1),  # case-insensitive, in the variables
        ("history:text", "no such words", 0),
    ],
)
def test_filters_narrow_the_tables(
    make_run: Any, widget: str, value: str, expected_rows: int
) -> None:
    make_run(REVIEWS[:2])
    make_run(["Bonjour"], prompt="zero-shot-translation")
    at = open_page()
    if widget == "history:text":
        at.text_input(key=widget).set_value(value).run()
    else:
        at.selectbox(key=widget).set_value(value).run()
    assert not at.exception, at.exception
    if expected_rows:
        assert len(table(at, "variables")) == expected_rows
    else:
        assert not any("variables" in d.value.columns for d in at.dataframe)
        assert "No outputs match these filters." in [i.value for i in at.info]


def test_a_label_filter_shows_the_labelled_versions_outputs(make_run: Any) -> None:
    lib = open_library()
    lib.set_label("zero-shot-sentiment@1", "production")
    make_run(REVIEWS[:1])
    make_run(["Bonjour"], prompt="zero-shot-translation")
    at = open_page()
    at.selectbox(key="history:version:None").set_value("@production").run()
    assert list(table(at, "variables")["prompt"]) == ["zero-shot-sentiment@1"]


def test_pages_go_older_and_back(app_env: Path) -> None:
    seed_history(open_library(), 60, rows_per_run=20)
    at = open_page()
    at.selectbox(key="history:outputs:size").set_value(25).run()
    first = list(table(at, "variables")["id"])
    assert len(first) == 25 and "Page 1 · 60 in all" in [c.value for c in at.caption]
    at.button(key="history:outputs:older").click().run()
    second = list(table(at, "variables")["id"])
    assert len(second) == 25 and max(second) < min(first)
    at.button(key="history:outputs:older").click().run()
    third = list(table(at, "variables")["id"])
    assert len(third) == 10 and at.button(key="history:outputs:older").disabled
    assert len(set(first + second + third)) == 60
    at.button(key="history:outputs:newer").click().run()
    assert list(table(at, "variables")["id"]) == second


def test_opening_a_run_shows_its_outputs_as_text_and_offers_downloads(
    make_run: Any, download: Callable[[Any], bytes]
) -> None:
    run_id = make_run(REVIEWS[:3])
    make_run(["Bonjour"], prompt="zero-shot-translation")
    at = open_page()
    at.selectbox(key="history:open").set_value(run_id).run()
    assert not at.exception, at.exception
    stored = outputs_of(run_id)
    shown = [c.value for c in at.code]
    assert all((o.text or "(empty answer)") in shown for o in stored)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Outputs"] == "3/3" and metrics["Status"] == "done"

    buttons = {b.proto.label: b.proto for b in at.get("download_button")}
    assert set(buttons) == {"Download CSV", "Download JSON Lines"}
    csv_data = download(buttons["Download CSV"])
    jsonl_data = download(buttons["Download JSON Lines"])
    assert buttons["Download CSV"].url.endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(csv_data.decode("utf-8"))))
    assert [r["text"] for r in rows] == [o.text or "" for o in stored]
    lines = [json.loads(line) for line in jsonl_data.decode("utf-8").splitlines()]
    assert [(x["run_id"], x["row_index"], x["text"]) for x in lines] == [
        (run_id, o.row_index, o.text) for o in stored
    ]


class KeptStorage(MemoryMediaFileStorage):
    """AppTest's in-memory media storage, remembered so a test can read what a button serves."""

    last: KeptStorage | None = None

    def __init__(self, media_endpoint: str) -> None:
        super().__init__(media_endpoint)
        KeptStorage.last = self


@pytest.fixture
def download(monkeypatch: pytest.MonkeyPatch) -> Callable[[Any], bytes]:
    """A download button's proto → the bytes it serves."""
    monkeypatch.setattr(app_test_module, "MemoryMediaFileStorage", KeptStorage)

    def data(proto: Any) -> bytes:
        assert KeptStorage.last is not None
        file_id = proto.url.rsplit("/", 1)[-1].split(".", 1)[0]
        return bytes(KeptStorage.last.get_file(file_id).content)

    return data


def generate(at: Any, button: str) -> list[str]:
    """Click Run again or Resume, wait for the background job, redraw the page; the success
    messages shown on the way. The page says once that the job ended: in the click's own rerun
    when a short job ends before that rerun is drawn, else in the redraw after it."""
    from workbench import jobs

    at.button(key=button).click().run()
    assert not at.exception, at.exception
    said = [s.value for s in at.success]
    job = jobs.get_job(at.session_state["history:job"])
    assert job is not None and job.wait(120)
    at.run()
    return said + [s.value for s in at.success]


def test_run_again_stores_a_new_run_with_the_same_versions_rows_and_overrides(
    make_run: Any,
) -> None:
    run_id = make_run(REVIEWS[:2], max_new_tokens=2)
    at = open_page()
    said = generate(at, "history:rerun")
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert run_count() == 2
    runner = Runner(open_library())
    old, new = get_run(runner.store, run_id), list_runs(runner.store, limit=1)[0]
    assert new.id != run_id and new.status == "done"
    assert (new.versions, new.params, new.total) == (old.versions, old.params, old.total)
    assert [o.variables for o in outputs_of(new.id)] == [o.variables for o in outputs_of(run_id)]
    assert [o.text for o in outputs_of(new.id)] == [o.text for o in outputs_of(run_id)]
    # The page opens the new run and says what happened.
    assert at.selectbox(key="history:open").value == new.id
    assert any(f"Run {new.id} (done)" in message for message in said)


def test_resume_generates_only_the_missing_outputs(make_run: Any) -> None:
    run_id = make_run(REVIEWS)
    before = outputs_of(run_id)
    lib = open_library()
    with lib.store.write() as s:
        s.execute(delete(Output).where(Output.id.in_([before[1].id, before[3].id])))
    at = open_page()
    assert "2 outputs are missing" in " ".join(c.value for c in at.caption)
    generate(at, "history:resume")
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]

    after = outputs_of(run_id)
    assert len(after) == 4 and run_count() == 1
    kept = {o.id for o in before} - {before[1].id, before[3].id}
    assert kept <= {o.id for o in after}  # untouched; only rows 2 and 4 are new
    assert sorted(o.row_index for o in after if o.id not in kept) == [1, 3]
    assert [o.text for o in after] == [o.text for o in before]  # greedy: the same answers
    assert get_run(lib.store, run_id).status == "done"
    assert at.metric[1].value == "4/4"
    assert not at.button(key="history:rerun").disabled
    assert not [b for b in at.button if b.key == "history:resume"]


def test_resuming_with_another_model_shows_the_runners_message(make_run: Any) -> None:
    run_id = make_run(REVIEWS[:2])
    lib = open_library()
    with lib.store.write() as s:
        s.execute(update(Run).where(Run.id == run_id).values(model="someone-elses-model"))
        s.execute(delete(Output).where(Output.run_id == run_id, Output.row_index == 1))
    at = open_page()
    generate(at, "history:resume")
    assert not at.exception, at.exception
    errors = " ".join(shown(e.value) for e in at.error)
    assert "used someone-elses-model" in errors and "load that model to resume it" in errors
    assert len(outputs_of(run_id)) == 1  # nothing was generated


def test_model_text_is_shown_as_text_never_as_html(make_run: Any) -> None:
    run_id = make_run(REVIEWS[:1])
    lib = open_library()
    with lib.store.write() as s:
        s.execute(
            update(Output).where(Output.run_id == run_id).values(text="<script>alert(1)</script>")
        )
    at = open_page()
    assert "<script>alert(1)</script>" in [c.value for c in at.code]
    assert not any("<script>" in m.value for m in at.markdown)
    assert table(at, "variables")["text"][0] == "<script>alert(1)</script>"


def test_an_empty_history_says_so(app_env: Path) -> None:
    at = open_page()
    infos = [i.value for i in at.info]
    assert "No outputs match these filters." in infos
    assert any("No run to open" in i for i in infos)


def test_a_runs_inputs_go_into_a_test_set(make_run: Any) -> None:
    from workbench.testsets import get_test_set

    run_id = make_run(REVIEWS[:2])
    at = open_page()
    at.selectbox(key="history:open").set_value(run_id).run()
    at.text_input(key="history:testset:name").set_value("regressions").run()
    at.button(key="history:testset:add").click().run()
    assert not at.exception, at.exception
    assert at.success and "regressions@1 has 2 rows" in at.success[-1].value
    stored = get_test_set(open_library().store, "regressions")
    assert [r["text"] for r in stored.rows] == REVIEWS[:2]
    at.button(key="history:testset:add").click().run()  # again: a new version, rows appended
    assert "regressions@2 has 4 rows" in at.success[-1].value


def test_cached_and_batched_outputs_say_so_instead_of_a_bare_latency(make_run: Any) -> None:
    first = make_run(REVIEWS[:3])
    second = make_run(REVIEWS[:3])  # the same requests: every answer comes from the cache
    generated, cached = outputs_of(first), outputs_of(second)
    assert all(o.cached for o in cached) and not any(o.cached for o in generated)
    assert all((o.batch_size or 1) > 1 for o in generated), "the tiny model batches greedy rows"
    at = open_page()

    outputs = table(at, "variables")
    latencies = dict(zip(outputs["id"], outputs["latency"], strict=True))
    for o in cached:  # the original time, named as such
        assert latencies[o.id] == f"cached (original {o.latency_s:.2f} s)"
    for o in generated:
        assert latencies[o.id] == f"batch of {o.batch_size}, {o.latency_s:.2f} s"

    at.selectbox(key="history:open").set_value(second).run()
    run_table = next(  # the opened run's table: the outputs table has an id column too
        d.value for d in at.dataframe if "latency" in d.value.columns and "id" not in d.value
    )
    assert all(text.startswith("cached (original ") for text in run_table["latency"])
    captions = [shown(c.value) for c in at.caption]
    assert any("row 1 · cached (original " in c for c in captions), captions


def test_a_gguf_revision_shows_its_hash_not_only_its_prefix(make_run: Any) -> None:
    run_id = make_run(["I love it"])
    digest = "0123456789abcdef" * 4
    with open_library().store.write() as s:
        s.execute(update(Run).where(Run.id == run_id).values(revision=f"gguf-sha256-{digest}"))
    at = open_page()
    model_line = next(m for m in at.markdown if m.value.startswith("**Model**"))
    assert "revision gguf-sha256-0123456789ab ·" in shown(model_line.value)
    assert digest in shown(model_line.proto.help)  # the whole revision on hover


def test_counts_are_worded_in_the_singular_for_one(make_run: Any) -> None:
    make_run(["I love it"])
    at = open_page()
    captions = [shown(c.value) for c in at.caption]
    assert any("Same versions, 1 row and parameter overrides" in c for c in captions), captions
    assert not any("row(s)" in c or "1 rows" in c for c in captions)
    at.text_input(key="history:testset:name").set_value("one").run()
    at.button(key="history:testset:add").click().run()
    assert shown(at.success[-1].value) == "Added 1 row: one@1 has 1 row."
