"""The "Constrain the output" switch on Playground, Compose and Compare (AppTest, tiny model):
shown only for a prompt that declares an output constraint, on by default, off runs free; what
an answer was decoded under and whether it follows the constraint, in plain text; Compare puts
the same version constrained and free side by side with per-column figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import app_test, shown

from workbench import jobs
from workbench.runs import OutputRecord, list_runs, run_outputs
from workbench.workspace import open_library

JSON = "json-answer"
# json-answer's own schema makes a prompt longer than the tiny model's context: a small one
SCHEMA = json.dumps(
    {
        "type": "object",
        "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 9}},
        "required": ["a"],
        "additionalProperties": False,
    }
)
PLAIN = "zero-shot-sentiment-chat"


def _outputs() -> list[OutputRecord]:
    store = open_library().store
    return [o for r in list_runs(store) for o in run_outputs(store, r.id)]


def _switches(at: Any) -> list[Any]:
    return [t for t in at.toggle if shown(t.label).startswith("Constrain the output")]


def _texts(elements: Any) -> str:
    return "\n".join(shown(str(e.value)) for e in elements)


# --- Playground ---------------------------------------------------------------------------------
PLAY = "pages/2_Playground.py"


def _play(prompt: str) -> Any:
    at = app_test(PLAY).run()
    at.selectbox(key="play_prompt").set_value(prompt).run()
    assert not at.exception, at.exception
    return at


def _answer(at: Any) -> OutputRecord:
    at.button(key="play_run").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    job = jobs.get_job(at.session_state["play_single_job"])
    assert job is not None and job.wait(120) and job.error is None, job and job.error
    at.run()
    assert not at.exception, at.exception
    return max(_outputs(), key=lambda o: o.id)


def test_playground_shows_no_switch_for_a_prompt_that_declares_no_constraint(
    app_env: Path,
) -> None:
    at = _play(PLAIN)
    assert _switches(at) == []


def test_playground_switch_is_on_by_default_and_off_runs_free(app_env: Path) -> None:
    at = _play(JSON)
    [switch] = _switches(at)
    assert switch.value is True
    assert shown(switch.label) == "Constrain the output: JSON Schema from input schema"
    at.text_area(key=f"play_var:{JSON}@1:schema").set_value(SCHEMA).run()
    at.text_area(key=f"play_var:{JSON}@1:question").set_value("A digit?").run()
    at.number_input(key=f"param:{JSON}@1:max_new_tokens").set_value(24).run()

    under = _answer(at)
    assert under.params["constrain"] is True
    assert under.params["constraint"]["kind"] == "json_schema"
    assert under.params["constraint"]["source"] == "input schema"
    assert under.finish_reason == "eos" and json.loads(under.text or "")["a"] in range(10)
    assert "under JSON Schema from input schema · follows it" in _texts(at.caption)
    assert not at.warning

    # Two tokens cannot finish the object: cut, said to be incomplete, never valid.
    at.number_input(key=f"param:{JSON}@1:max_new_tokens").set_value(2).run()
    cut = _answer(at)
    assert cut.finish_reason == "length" and cut.params["constraint"]
    warned = _texts(at.warning)
    assert "under JSON Schema from input schema" in warned and "incomplete" in warned
    assert "follows" not in _texts(at.caption)

    at.toggle(key=f"play_constrain:{JSON}@1").set_value(False).run()
    free = _answer(at)
    assert free.id != under.id and not free.cached
    assert free.params["constrain"] is False and "constraint" not in free.params
    said = _texts(at.warning) + _texts(at.caption)
    assert "free · " in said and "under JSON Schema" not in said
