"""Compare page: columns run side by side (v1 against v2), diffs, charts, ratings, stored runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import app_test

from workbench import jobs, ratings
from workbench.runner import Runner
from workbench.workspace import open_library

PAGE = "pages/3_Compare.py"
PROMPT = "zero-shot-sentiment-chat"


def _save_v2() -> None:
    lib = open_library()
    text = lib.get(PROMPT).file.canonical_text()
    edited = text.replace("Sentiment", "Feeling", 1)
    assert edited != text
    assert lib.save(edited, "asks for the feeling").version.number == 2


def _run_comparison(at: Any) -> jobs.Job:
    at.button(key="cmp_run").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    job = jobs.get_job(at.session_state["cmp_job"])
    assert job is not None and job.wait(120)
    assert job.error is None, job.error
    at.run()
    assert not at.exception, at.exception
    return job


def test_v2_against_v1_side_by_side_with_diff_charts_and_ratings(app_env: Path) -> None:
    _save_v2()
    at = app_test(PAGE).run()
    assert not at.exception, at.exception
    at.selectbox(key="cmp_prompt_0").set_value(PROMPT).run()
    at.selectbox(key="cmp_prompt_1").set_value(PROMPT).run()
    # Column 1 starts at the latest version, column 2 at the one before it.
    assert at.selectbox(key=f"cmp_prompt_0:version:{PROMPT}").value == 2
    assert at.selectbox(key=f"cmp_prompt_1:version:{PROMPT}").value == 1
    at.text_input(key="cmp_params_0").set_value("max_new_tokens=6").run()
    at.text_input(key="cmp_params_1").set_value("max_new_tokens=6").run()
    at.session_state["cmp_rows:rows"] = {
        "edited_rows": {0: {"text": "I love it"}},
        "added_rows": [{"text": "I hate it"}],
        "deleted_rows": [],
    }
    at.run()
    job = _run_comparison(at)
    comparison = job.result
    assert [c.ref for c in comparison.columns] == [f"{PROMPT}@2", f"{PROMPT}@1"]
    assert [r["text"] for r in comparison.rows] == ["I love it", "I hate it"]
    assert all(cell is not None for row in comparison.cells for cell in row)

    # Each column is an ordinary stored run.
    runner = Runner(open_library())
    runs = runner.list_runs()
    assert {tuple(r.versions) for r in runs} == {(f"{PROMPT}@2",), (f"{PROMPT}@1",)}

    # Side by side: the baseline as text, the other column as an escaped word diff.
    texts = [c.value for c in at.code]
    base_text = comparison.cells[0][0].text
    assert base_text in texts
    diffs = at.get("html")
    assert len(diffs) == 2  # one per row for the non-baseline column
    assert all("wb-diff" in d.proto.body for d in diffs)

    # Charts: latency, tokens/s, agreement with the baseline.
    figures = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    titles = [f["layout"]["title"]["text"] for f in figures]
    assert titles[0].startswith("Latency") and "tokens per second" in titles[1]
    assert "agreeing with" in titles[2]
    assert len(figures[0]["data"]) == 2

    # Rate the first output 👍 with 4 stars; it is stored against that output.
    key = "cmp_ratings:" + ",".join(map(str, comparison.output_ids))
    at.session_state[key] = {
        "edited_rows": {0: {"verdict": "👍", "stars": 4, "comment": "crisp"}},
        "added_rows": [],
        "deleted_rows": [],
    }
    at.run()
    at.button(key="cmp_save_ratings").click().run()
    assert not at.exception, at.exception
    assert at.success and "Saved 1 rating" in at.success[-1].value
    first = comparison.cells[0][0]
    stored = ratings.ratings(open_library().store, [first.id])
    assert stored[first.id].verdict == 1
    assert stored[first.id].stars == 4 and stored[first.id].comment == "crisp"

    # Running the same comparison again generates nothing: every cell comes from the cache.
    job = _run_comparison(at)
    assert all(o.cached for o in job.outputs)


def test_compare_stored_runs_without_a_model(app_env: Path, tiny_backend: Any) -> None:
    _save_v2()
    lib = open_library()
    runner = Runner(lib, tiny_backend)
    rows = [{"text": "good"}, {"text": "bad"}, {"text": "meh"}]
    first = runner.run([lib.get(f"{PROMPT}@1")], rows, overrides={"max_new_tokens": 4})
    second = runner.run([lib.get(f"{PROMPT}@2")], rows[::-1], overrides={"max_new_tokens": 4})
    before = len(runner.list_runs())

    at = app_test(PAGE).run()
    at.radio(key="cmp_mode").set_value("Stored runs").run()
    at.multiselect(key="cmp_runs").set_value([first.run.id, second.run.id]).run()
    at.button(key="cmp_stored").click().run()
    assert not at.exception, at.exception
    comparison = at.session_state["cmp_result"]
    # Rows line up by their variables even though the second run saw them in reverse order.
    assert [r["text"] for r in comparison.rows] == ["good", "bad", "meh"]
    for r, row in enumerate(comparison.cells):
        assert [o.variables["text"] for o in row] == [rows[r]["text"]] * 2
    assert len(runner.list_runs()) == before  # nothing was generated
    assert len(at.get("plotly_chart")) == 3


def test_bad_parameter_is_reported_before_anything_runs(app_env: Path) -> None:
    at = app_test(PAGE).run()
    at.selectbox(key="cmp_prompt_0").set_value(PROMPT).run()
    at.text_input(key="cmp_params_0").set_value("temperature=-1").run()
    at.button(key="cmp_run").click().run()
    assert not at.exception, at.exception
    assert at.error and "temperature" in at.error[-1].value
    assert "cmp_job" not in at.session_state
    assert Runner(open_library()).list_runs() == []
