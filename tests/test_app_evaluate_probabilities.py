"""Evaluate page on outputs with scored answer choices: raw and calibrated figures side by side,
a reliability diagram, the probability of the expected answer per row, rows left out named.

The runner's choice scoring is stood in for: each stored output gets a fixed `output.choices`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import app_test, shown

from workbench import jobs
from workbench.runner import Runner

PAGE = "pages/6_Evaluate.py"
REF = "zero-shot-sentiment@1"
LABELS = ["Positive", "Negative", "Neutral"]
CHOICES = {  # row → (raw, calibrated)
    0: ([0.6, 0.3, 0.1], [0.5, 0.4, 0.1]),
    1: ([0.6, 0.3, 0.1], [0.2, 0.7, 0.1]),
    2: ([0.2, 0.2, 0.6], [0.2, 0.2, 0.6]),
}


@pytest.fixture
def choices_stored(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Runner._output_row

    def with_choices(*args: Any) -> Any:
        row = original(*args)
        probs, calibrated = CHOICES[row.row_index]
        row.choices = {"choices": LABELS, "logprobs": [0, 0, 0], "probs": probs}
        row.choices["calibrated"] = calibrated
        return row

    monkeypatch.setattr(Runner, "_output_row", staticmethod(with_choices))


def _evaluated(rows: list[dict[str, str]]) -> Any:
    at = app_test(PAGE).run()
    at.multiselect(key="eval_refs").set_value([REF]).run()
    at.session_state["eval_rows:rows"] = {
        "edited_rows": {0: rows[0]},
        "added_rows": rows[1:],
        "deleted_rows": [],
    }
    at.text_input(key="eval_params").set_value("max_new_tokens=2").run()
    at.text_area(key="eval_asserts").set_value("exact-match").run()
    at.button(key="eval_run").click().run()
    assert not at.exception, at.exception
    job = jobs.get_job(at.session_state["eval_job"])
    assert job is not None and job.wait(120) and job.error is None, job and job.error
    at.run()
    assert not at.exception, at.exception
    return at


def test_probability_figures_reliability_diagram_and_rows(
    app_env: Path, choices_stored: None
) -> None:
    at = _evaluated(
        [
            {"text": "I love it", "expected": "Positive"},
            {"text": "I hate it", "expected": "negative"},
            {"text": "So-so", "expected": "**Mixed**"},
        ]
    )
    tables = [d.value for d in at.dataframe]
    figures = next(t for t in tables if "log-loss" in t.columns)
    assert list(figures["probabilities"]) == ["raw", "calibrated"]
    assert list(figures["version"]) == [REF, REF]
    assert list(figures["rows"]) == [2, 2]
    assert list(figures["accuracy"]) == [0.5, 1.0]
    assert figures["log-loss"].round(3).tolist() == [0.857, 0.525]
    assert figures["brier"].round(3).tolist() == [0.56, 0.28]
    assert figures["ece"].round(3).tolist() == [0.1, 0.4]
    # The reliability diagram: the diagonal, then raw and calibrated.
    chart = next(
        c
        for c in at.get("plotly_chart")
        if "Reliability" in json.loads(c.proto.spec)["layout"]["title"]["text"]
    )
    figure = json.loads(chart.proto.spec)
    names = [trace["name"] for trace in figure["data"]]
    assert names == ["perfectly calibrated", f"{REF} · raw", f"{REF} · calibrated"]
    assert figure["data"][1]["x"] == [60.0] and figure["data"][1]["y"] == [50.0]
    assert figure["data"][2]["x"] == [50.0, 70.0] and figure["data"][2]["y"] == [100.0, 100.0]
    # Each row shows the probability of its expected answer, raw and calibrated.
    detail = at.dataframe[-1].value
    assert detail["p(expected)"].tolist()[:2] == [0.6, 0.3]
    assert detail["p(expected) calibrated"].tolist()[:2] == [0.5, 0.7]
    assert detail["p(expected)"].isna().tolist()[2]
    # The row whose answer is not a choice is named, its text shown as written.
    (warning,) = at.warning
    assert (
        "row 3: the expected answer '**Mixed**' is not among the choices "
        "(Positive, Negative, Neutral)" in shown(warning.value)
    )
    assert any("10 equal-width bins" in shown(c.value) for c in at.caption)


def test_generated_outputs_show_no_probability_section(app_env: Path) -> None:
    at = _evaluated([{"text": "I love it", "expected": "Positive"}])
    assert all("log-loss" not in d.value.columns for d in at.dataframe)
    assert "p(expected)" not in at.dataframe[-1].value.columns
    assert len(at.get("plotly_chart")) == 1  # the pass rate only
    assert not at.warning


def test_reliability_chart_leaves_empty_bins_out_and_shows_labels_literally() -> None:
    from workbench.app.charts import reliability_chart
    from workbench.probability_scores import probability_scores

    scores = probability_scores([[0.95, 0.05], [0.55, 0.45], [0.52, 0.48]], [0, 1, 0])
    figure = reliability_chart([("<b>x</b>@1 · raw", scores.bins)])
    diagonal, series = figure.data
    assert list(diagonal.x) == [0, 100] and list(diagonal.y) == [0, 100]
    assert series.name == "&lt;b&gt;x&lt;/b&gt;@1 · raw"
    assert list(series.x) == pytest.approx([53.5, 95.0])  # bins 5 and 9 only
    assert list(series.y) == [50.0, 100.0]
    assert "2 rows" in series.text[0]
