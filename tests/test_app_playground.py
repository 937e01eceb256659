"""Playground page: one input streamed and stored; a dataset run with progress, cancel, download."""

from __future__ import annotations

from pathlib import Path

from conftest import app_test, shown

from workbench import jobs
from workbench.runner import Runner
from workbench.runs import list_runs, run_outputs
from workbench.workspace import open_library

PAGE = "pages/2_Playground.py"


def _open(prompt: str = "zero-shot-sentiment-chat") -> object:
    at = app_test(PAGE).run()
    assert not at.exception, at.exception
    at.selectbox(key="play_prompt").set_value(prompt).run()
    assert not at.exception, at.exception
    return at


def _stored_outputs() -> list:
    lib = open_library()
    runner = Runner(lib)
    return [o for r in list_runs(runner.store) for o in run_outputs(runner.store, r.id)]


SINGLE, DATASET = "play_single_job", "play_dataset_job"


def _run_single(at: object) -> jobs.Job:
    """Click Run, wait for the background answer, redraw the page with it."""
    at.button(key="play_run").click().run()  # type: ignore[attr-defined]
    assert not at.exception, at.exception  # type: ignore[attr-defined]
    job = _wait_for_job(at, SINGLE)
    at.run()  # type: ignore[attr-defined]
    return job


def test_single_run_streams_stores_and_shows_stats(app_env: Path) -> None:
    at = _open()
    at.text_area(key="play_var:zero-shot-sentiment-chat@1:text").set_value("I love it").run()
    at.number_input(key="param:zero-shot-sentiment-chat@1:max_new_tokens").set_value(7).run()
    job = _run_single(at)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]

    stored = _stored_outputs()
    assert len(stored) == 1
    output = stored[0]
    assert output.variables["text"] == "I love it"
    assert output.params["max_new_tokens"] == 7
    assert output.completion_tokens is not None and 0 < output.completion_tokens <= 7
    assert "I love it" in output.model_input
    # The answer is shown as text (a code block), with its token counts and finish reason.
    assert output.text in [c.value for c in at.code]
    assert job.text == output.text  # the text streamed while it was generated
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Tokens"] == f"{output.prompt_tokens} → {output.completion_tokens}"
    assert metrics["Finish"] == output.finish_reason

    # The same request again is answered from the stored output, marked as cached.
    _run_single(at)
    again = _stored_outputs()
    assert len(again) == 2 and sum(o.cached for o in again) == 1
    assert "answered from the cache" in " ".join(c.value for c in at.caption)


def test_render_error_is_a_message_not_a_traceback(app_env: Path) -> None:
    lib = open_library()
    base = lib.get("zero-shot-translation").file.canonical_text()
    lib.save(base.replace("{{ text }}", "{{ text.wording }}"), "reads a missing attribute")
    at = _open("zero-shot-translation")
    at.button(key="play_run").click().run()
    assert not at.exception, at.exception
    assert at.error and "wording" in at.error[0].value
    assert "Traceback" not in at.error[0].value
    assert _stored_outputs() == []


def test_model_output_is_never_html(app_env: Path) -> None:
    from workbench.app.ui import escape_markdown

    assert escape_markdown("<script>alert(1)</script>") == (
        "\\<script\\>alert\\(1\\)\\<\\/script\\>"
    )
    assert escape_markdown("**x**\n# y") == "\\*\\*x\\*\\*  \n\\# y"


def _wait_for_job(at: object, key: str) -> jobs.Job:
    job = jobs.get_job(at.session_state[key])  # type: ignore[attr-defined]
    assert job is not None
    assert job.wait(120), "the dataset job did not finish"
    return job


def test_dataset_rows_edited_in_a_table_run_with_progress(app_env: Path) -> None:
    at = _open()
    key = "play_ds:zero-shot-sentiment-chat@1:rows"
    at.session_state[key] = {
        "edited_rows": {0: {"text": "great"}},
        "added_rows": [{"text": "awful"}, {"text": "fine"}],
        "deleted_rows": [],
    }
    at.number_input(key="param:zero-shot-sentiment-chat@1:max_new_tokens").set_value(5).run()
    assert "3 rows" in " ".join(c.value for c in at.caption)
    at.button(key="play_run_dataset").click().run()
    assert not at.exception, at.exception
    job = _wait_for_job(at, DATASET)
    assert job.error is None
    at.run()
    assert not at.exception, at.exception
    assert at.get("progress")[0].proto.value == 100
    frame = at.dataframe[-1].value  # [0] is the rows editor
    assert list(frame["text"]) == ["great", "awful", "fine"]
    assert at.success and "3 rows" in at.success[0].value
    stored = _stored_outputs()
    assert sorted(o.variables["text"] for o in stored) == ["awful", "fine", "great"]
    downloads = at.get("download_button")
    assert len(downloads) == 2


def _mapping_script() -> None:
    import streamlit as st

    from workbench.app import ui
    from workbench.datasets import parse_dataset

    data = b"review,label\ngood,positive\nbad,negative\n"
    mapped = ui.map_columns(parse_dataset(data, "reviews.csv"), ["text", "tone"], key="m")
    st.json({"columns": list(mapped.columns), "rows": list(mapped.rows)})


def test_uploaded_file_columns_are_mapped_to_variables(app_env: Path) -> None:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_mapping_script, default_timeout=30).run()
    assert not at.exception, at.exception
    # Nothing mapped yet: the file as it is, so a run refuses it naming its columns.
    assert '"columns": ["review", "label"]' in at.json[0].value.replace("\n", "")
    at.selectbox(key="m:map:text").set_value("review").run()
    shown = at.json[0].value
    assert '"text": "good"' in shown and '"text": "bad"' in shown and "tone" not in shown

    # On the page, choosing "Upload a file" offers the uploader (AppTest cannot upload).
    page = _open()
    page.radio(key="play_ds:zero-shot-sentiment-chat@1:source").set_value("Upload a file").run()
    assert not page.exception, page.exception
    assert page.get("file_uploader")


def test_cancel_keeps_finished_rows(app_env: Path) -> None:
    at = _open()
    key = "play_ds:zero-shot-sentiment-chat@1:rows"
    at.session_state[key] = {
        "edited_rows": {},
        "added_rows": [{"text": f"row {i}"} for i in range(40)],
        "deleted_rows": [],
    }
    at.number_input(key="param:zero-shot-sentiment-chat@1:max_new_tokens").set_value(200).run()
    at.button(key="play_run_dataset").click().run()
    job = jobs.get_job(at.session_state[DATASET])
    assert job is not None
    at.button(key="play_cancel").click().run()
    assert job.wait(120)
    at.run()
    assert not at.exception, at.exception
    summary = job.result
    assert summary.run.status == "cancelled"
    assert summary.run.done < summary.run.total
    kept = f"Stopped: {summary.run.done} of {summary.run.total} rows kept"
    assert at.warning and shown(at.warning[0].value).startswith(kept)
    assert "Resume run" in shown(at.warning[0].value)


def test_a_model_that_is_not_there_is_a_message(app_env: Path) -> None:
    at = _open()
    at.text_input(key="model_spec").set_value(str(app_env / "no-such-model")).run()
    _run_single(at)
    assert not at.exception, at.exception
    assert at.error, "expected a message about the model"
    message = shown(at.error[0].value)
    assert "no-such-model" in message and "Traceback" not in message
    assert _stored_outputs() == []


def test_self_consistency_dataset_shows_votes(app_env: Path) -> None:
    at = _open("self-consistency-math")
    key = "play_ds:self-consistency-math@1:rows"
    at.session_state[key] = {
        "edited_rows": {0: {"question": "What is 2 + 2?"}},
        "added_rows": [],
        "deleted_rows": [],
    }
    at.number_input(key="param:self-consistency-math@1:max_new_tokens").set_value(4).run()
    at.button(key="play_run_dataset").click().run()
    assert not at.exception, at.exception
    job = _wait_for_job(at, DATASET)
    assert job.error is None, job.error
    at.run()
    assert job.result.run.total == 5  # the prompt asks for 5 samples
    votes = at.dataframe[-1].value
    assert list(votes.columns) == ["row", "answer", "agreement", "samples", "counts"]
    assert list(votes["samples"]) == [5]


def test_single_output_input_goes_into_a_test_set_with_its_expected_answer(app_env: Path) -> None:
    from workbench.testsets import get_test_set

    at = _open()
    at.text_area(key="play_var:zero-shot-sentiment-chat@1:text").set_value("Great value").run()
    at.number_input(key="param:zero-shot-sentiment-chat@1:max_new_tokens").set_value(3).run()
    _run_single(at)
    (output,) = _stored_outputs()
    key = f"play_testset:{output.id}"
    # the expected answer starts as the output, and is corrected before adding
    assert at.text_input(key=f"{key}:expected").value == (output.text or "").strip()
    at.text_input(key=f"{key}:expected").set_value("Positive").run()
    at.text_input(key=f"{key}:name").set_value("golden").run()
    at.button(key=f"{key}:add").click().run()
    assert not at.exception, at.exception
    assert at.success and "golden@1 has 1 row." in shown(at.success[-1].value)
    stored = get_test_set(open_library().store, "golden")
    assert stored.rows == ({"text": "Great value", "expected": "Positive"},)
