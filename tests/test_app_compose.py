"""The Compose page as a person uses it (AppTest): edit blocks, preview, save, diff, label,
restore, count tokens — checking both what the page shows and what the library stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import app_test, shown

from workbench.app import state
from workbench.library import Library
from workbench.workspace import open_library

PAGE = "pages/1_Compose.py"


def open_prompt(name: str, version: int | None = None) -> Any:
    at = app_test(PAGE).run()
    at.selectbox(key="compose_prompt").set_value(name).run()
    if version is not None:
        at.selectbox(key=f"compose_prompt:version:{name}").set_value(version).run()
    assert not at.exception, at.exception
    return at


def codes(at: Any) -> list[str]:
    return [c.value for c in at.code]


def texts(elements: Any) -> str:
    return "\n".join(shown(str(e.value)) for e in elements)


def edit_table(
    at: Any,
    key: str,
    *,
    edited: dict[int, dict[str, str]] | None = None,
    added: list[dict[str, str]] | None = None,
    deleted: list[int] | None = None,
) -> None:
    at.session_state[key] = {
        "edited_rows": edited or {},
        "added_rows": added or [],
        "deleted_rows": deleted or [],
    }
    at.run()
    assert not at.exception, at.exception


def library() -> Library:
    return open_library()


def test_edit_examples_save_then_save_again_unchanged(app_env: Path) -> None:
    at = open_prompt("few-shot-translation")
    scope = "compose:few-shot-translation@1:"
    assert at.dataframe[0].value["output"].tolist() == ["Bonjour", "Merci"]

    edit_table(
        at,
        scope + "examples",
        edited={1: {"output": "Merci bien"}},
        added=[{"input": "Goodbye", "output": "Au revoir"}],
    )
    shown = codes(at)
    assert "Au revoir" in shown and "Merci bien" in shown and "Merci" not in shown
    assert "+    - input: Goodbye" in texts(at.code)  # the unsaved changes

    at.text_input(key=scope + "note").input("add a goodbye").run()
    at.button(key="compose_save").click().run()
    assert not at.exception, at.exception
    assert "Saved as v2" in texts(at.success)
    v2 = library().get("few-shot-translation")
    assert (v2.number, v2.note) == (2, "add a goodbye")
    assert v2.file.inputs["examples"].default == [
        {"input": "Good morning", "output": "Bonjour"},
        {"input": "Thank you", "output": "Merci bien"},
        {"input": "Goodbye", "output": "Au revoir"},
    ]
    # the page now shows the saved version, rendered with the new example
    assert at.selectbox(key="compose_prompt:version:few-shot-translation").value == 2
    assert "Au revoir" in codes(at)
    assert "No changes since v2." in texts(at.caption)

    at.button(key="compose_save").click().run()
    assert "Unchanged — same as v2" in texts(at.info)
    assert [v.number for v in library().versions("few-shot-translation")] == [1, 2]


def test_constraints_table_and_persona_are_saved(app_env: Path) -> None:
    at = open_prompt("code-generation")
    scope = "compose:code-generation@1:"
    edit_table(at, scope + "constraints", added=[{"rule": "Use no recursion."}], deleted=[3])
    at.text_area(key=scope + "persona").input("You are a careful reviewer.").run()
    shown = codes(at)
    assert "You are a careful reviewer." in shown
    assert "- Use no recursion." in texts(at.code)
    assert "Use only the standard library." not in next(c for c in shown if "Requirements" in c)

    at.button(key="compose_save").click().run()
    stored = library().get("code-generation").file
    assert stored.inputs["requirements"].default[-1] == "Use no recursion."
    assert len(stored.inputs["requirements"].default) == 4
    assert stored.inputs["persona"].default == "You are a careful reviewer."


def test_chain_of_thought_toggle_and_sample_inputs(app_env: Path) -> None:
    at = open_prompt("zero-shot-translation")
    scope = "compose:zero-shot-translation@1:"
    at.toggle(key=scope + "cot").set_value(True).run()
    at.text_area(key=scope + "var:target_language").input("German").run()
    assert not at.exception, at.exception
    assert at.text_input(key=scope + "trigger").value == "Let's think step by step."
    assert "Translate to German: 'Hello, how are you?'\nLet's think step by step." in codes(at)

    at.button(key="compose_save").click().run()
    stored = library().get("zero-shot-translation").file
    assert stored.inputs["target_language"].default == "German"
    assert stored.inputs["trigger"].default == "Let's think step by step."
    assert stored.techniques == ("zero-shot", "chain-of-thought")
    assert stored.body.endswith("{{ trigger }}\n")


def test_new_prompt_from_a_technique(app_env: Path) -> None:
    at = app_test(PAGE).run()
    at.radio(key="compose_source").set_value("A technique starter").run()
    at.selectbox(key="compose_technique").set_value("json-format").run()
    at.text_input(key="compose_new_name").input("json-answer").run()
    assert "already exists" in texts(at.error)
    assert at.button(key="compose_save").disabled

    at.text_input(key="compose_new_name").input("capital-json").run()
    assert not at.error and not at.exception
    assert any('"confidence"' in c for c in codes(at))
    at.text_area(key="compose:new:json-format:var:question").input("Capital of Peru?").run()
    at.button(key="compose_save").click().run()
    assert not at.exception, at.exception
    assert "Saved as v1" in texts(at.success)

    stored = library().get("capital-json")
    assert stored.number == 1 and stored.technique == "json-format"
    assert stored.file.inputs["question"].default == "Capital of Peru?"
    # the page switched to the saved prompt
    assert at.radio(key="compose_source").value == "A saved prompt"
    assert at.selectbox(key="compose_prompt").value == "capital-json"


@pytest.mark.parametrize(
    ("prompt", "widget", "value", "message"),
    [
        (
            "zero-shot-translation",
            "body",
            "user:\nTranslate {{ text }\n",
            "template line 2: template syntax error: unexpected '}'",
        ),
        ("json-answer", "schema", '{"type": "object",', "the JSON schema is not valid JSON"),
        ("json-answer", "schema", "[1, 2]", "must be a JSON object"),
        (
            "self-consistency-math",
            "answer_pattern",
            "The answer is (\\d+",
            "not a valid regular expression",
        ),
    ],
)
def test_bad_input_is_an_error_message_not_a_traceback(
    app_env: Path, prompt: str, widget: str, value: str, message: str
) -> None:
    at = open_prompt(prompt)
    key = f"compose:{prompt}@1:{widget}"
    element = at.text_area(key=key) if widget in ("body", "schema") else at.text_input(key=key)
    element.input(value).run()
    assert not at.exception, at.exception
    assert message in texts(at.error)
    assert at.button(key="compose_save").disabled
    assert [v.number for v in library().versions(prompt)] == [1]


def test_diff_label_and_restore(app_env: Path) -> None:
    lib = library()
    v1 = lib.get("zero-shot-translation")
    lib.save(v1.file.canonical_text().replace("default: French", "default: German"), "German")

    at = open_prompt("zero-shot-translation")
    assert at.selectbox(key="compose_prompt:version:zero-shot-translation").value == 2
    diff = next(c for c in at.code if c.language == "diff").value
    assert "-    default: French" in diff and "+    default: German" in diff

    at.text_input(key="compose_label").input("production").run()
    at.button(key="compose_set_label").click().run()
    assert "'production' now points to v2" in texts(at.success)
    assert library().get("zero-shot-translation@production").number == 2

    at.selectbox(key="compose_prompt:version:zero-shot-translation").set_value(1).run()
    at.button(key="compose_restore").click().run()
    assert not at.exception, at.exception
    assert "Restored v1 as v3" in texts(at.success)
    v3 = library().get("zero-shot-translation")
    assert v3.number == 3 and v3.content == v1.content and v3.note == "restored from v1"
    assert at.selectbox(key="compose_prompt:version:zero-shot-translation").value == 3


def test_token_count_after_loading_the_model(
    app_env: Path, monkeypatch: pytest.MonkeyPatch, tiny_backend: Any
) -> None:
    monkeypatch.setattr(state, "_loaded", set())  # as on a fresh server: no model loaded yet
    at = open_prompt("zero-shot-sentiment-chat")
    assert "tokens of" not in texts(at.caption)
    at.button(key="compose_count").click().run()
    assert not at.exception, at.exception
    caption = next(shown(c.value) for c in at.caption if "tokens of" in c.value)
    rendered = library().get("zero-shot-sentiment-chat").file.render()
    expected = tiny_backend.model_input(rendered)
    assert caption.startswith(f"{tiny_backend.count_tokens(expected)} tokens of ")
    assert f"{tiny_backend.info.context_window}-token context window" in caption
    assert expected.text.removesuffix("\n") in codes(at)  # st.code drops one last newline
    assert "<|im_start|>user" in expected.text
    # once loaded, the count is shown at once and the button is gone
    at.run()
    assert not any(b.key == "compose_count" for b in at.button)
    assert any("tokens of" in c.value for c in at.caption)
