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


def test_playground_offers_the_switch_on_a_server_too(app_env: Path) -> None:
    at = _play(JSON)
    at.radio(key="model_source").set_value("OpenAI-compatible server").run()
    assert not at.exception, at.exception
    [switch] = _switches(at)  # a server is sent the constraint with each request
    assert switch.value is True and "sent to the server" in (switch.help or "")


def test_playground_dataset_rows_say_what_each_answer_decoded_under(app_env: Path) -> None:
    at = _play(JSON)
    at.session_state[f"play_ds:{JSON}@1:rows"] = {
        "edited_rows": {0: {"question": "A digit?", "schema": SCHEMA}},
        "added_rows": [{"question": "Another?", "schema": SCHEMA}],
        "deleted_rows": [],
    }
    at.number_input(key=f"param:{JSON}@1:max_new_tokens").set_value(24).run()
    at.toggle(key=f"play_constrain:{JSON}@1").set_value(False).run()
    at.button(key="play_run_dataset").click().run()
    assert not at.exception, at.exception
    job = jobs.get_job(at.session_state["play_dataset_job"])
    assert job is not None and job.wait(120) and job.error is None
    at.run()
    assert not at.exception, at.exception
    assert all("constraint" not in o.params for o in _outputs())
    frame = at.dataframe[-1].value
    assert all(line.startswith("free · ") for line in frame["constraint"])


# --- Compose --------------------------------------------------------------------------------------
COMPOSE = "pages/1_Compose.py"


def test_compose_says_which_constraint_a_prompt_declares_and_nothing_otherwise(
    app_env: Path,
) -> None:
    at = app_test(COMPOSE).run()
    at.selectbox(key="compose_prompt").set_value(JSON).run()
    assert not at.exception, at.exception
    assert "Output constraint: JSON Schema from input schema." in _texts(at.caption)
    assert _switches(at) == []  # Compose runs nothing: no switch to set
    # A schema the engine cannot decode under is said at once, before any run.
    at.text_area(key=f"compose:{JSON}@1:schema").set_value('{"type": 3}').run()
    assert not at.exception, at.exception
    assert "Output constraint: input schema: invalid JSON Schema" in _texts(at.error)

    at.selectbox(key="compose_prompt").set_value(PLAIN).run()
    assert "Output constraint" not in _texts(at.caption) + _texts(at.error)


# --- Compare --------------------------------------------------------------------------------------
COMPARE = "pages/3_Compare.py"


def _compare(prompt: str, **params: str) -> Any:
    at = app_test(COMPARE)
    for key, value in {"prompt": prompt, "v": "1", "base": "1", **params}.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


def test_compare_offers_no_switch_for_a_prompt_that_declares_no_constraint(
    app_env: Path,
) -> None:
    at = _compare(PLAIN)
    assert _switches(at) == []
    assert "cmp_vs_free" not in [c.key for c in at.checkbox]


def test_compare_runs_a_version_constrained_and_free_side_by_side(app_env: Path) -> None:
    from workbench import testsets
    from workbench.datasets import Dataset

    rows = tuple({"question": q, "schema": SCHEMA} for q in ("A digit?", "Another digit?"))
    testsets.save_test_set(
        open_library().store, "digits", Dataset("digits", ("question", "schema"), rows)
    )
    at = _compare(JSON, testset="digits")
    switches = _switches(at)
    assert len(switches) == 2 and all(s.value is True for s in switches)
    for i in range(2):
        at.text_input(key=f"cmp_params_{i}").set_value("max_new_tokens=24").run()
    at.checkbox(key="cmp_vs_free").check().run()
    assert not at.exception, at.exception
    assert "Runs 2 columns" in _texts(at.caption)  # json-answer has one version: once each

    at.button(key="cmp_run").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    job = jobs.get_job(at.session_state["cmp_job"])
    assert job is not None and job.wait(120) and job.error is None
    at.run()
    assert not at.exception, at.exception

    comparison = job.result
    assert [c.label.split(" · ")[-1] for c in comparison.columns] == [
        "constrained, max_new_tokens=24",
        "free, max_new_tokens=24",
    ]
    under, free = comparison.column(0), comparison.column(1)
    assert all(o.params["constraint"]["source"] == "input schema" for o in under)
    assert all("constraint" not in o.params for o in free)

    [table] = [d.value for d in at.dataframe if "constraint-valid" in d.value.columns]
    assert list(table["decoded"]) == ["JSON Schema from input schema", "free"]
    assert table["constraint-valid"][0] == "2/2 (100%)"
    assert table["parses as JSON"][0] == "2/2 (100%)"
    assert table["cut (length)"][0] == "0"
    assert list(table.columns) == [
        "column",
        "decoded",
        "parses as JSON",
        "constraint-valid",
        "pass",
        "mean tokens",
        "mean latency",
        "cut (length)",
    ]
    captions = _texts(at.caption)
    assert "decoded under JSON Schema from input schema" in captions
    assert "decoded free" in captions
    assert captions.count("under JSON Schema from input schema · follows it") == 2
    assert captions.count("free · ") == 2
