"""Pages remember: the selection survives page switches, and the address (`?prompt=…&v=…&run=…
&model=…`) reopens the same view."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import app_test, shown

from workbench import jobs
from workbench.library import Library
from workbench.runner import Runner
from workbench.workspace import open_library

PLAY, COMPOSE, LIBRARY, HISTORY, EVALUATE = (
    "pages/2_Playground.py",
    "pages/1_Compose.py",
    "pages/5_Library.py",
    "pages/4_History.py",
    "pages/6_Evaluate.py",
)
PROMPT = "few-shot-sentiment"


def _second_version(lib: Library, name: str = PROMPT) -> None:
    text = lib.get(name).file.canonical_text().replace("\n---\n", "\n---\n(edited)\n", 1)
    assert lib.save(text, "edited").version.number == 2


def _home() -> Any:
    at = app_test("Home.py").run()  # the entry script: pages switch relative to it
    assert not at.exception, at.exception
    return at


def _go(at: Any, page: str) -> Any:
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def _warnings(at: Any) -> list[str]:
    return [shown(w.value) for w in at.warning]


def test_switching_pages_keeps_prompt_version_parameters_inputs_and_rows(app_env: Path) -> None:
    _second_version(open_library())
    at = _go(_home(), PLAY)
    at.selectbox(key="play_prompt").set_value(PROMPT).run()
    at.selectbox(key=f"play_prompt:version:{PROMPT}").set_value(1).run()
    ref = f"{PROMPT}@1"
    at.number_input(key=f"param:{ref}:max_new_tokens").set_value(9).run()
    at.text_area(key=f"play_var:{ref}:text").set_value("kept across pages").run()
    at.session_state[f"play_ds:{ref}:rows"] = {
        "edited_rows": {0: {"text": "first row"}},
        "added_rows": [{"text": "second row"}],
        "deleted_rows": [],
    }
    at.run()
    assert not at.exception, at.exception

    # Other pages open on the prompt picked last.
    _go(at, COMPOSE)
    assert at.selectbox(key="compose_prompt").value == PROMPT
    assert at.selectbox(key=f"compose_prompt:version:{PROMPT}").value == 1
    _go(at, LIBRARY)
    assert at.selectbox(key="library_prompt").value == PROMPT
    _go(at, HISTORY)

    # Back on the Playground: everything as it was left.
    _go(at, PLAY)
    assert at.selectbox(key="play_prompt").value == PROMPT
    assert at.selectbox(key=f"play_prompt:version:{PROMPT}").value == 1
    assert at.number_input(key=f"param:{ref}:max_new_tokens").value == 9
    assert at.text_area(key=f"play_var:{ref}:text").value == "kept across pages"
    assert list(at.dataframe[0].value["text"]) == ["first row", "second row"]
    assert any("2 rows" in c.value for c in at.caption)


def test_evaluate_and_library_remember_their_choices(app_env: Path) -> None:
    at = _go(_home(), EVALUATE)
    at.multiselect(key="eval_refs").set_value([f"{PROMPT}@1"]).run()
    at.text_area(key="eval_asserts").set_value("exact-match").run()
    at.text_input(key="eval_params").set_value("max_new_tokens=3").run()
    _go(at, LIBRARY)
    at.selectbox(key="library_prompt").set_value("json-answer").run()
    _go(at, EVALUATE)
    assert at.multiselect(key="eval_refs").value == [f"{PROMPT}@1"]
    assert at.text_area(key="eval_asserts").value == "exact-match"
    assert at.text_input(key="eval_params").value == "max_new_tokens=3"
    _go(at, LIBRARY)
    assert at.selectbox(key="library_prompt").value == "json-answer"


def test_the_address_opens_a_prompt_version_and_follows_the_choice(app_env: Path) -> None:
    _second_version(open_library())
    at = app_test(PLAY)
    at.query_params["prompt"] = PROMPT
    at.query_params["v"] = "1"
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="play_prompt").value == PROMPT
    assert at.selectbox(key=f"play_prompt:version:{PROMPT}").value == 1
    assert not at.warning

    # Choosing another version puts it in the address (a link, the back button).
    at.selectbox(key=f"play_prompt:version:{PROMPT}").set_value(2).run()
    assert at.query_params["v"] == "2"
    at.selectbox(key="play_prompt").set_value("json-answer").run()
    assert (at.query_params["prompt"], at.query_params["v"]) == ("json-answer", "1")
    assert "model" not in at.query_params  # the default model is not repeated

    # The back button: the address goes back to the earlier choice, the page follows it.
    at.query_params["prompt"], at.query_params["v"] = PROMPT, "2"
    at.run()
    assert at.selectbox(key="play_prompt").value == PROMPT
    assert at.selectbox(key=f"play_prompt:version:{PROMPT}").value == 2

    # Compose and the Library read the same address.
    for page, key in ((COMPOSE, "compose_prompt"), (LIBRARY, "library_prompt")):
        other = app_test(page)
        other.query_params["prompt"] = "json-answer"
        other.run()
        assert not other.exception, other.exception
        assert other.selectbox(key=key).value == "json-answer"


def test_an_unknown_prompt_or_version_in_the_address_is_one_line(app_env: Path) -> None:
    at = app_test(PLAY)
    at.query_params["prompt"] = "no-such-prompt"
    at.run()
    assert not at.exception, at.exception
    assert _warnings(at) == [
        "The address asks for prompt 'no-such-prompt', which is not in the library: showing "
        "the default prompt instead."
    ]
    assert at.selectbox(key="play_prompt").value == at.selectbox(key="play_prompt").options[0]

    at = app_test(PLAY)
    at.query_params["prompt"] = PROMPT
    at.query_params["v"] = "7"
    at.run()
    assert _warnings(at) == [
        f"The address asks for version '7' of {PROMPT}, which has versions 1 to 1: showing v1 "
        "instead."
    ]
    assert at.selectbox(key=f"play_prompt:version:{PROMPT}").value == 1


def test_a_run_in_the_address_reopens_its_results(app_env: Path, tiny_backend: Any) -> None:
    lib = open_library()
    summary = Runner(lib, tiny_backend).run(
        [lib.get(f"{PROMPT}@1")], [{"text": "from a link"}], overrides={"max_new_tokens": 3}
    )
    run_id = summary.run.id
    [output] = summary.outputs

    at = app_test(PLAY)
    at.query_params.update(prompt=PROMPT, v="1", run=str(run_id))
    at.run()
    assert not at.exception, at.exception
    assert output.text in [c.value for c in at.code]
    assert any(f"Run {run_id}" in shown(c.value) for c in at.caption)

    history = app_test(HISTORY)
    history.query_params["run"] = str(run_id)
    history.run()
    assert not history.exception, history.exception
    assert history.selectbox(key="history:open").value == run_id

    missing = app_test(PLAY)
    missing.query_params["run"] = "999"
    missing.run()
    assert _warnings(missing) == ["The address names run '999', which is not stored."]


def test_a_new_answer_puts_its_run_in_the_address_and_a_reload_finds_it(app_env: Path) -> None:
    at = app_test(PLAY).run()
    at.selectbox(key="play_prompt").set_value(PROMPT).run()
    at.number_input(key=f"param:{PROMPT}@1:max_new_tokens").set_value(3).run()
    at.button(key="play_run").click().run()
    job = jobs.get_job(at.session_state["play_single_job"])
    assert job is not None and job.wait(60) and job.error is None
    at.run()
    assert at.query_params["run"] == str(job.run_id)

    # A reload is a new session with the same address: the job is found by its run.
    reload = app_test(PLAY)
    reload.query_params.update(dict(at.query_params.items()))
    reload.run()
    assert not reload.exception, reload.exception
    assert reload.session_state["play_single_job"] == job.id
    assert job.result.output.text in [c.value for c in reload.code]


def test_the_model_in_the_address(app_env: Path, tmp_path: Path) -> None:
    at = app_test(PLAY)
    at.query_params["model"] = str(tmp_path / "another-model")
    at.run()
    assert not at.exception, at.exception
    assert at.text_input(key="model_spec").value == str(tmp_path / "another-model")
    assert at.query_params["model"] == str(tmp_path / "another-model")

    server = app_test(PLAY)
    server.query_params["model"] = "openai:tiny@http://127.0.0.1:9/v1"
    server.run()
    assert server.radio(key="model_source").value == "OpenAI-compatible server"
    assert server.text_input(key="model_server_model").value == "tiny"
    assert server.text_input(key="model_server_url").value == "http://127.0.0.1:9/v1"


def test_a_compose_draft_survives_a_visit_to_another_page(app_env: Path) -> None:
    at = _go(_home(), COMPOSE)
    at.selectbox(key="compose_prompt").set_value(PROMPT).run()
    key = f"compose:{PROMPT}@1:"
    at.text_input(key=key + "description").set_value("a draft in progress").run()
    at.text_area(key=key + "body").set_value("user:\n{{ text }} (draft)\n").run()
    _go(at, PLAY)
    assert at.selectbox(key="play_prompt").value == PROMPT
    _go(at, COMPOSE)
    assert at.selectbox(key="compose_prompt").value == PROMPT
    assert at.text_input(key=key + "description").value == "a draft in progress"
    assert at.text_area(key=key + "body").value == "user:\n{{ text }} (draft)\n"
