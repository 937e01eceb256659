"""The Evaluate page's run form with answer choices: the switch scores them (calibrated when
asked) and stores both distributions; a request without choices is refused before a row runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import app_test, shown

from workbench import jobs
from workbench.runs import run_outputs
from workbench.workspace import open_library

PAGE = "pages/6_Evaluate.py"
REF = "few-shot-sentiment@1"


def page_with_rows() -> Any:
    at = app_test(PAGE).run()
    at.multiselect(key="eval_refs").set_value([REF]).run()
    at.session_state["eval_rows:rows"] = {
        "edited_rows": {0: {"text": "I love it", "expected": "Positive"}},
        "added_rows": [{"text": "I hate it", "expected": "Negative"}],
        "deleted_rows": [],
    }
    at.run()
    assert not at.exception, at.exception
    return at


def test_scored_and_calibrated_choices_from_the_run_form(app_env: Path) -> None:
    at = page_with_rows()
    assert at.toggle(key="eval_choices_on").value is False  # the prompt declares none
    at.toggle(key="eval_choices_on").set_value(True).run()
    at.text_input(key="eval_choices").set_value("Positive, Negative, Neutral").run()
    at.toggle(key="eval_calibrate").set_value(True).run()
    at.button(key="eval_run").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    job = jobs.get_job(at.session_state["eval_job"])
    assert job is not None and job.wait(120) and job.error is None, job and job.error
    at.run()
    assert not at.exception, at.exception
    [version] = job.result.versions
    outputs = run_outputs(open_library().store, version.run_id)
    assert len(outputs) == 2
    for o in outputs:
        assert o.finish_reason == "choice" and o.choices is not None
        assert o.choices["choices"] == ["Positive", "Negative", "Neutral"]
        assert len(o.choices["probs"]) == 3 and len(o.choices["calibrated"]) == 3


def test_calibration_without_choices_is_refused_before_a_row_runs(app_env: Path) -> None:
    at = page_with_rows()
    at.toggle(key="eval_choices_on").set_value(True).run()
    at.toggle(key="eval_calibrate").set_value(True).run()
    at.button(key="eval_run").click().run()
    assert not at.exception, at.exception
    errors = "\n".join(shown(str(e.value)) for e in at.error)
    assert "calibration needs answer choices: few-shot-sentiment@1 declares no" in errors
