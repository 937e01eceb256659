"""A CSV whose columns fit none of the prompt's variables is refused naming those columns, on
every page that takes uploaded rows through ui.map_columns (the Playground said "(its columns: )"
for a file with `review,label`: nothing mapped used to hand on a dataset without columns)."""

from __future__ import annotations

from pathlib import Path

from conftest import app_test, shown

from workbench.runs import list_runs
from workbench.workspace import open_library

REVIEWS = b"review,label\ngood,positive\nbad,negative\n"


def test_the_playground_refuses_it_naming_the_files_columns(app_env: Path) -> None:
    at = app_test("pages/2_Playground.py").run()
    at.selectbox(key="play_prompt").set_value("zero-shot-sentiment").run()
    key = "play_ds:zero-shot-sentiment@1"
    at.radio(key=f"{key}:source").set_value("Upload a file").run()
    at.file_uploader(key=f"{key}:file").set_value([("reviews.csv", REVIEWS, "text/csv")]).run()
    assert not at.exception, at.exception
    at.button(key="play_run_dataset").click().run()
    assert not at.exception, at.exception
    message = " ".join(shown(e.value) for e in at.error)
    assert "reviews.csv does not fit" in message, message
    assert "(its columns: review, label)" in message, message
    assert list_runs(open_library().store) == []
