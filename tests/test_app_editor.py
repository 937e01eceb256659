"""The Compose page's template editor (AppTest): problems name their line in the box and the
numbered template marks it; a variable typed but never given a value is a warning there and a
refusal in the Playground; an untouched imported prompt has no changes; after Save the page
and its URL stay on the saved version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import app_test, shown

from workbench.exchange import import_files
from workbench.lint import lint
from workbench.workspace import open_library

PAGE = "pages/1_Compose.py"
SCOPE = "compose:zero-shot-translation@1:"


def texts(elements: Any) -> list[str]:
    return [shown(str(e.value)) for e in elements]


def open_prompt(name: str) -> Any:
    at = app_test(PAGE).run()
    at.selectbox(key="compose_prompt").set_value(name).run()
    assert not at.exception, at.exception
    return at


def numbered_view(at: Any) -> Any:
    return next(c for c in at.code if c.show_line_numbers and c.language != "yaml")


def test_a_syntax_error_names_its_line_in_the_box_and_marks_it(app_env: Path) -> None:
    at = open_prompt("zero-shot-translation")
    at.text_area(key=SCOPE + "body").input("user:\nTranslate {{ text }\nKeep it short.\n").run()
    assert not at.exception, at.exception
    assert texts(at.error) == ["template line 2: template syntax error: unexpected '}'"]
    view = numbered_view(at)
    assert view.value == "user:\nTranslate {{ text }    <-- error\nKeep it short."
    assert at.button(key="compose_save").disabled


def test_the_template_has_line_numbers_when_nothing_is_wrong(app_env: Path) -> None:
    at = open_prompt("zero-shot-translation")
    assert not at.error and not at.warning
    assert "Template with line numbers" in [e.label for e in at.expander]
    view = numbered_view(at)
    assert view.value == "user:\nTranslate to {{ target_language }}: '{{ text }}'"
    # the whole file is numbered too, for findings in its front matter
    assert any(c.language == "yaml" and c.show_line_numbers for c in at.code)


def test_a_variable_typed_without_a_value_is_a_warning_at_its_line(app_env: Path) -> None:
    at = open_prompt("zero-shot-translation")
    body = "user:\nTranslate to {{ target_language }}: '{{ text }}'\nTone: {{ tone }}\n"
    at.text_area(key=SCOPE + "body").input(body).run()
    assert not at.exception, at.exception
    assert len(at.warning) == 1
    assert texts(at.warning) == [
        "template line 3: variable 'tone' is used but not declared in inputs: type a sample "
        "value for it under Sample inputs (it is saved as its default)"
    ]
    assert texts(at.error) == [
        "template line 3: nothing to preview: 'tone' has no value; type a sample value under "
        "Sample inputs (a run without one is refused)"
    ]
    assert numbered_view(at).value.endswith("Tone: {{ tone }}    <-- error")
    previews = [c for c in at.code if not c.show_line_numbers and c.language != "diff"]
    assert not any("Tone:" in c.value for c in previews)  # nothing rendered with empty text

    # saved as it is, it stays undeclared (not an empty default): lint and runs see it
    at.button(key="compose_save").click().run()
    stored = open_library().get("zero-shot-translation")
    assert stored.number == 2 and "tone" not in stored.file.inputs
    assert [i.code for i in lint(stored.file)] == ["undeclared-variable"]


def test_a_sample_value_declares_the_variable_and_silences_the_warning(app_env: Path) -> None:
    at = open_prompt("zero-shot-translation")
    body = "user:\nTranslate to {{ target_language }}: '{{ text }}'\nTone: {{ tone }}\n"
    at.text_area(key=SCOPE + "body").input(body).run()
    at.text_area(key=SCOPE + "var:tone").input("formal").run()
    assert not at.exception, at.exception
    assert not at.warning and not at.error
    assert any("Tone: formal" in c.value for c in at.code)
    at.button(key="compose_save").click().run()
    assert open_library().get("zero-shot-translation").file.inputs["tone"].default == "formal"


def test_the_playground_refuses_a_run_without_a_value_for_an_undeclared_variable(
    app_env: Path,
) -> None:
    lib = open_library()
    v1 = lib.get("zero-shot-translation")
    lib.save(v1.file.canonical_text().rstrip("\n") + "\nTone: {{ tone }}\n", "tone")
    at = app_test("pages/2_Playground.py").run()
    at.selectbox(key="play_prompt").set_value("zero-shot-translation").run()
    assert not at.exception, at.exception
    assert any("No value for 'tone'" in w for w in texts(at.warning))
    at.button(key="play_run").click().run()
    assert not at.exception, at.exception
    assert any("missing variable: tone" in e for e in texts(at.error))


IMPORTED = {
    "number-default": "inputs:\n  text:\n    default: 5\n",
    "undeclared": "",
    "no-default": "inputs:\n  text:\n    kind: string\n",
}


@pytest.mark.parametrize("front", IMPORTED.values(), ids=IMPORTED.keys())
def test_an_unedited_imported_prompt_shows_no_changes(app_env: Path, front: str) -> None:
    text = f"---\nname: imported\ndescription: d\n{front}---\nuser:\nSay {{{{ text }}}}\n"
    import_files(open_library(), [("imported.prompty", text.encode())])
    at = open_prompt("imported")
    assert "No changes since v1." in texts(at.caption)
    assert not any(e.label.startswith("Changes since") for e in at.expander)

    at.text_area(key="compose:imported@1:body").input("user:\nSay {{ text }}!\n").run()
    assert any(e.label == "Changes since v1" for e in at.expander)


def test_after_save_the_page_and_its_url_stay_on_the_saved_version(app_env: Path) -> None:
    at = open_prompt("zero-shot-translation")  # not the first prompt in the list
    at.text_area(key=SCOPE + "var:target_language").input("German").run()
    at.button(key="compose_save").click().run()
    assert not at.exception, at.exception
    assert "Saved as v2" in texts(at.success)
    assert at.selectbox(key="compose_prompt").value == "zero-shot-translation"
    assert at.selectbox(key="compose_prompt:version:zero-shot-translation").value == 2
    assert at.query_params == {"prompt": "zero-shot-translation", "v": "2"}
    at.run()  # and the next rerun keeps it
    assert at.selectbox(key="compose_prompt").value == "zero-shot-translation"
    assert at.selectbox(key="compose_prompt:version:zero-shot-translation").value == 2


def test_a_new_prompt_saved_from_a_starter_is_opened_and_named_in_the_url(app_env: Path) -> None:
    at = app_test(PAGE).run()
    at.radio(key="compose_source").set_value("A technique starter").run()
    at.text_input(key="compose_new_name").input("fresh").run()
    at.button(key="compose_save").click().run()
    assert not at.exception, at.exception
    assert at.selectbox(key="compose_prompt").value == "fresh"
    assert at.query_params == {"prompt": "fresh", "v": "1"}
