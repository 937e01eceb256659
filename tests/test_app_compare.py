"""Compare page: columns run side by side (v1 against v2), diffs, charts, ratings, stored runs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import app_test, shown

from workbench import evaluate, jobs, ratings, testsets
from workbench.datasets import Dataset
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


def _testset(name: str, rows: list[dict[str, str]]) -> None:
    columns = tuple(dict.fromkeys(k for r in rows for k in r))
    testsets.save_test_set(open_library().store, name, Dataset(name, columns, tuple(rows)))


MINI = [
    {"text": "I love it", "expected": "Positive"},
    {"text": "I hate it", "expected": "Negative"},
]


def _open_previous(**params: str) -> Any:
    """The page as a "compare with previous version" link opens it."""
    at = app_test(PAGE)
    for key, value in {"prompt": PROMPT, "v": "2", "base": "1", **params}.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


def _small(at: Any) -> None:
    at.text_input(key="cmp_params_0").set_value("max_new_tokens=4").run()
    at.text_input(key="cmp_params_1").set_value("max_new_tokens=4").run()


def test_columns_default_to_the_new_version_against_the_previous_one(app_env: Path) -> None:
    _save_v2()
    at = app_test(PAGE).run()
    assert not at.exception, at.exception
    at.selectbox(key="cmp_prompt").set_value(PROMPT).run()
    # The prompt is picked once; column 1 (the baseline) is the previous version.
    assert at.selectbox(key=f"cmp_v0:{PROMPT}").value == 1
    assert at.selectbox(key=f"cmp_v1:{PROMPT}").value == 2
    assert "(baseline)" in at.selectbox(key=f"cmp_v0:{PROMPT}").label
    # ... and the selection is written into the URL.
    assert at.query_params["prompt"] == [PROMPT] or at.query_params["prompt"] == PROMPT
    params = {k: (v[0] if isinstance(v, list) else v) for k, v in at.query_params.items()}
    assert params["v"] == "2" and params["base"] == "1"


def test_a_link_reopens_the_same_view_and_changes_go_back_into_the_url(app_env: Path) -> None:
    _save_v2()
    _testset("mini", MINI)
    at = _open_previous(testset="mini")
    assert at.selectbox(key="cmp_prompt").value == PROMPT
    assert at.selectbox(key=f"cmp_v0:{PROMPT}").value == 1
    assert at.selectbox(key=f"cmp_v1:{PROMPT}").value == 2
    assert at.radio(key="cmp_source").value == "A test set"
    assert at.selectbox(key="cmp_testset").value == "mini"
    assert any("2 rows from mini@1" in shown(c.value) for c in at.caption)
    at.selectbox(key=f"cmp_v1:{PROMPT}").set_value(1).run()
    params = {k: (v[0] if isinstance(v, list) else v) for k, v in at.query_params.items()}
    assert params == {"prompt": PROMPT, "v": "1", "base": "1", "testset": "mini"}
    # Back from another page (the address loses its parameters): the same view again.
    at.query_params.clear()
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key=f"cmp_v1:{PROMPT}").value == 1
    assert at.selectbox(key="cmp_testset").value == "mini"
    # The address is left as it came (rewriting it would add a history entry the back button
    # lands on); the next change writes it.
    assert not dict(at.query_params)
    at.selectbox(key=f"cmp_v1:{PROMPT}").set_value(2).run()
    params = {k: (v[0] if isinstance(v, list) else v) for k, v in at.query_params.items()}
    assert params == {"prompt": PROMPT, "v": "2", "base": "1", "testset": "mini"}
    # Opening a link without rows uses the test set this prompt last ran on.
    fresh = _open_previous()
    assert (
        fresh.radio(key="cmp_source").value == "A test set"
        or "cmp_testset" not in fresh.session_state
    )


def test_the_grid_shows_variables_expected_pass_fail_and_keeps_the_dataset_name(
    app_env: Path,
) -> None:
    _save_v2()
    _testset("mini", MINI)
    at = _open_previous(testset="mini")
    _small(at)
    job = _run_comparison(at)
    comparison = job.result
    assert [c.ref for c in comparison.columns] == [f"{PROMPT}@1", f"{PROMPT}@2"]
    # Each column is an ordinary stored run that keeps the test set's name.
    runs = list_runs(open_library().store)
    assert {r.dataset for r in runs} == {"mini@1"}
    texts = [t.value for t in at.text]
    # Variables and the expected answer in their own columns, not JSON.
    assert "I love it" in texts and "Positive" in texts and "Negative" in texts
    assert not any('{"text"' in t for t in texts)
    headers = [m.value for m in at.markdown]
    assert "**text**" in headers and "**expected**" in headers
    # Scored against the expected answer without typing anything: pass or fail per cell.
    badges = [m.value for m in at.markdown if "-badge[" in m.value]
    assert len(badges) == 4
    # The new column as a word diff against the baseline.
    assert len(at.get("html")) == 2 and all("wb-diff" in h.proto.body for h in at.get("html"))
    # Summary strip: pass rate and agreement per column.
    captions = [shown(c.value) for c in at.caption]
    assert any(c.startswith("pass ") for c in captions)
    assert any(c.startswith("agrees with baseline") for c in captions)
    # Latency and tokens on demand.
    timed = re.compile(r"^\d+ tokens · [\d.]+ s · ")
    assert not any(timed.match(c) for c in captions)
    at.toggle(key="cmp_timing").set_value(True).run()
    assert sum(bool(timed.match(shown(c.value))) for c in at.caption) == 4
    # Running it again takes every answer from the store: marked, and left out of the timing.
    job = _run_comparison(at)
    assert all(o.cached for o in job.outputs)
    captions = [shown(c.value) for c in at.caption]
    assert sum(c.startswith("cached (original") for c in captions) == 4, "|".join(captions)
    assert sum(c == "2 cached (not timed)" for c in captions) == 2
    assert not any(c.startswith("mean latency") for c in captions)


def _scored(at: Any, comparison: Any, passing: set[tuple[int, int]]) -> None:
    """Store a pass or a fail for every cell: (row, column) in `passing` pass."""
    checks = parse_checks(["not-contains:zzzz"])
    items = [
        (o.id, [Score("not-contains", 1.0 if (r, c) in passing else 0.0, (r, c) in passing, "")])
        for r, row in enumerate(comparison.cells)
        for c, o in enumerate(row)
    ]
    evaluate.store_scores(open_library().store, items, checks)
    at.run()
    assert not at.exception, at.exception


def _row_captions(at: Any) -> list[str]:
    return [c.value for c in at.caption if c.value.startswith("row ")]


def test_filters_and_worse_first(app_env: Path) -> None:
    _save_v2()
    _testset("three", [{"text": "good"}, {"text": "bad"}, {"text": "meh"}])
    at = _open_previous(testset="three")
    _small(at)
    comparison = _run_comparison(at).result
    # Row 1 passes in both columns, row 2 got worse, row 3 got better.
    _scored(at, comparison, {(0, 0), (0, 1), (1, 0), (2, 1)})
    assert _row_captions(at) == ["row 1", "row 2", "row 3"]
    at.toggle(key="cmp_only_fail").set_value(True).run()
    assert _row_captions(at) == ["row 2", "row 3"]
    at.toggle(key="cmp_only_fail").set_value(False).run()
    at.toggle(key="cmp_worse_first").set_value(True).run()
    assert _row_captions(at) == ["row 2", "row 1", "row 3"]
    differs = [r for r, row in enumerate(comparison.cells) if len({o.text for o in row}) > 1]
    at.toggle(key="cmp_worse_first").set_value(False).run()
    at.toggle(key="cmp_only_diff").set_value(True).run()
    assert _row_captions(at) == [f"row {r + 1}" for r in differs]
    captions = [shown(c.value) for c in at.caption]
    assert "pass 2/3 (67%)" in captions


def test_inline_rating_saves_in_one_click_and_the_summary_updates_at_once(
    app_env: Path,
) -> None:
    _save_v2()
    _testset("mini", MINI)
    at = _open_previous(testset="mini")
    _small(at)
    comparison = _run_comparison(at).result
    first, second = comparison.cells[0][1], comparison.cells[1][1]
    assert "good 0 · bad 0" in [shown(c.value) for c in at.caption]
    at.button(key=f"cmp_good:{first.id}").click().run()
    assert not at.exception, at.exception
    assert ratings.ratings(open_library().store, [first.id])[first.id].verdict == 1
    captions = [shown(c.value) for c in at.caption]
    assert "good 1 · bad 0" in captions  # the same rerun, no second one needed
    assert "Rating: good" in captions
    at.button(key=f"cmp_bad:{second.id}").click().run()
    assert "good 1 · bad 1" in [shown(c.value) for c in at.caption]
    # Stars and a comment, saved with one click, keep the verdict.
    at.button(key=f"cmp_more:{first.id}").click().run()
    at.radio(key=f"cmp_stars:{first.id}").set_value(4)
    at.text_input(key=f"cmp_comment:{first.id}").set_value("crisp")
    at.button(key=f"cmp_rate_save:{first.id}").click().run()
    assert not at.exception, at.exception
    stored = ratings.ratings(open_library().store, [first.id])[first.id]
    assert (stored.verdict, stored.stars, stored.comment) == (1, 4, "crisp")
    assert "good 1 · bad 1 · stars 4.0" in [shown(c.value) for c in at.caption]
    assert "Rating: good, 4/5 stars, commented" in [shown(c.value) for c in at.caption]


def test_rows_that_fit_no_variable_are_refused_naming_their_columns(app_env: Path) -> None:
    _save_v2()
    _testset("reviews", [{"review": "good", "label": "positive"}])
    at = _open_previous(testset="reviews")
    assert at.error, "refused before anything runs"
    message = shown(at.error[0].value)
    assert "reviews@1 does not fit" in message and "(its columns: review, label)" in message
    assert at.button(key="cmp_run").disabled
    assert list_runs(open_library().store) == []
    assert "1 row from reviews@1" in [shown(c.value) for c in at.caption]  # not "1 rows"


def test_a_link_to_what_is_not_there_says_so_and_opens_what_is(app_env: Path) -> None:
    at = _open_previous(prompt="no-such-prompt")
    assert any("no-such-prompt" in shown(w.value) for w in at.warning)
    _save_v2()
    at = _open_previous(v="9", base="7")  # versions past the latest: the latest and the one before
    assert at.selectbox(key=f"cmp_v0:{PROMPT}").value == 1
    assert at.selectbox(key=f"cmp_v1:{PROMPT}").value == 2


def test_an_uploaded_csv_that_fits_no_variable_is_refused(app_env: Path) -> None:
    _save_v2()
    at = _open_previous()
    at.radio(key="cmp_source").set_value("Type or upload rows").run()
    at.radio(key="cmp_rows:source").set_value("Upload a file").run()
    at.file_uploader(key="cmp_rows:file").set_value(
        [("reviews.csv", b"review,label\ngood,positive\nbad,negative\n", "text/csv")]
    ).run()
    assert not at.exception, at.exception
    message = shown(at.error[0].value)
    assert "reviews.csv does not fit" in message and "(its columns: review, label)" in message
    assert at.button(key="cmp_run").disabled
    # Mapping a column to the variable makes it fit.
    at.selectbox(key="cmp_rows:map:text").set_value("review").run()
    assert not at.error, [e.value for e in at.error]
    assert not at.button(key="cmp_run").disabled


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
    assert not at.get("plotly_chart")  # charts on demand
    at.toggle(key="cmp_charts").set_value(True).run()
    assert len(at.get("plotly_chart")) == 3


@pytest.mark.parametrize("text", ["temperature=-1", "temperature", "max_new_tokens=lots"])
def test_bad_parameter_is_refused_under_its_column_before_anything_runs(
    app_env: Path, text: str
) -> None:
    at = app_test(PAGE).run()
    at.selectbox(key="cmp_prompt").set_value(PROMPT).run()
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


def _summary(at: Any) -> list[str]:
    """The summary strip's pass lines, column by column."""
    return [shown(c.value) for c in at.caption if shown(c.value).startswith("pass ")]


def _charts(at: Any) -> list[dict[str, Any]]:
    at.toggle(key="cmp_charts").set_value(True).run()
    return _figures(at)


def test_score_stored_outputs_with_typed_assertions(app_env: Path, tiny_backend: Any) -> None:
    first, second = _stored_pair(tiny_backend)
    at = _open_stored(first, second)
    comparison = at.session_state["cmp_result"]
    ids = comparison.output_ids
    assert len(ids) == 4
    # Scored against the rows' expected answers before anything is typed.
    assert _summary(at) == ["pass 0/2 (0%)"] * 2
    assert len(_charts(at)) == 3  # the score charts show stored scores

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

    # The summary strip counts the stored scores.
    assert _summary(at) == ["pass 0/2 (0%)"] * 2

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
    # Stored scores decide the first column; the second is judged against `expected`.
    assert _summary(at) == ["pass 2/2 (100%)", "pass 0/2 (0%)"]
    assert len(_charts(at)) == 6


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


def test_large_comparisons_are_paged_and_a_filter_keeps_the_page_in_range(app_env: Path) -> None:
    _save_v2()
    _testset("many", [{"text": f"review {i}"} for i in range(25)])
    at = _open_previous(testset="many")
    at.text_input(key="cmp_params_0").set_value("max_new_tokens=1").run()
    at.text_input(key="cmp_params_1").set_value("max_new_tokens=1").run()
    comparison = _run_comparison(at).result
    assert _row_captions(at) == [f"row {i}" for i in range(1, 21)]
    at.number_input(key="cmp_page").set_value(2).run()
    assert _row_captions(at) == [f"row {i}" for i in range(21, 26)]
    # Only rows 1-3 fail: one page is left, and the page shown is that one.
    passing = {(r, c) for r in range(3, 25) for c in range(2)}
    _scored(at, comparison, passing)
    at.toggle(key="cmp_only_fail").set_value(True).run()
    assert not at.exception, at.exception
    assert _row_captions(at) == ["row 1", "row 2", "row 3"]


def test_coming_back_from_another_page_reopens_the_same_view(app_env: Path) -> None:
    _save_v2()
    _testset("mini", MINI)
    at = app_test("Home.py").run()
    for key, value in {"prompt": PROMPT, "v": "1", "base": "1", "testset": "mini"}.items():
        at.query_params[key] = value
    at.switch_page("pages/3_Compare.py").run()
    assert not at.exception, at.exception
    assert at.selectbox(key=f"cmp_v1:{PROMPT}").value == 1
    at.switch_page("pages/5_Library.py").run()
    at.query_params.clear()  # the sidebar's links carry no parameters
    at.switch_page("pages/3_Compare.py").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="cmp_prompt").value == PROMPT
    assert at.selectbox(key=f"cmp_v0:{PROMPT}").value == 1
    assert at.selectbox(key=f"cmp_v1:{PROMPT}").value == 1
    assert at.selectbox(key="cmp_testset").value == "mini"
