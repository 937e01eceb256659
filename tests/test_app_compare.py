"""Compare page: columns run side by side (v1 against v2), diffs, charts, ratings, stored runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import app_test, shown

from workbench import evaluate, jobs, ratings
from workbench.runner import Runner, RunSummary
from workbench.runs import list_runs
from workbench.scorers import Score, parse_checks
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
    runs = list_runs(runner.store)
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
    before = len(list_runs(runner.store))

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
    assert len(list_runs(runner.store)) == before  # nothing was generated
    assert len(at.get("plotly_chart")) == 3


@pytest.mark.parametrize("text", ["temperature=-1", "temperature", "max_new_tokens=lots"])
def test_bad_parameter_is_refused_under_its_column_before_anything_runs(
    app_env: Path, text: str
) -> None:
    at = app_test(PAGE).run()
    at.selectbox(key="cmp_prompt_0").set_value(PROMPT).run()
    at.text_input(key="cmp_params_1").set_value(text).run()
    assert not at.exception, at.exception
    assert at.error, "the column shows its problem as soon as it is typed"
    message = shown(at.error[0].value)
    assert "temperature" in message or "max_new_tokens" in message
    assert at.button(key="cmp_run").disabled
    assert any("Fix the parameters" in w.value for w in at.warning)
    assert "cmp_job" not in at.session_state
    assert list_runs(open_library().store) == []


# --- scores -------------------------------------------------------------------------------------
def _stored_pair(tiny_backend: Any, *, v2_front: str = "") -> tuple[RunSummary, RunSummary]:
    """Two stored runs over the same rows: v1 and v2 (v2's front matter gets `v2_front` under
    metadata)."""
    lib = open_library()
    text = lib.get(PROMPT).file.canonical_text()
    edited = text.replace("Sentiment", "Feeling", 1)
    if v2_front:
        edited = edited.replace("  technique: zero-shot\n", "  technique: zero-shot\n" + v2_front)
        assert v2_front in edited
    lib.save(edited, "v2")
    runner = Runner(lib, tiny_backend)
    rows = [{"text": "good", "expected": "Positive"}, {"text": "bad", "expected": "Negative"}]
    first = runner.run([lib.get(f"{PROMPT}@1")], rows, overrides={"max_new_tokens": 4})
    second = runner.run([lib.get(f"{PROMPT}@2")], rows, overrides={"max_new_tokens": 4})
    return first, second


def _open_stored(first: RunSummary, second: RunSummary) -> Any:
    at = app_test(PAGE).run()
    at.radio(key="cmp_mode").set_value("Stored runs").run()
    at.multiselect(key="cmp_runs").set_value([first.run.id, second.run.id]).run()
    at.button(key="cmp_stored").click().run()
    assert not at.exception, at.exception
    return at


def _figures(at: Any) -> list[dict[str, Any]]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _stats_table(at: Any) -> Any:
    return at.dataframe[0].value


def test_score_stored_outputs_with_typed_assertions(app_env: Path, tiny_backend: Any) -> None:
    first, second = _stored_pair(tiny_backend)
    at = _open_stored(first, second)
    comparison = at.session_state["cmp_result"]
    ids = comparison.output_ids
    assert len(ids) == 4
    assert "pass rate" not in _stats_table(at).columns  # nothing scored yet
    assert len(at.get("plotly_chart")) == 3

    at.text_area(key="cmp_assertions").set_value("not-contains:zzzz\n\nis-json\n").run()
    at.button(key="cmp_score").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.success and "Scored 4 outputs: 0 passed" in at.success[-1].value

    stored = evaluate.stored_scores(open_library().store, ids)
    assert set(stored) == set(ids)
    for scores in stored.values():
        by_metric = {s.metric: s for s in scores}
        assert set(by_metric) == {"not-contains", "is-json"}
        assert by_metric["not-contains"].passed and not by_metric["is-json"].passed

    # Badges under every output, as plain text.
    badges = [t.value for t in at.text if "not-contains" in t.value]
    assert len(badges) == 4
    assert all(b.startswith("✓ not-contains 1.00 · ✗ is-json 0.00 (not JSON") for b in badges)

    # The stats table gains the totals.
    table = _stats_table(at)
    assert list(table["pass rate"]) == [0.0, 0.0]
    assert list(table["mean score"]) == [0.5, 0.5]
    assert list(table["not-contains (mean)"]) == [1.0, 1.0]
    assert list(table["is-json (mean)"]) == [0.0, 0.0]

    # The three score charts join the other three.
    figures = _figures(at)
    assert len(figures) == 6
    titles = [f["layout"]["title"]["text"] for f in figures[3:]]
    assert titles == [
        "Outputs passing every assertion",
        "Score values per metric",
        "Score against latency",
    ]
    pass_rate, metrics, scatter = figures[3:]
    assert pass_rate["data"][0]["y"] == [0, 0]
    assert len(metrics["data"]) == 2  # a box per column, grouped by metric
    assert sorted(metrics["data"][0]["x"]) == ["is-json", "is-json", "not-contains", "not-contains"]
    assert [len(t["x"]) for t in scatter["data"]] == [2, 2]
    assert all(y == 0.5 for t in scatter["data"] for y in t["y"])


def test_stored_scores_are_shown_without_scoring(app_env: Path, tiny_backend: Any) -> None:
    first, second = _stored_pair(tiny_backend)
    lib = open_library()
    checks = parse_checks(["not-contains:zzzz"])
    evaluate.store_scores(
        lib.store,
        [(o.id, [Score("not-contains", 1.0, True, "ok")]) for o in first.outputs],
        checks,
    )
    at = _open_stored(first, second)
    badges = [t.value for t in at.text if "not-contains" in t.value]
    assert badges == ["✓ not-contains 1.00"] * 2  # only the first column was scored
    table = _stats_table(at)
    assert table["pass rate"][0] == 1.0 and table["pass rate"].isna()[1]
    assert len(at.get("plotly_chart")) == 6


def test_assertions_in_the_prompt_file_are_used_too(app_env: Path, tiny_backend: Any) -> None:
    first, second = _stored_pair(tiny_backend, v2_front="  assert:\n  - not-icontains:qqqq\n")
    at = _open_stored(first, second)
    at.text_area(key="cmp_assertions").set_value("is-json").run()
    at.button(key="cmp_score").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    stored = evaluate.stored_scores(open_library().store, at.session_state["cmp_result"].output_ids)
    metrics = {o.id: {s.metric for s in stored[o.id]} for o in first.outputs + second.outputs}
    assert all(metrics[o.id] == {"is-json"} for o in first.outputs)
    assert all(metrics[o.id] == {"not-icontains", "is-json"} for o in second.outputs)


@pytest.mark.parametrize(
    ("assertions", "message"),
    [
        ("not-contains:zzzz\nregex:(", "line 2"),
        ('{"type": "is-json"', "not a JSON object"),
        ("", "no assertions"),
    ],
)
def test_bad_assertions_are_reported_and_nothing_is_stored(
    app_env: Path, tiny_backend: Any, assertions: str, message: str
) -> None:
    first, second = _stored_pair(tiny_backend)
    at = _open_stored(first, second)
    at.text_area(key="cmp_assertions").set_value(assertions).run()
    at.button(key="cmp_score").click().run()
    assert not at.exception, at.exception
    assert at.error and message in at.error[-1].value
    assert not at.success
    comparison = at.session_state["cmp_result"]
    assert evaluate.stored_scores(open_library().store, comparison.output_ids) == {}
    assert len(at.get("plotly_chart")) == 3
