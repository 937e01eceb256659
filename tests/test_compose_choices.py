"""Answer choices in Compose: the service reads, suggests and writes metadata.choices; the page
offers them for a classification prompt (labels in its examples), saves them, and refuses bad
ones with one line instead of saving."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import BUILTIN_PROMPTS_DIR, app_test, shown

from workbench import compose
from workbench.errors import PromptFileError
from workbench.templates import parse_prompt
from workbench.workspace import open_library

PAGE = "pages/1_Compose.py"


def builtin(name: str) -> Any:
    return parse_prompt((BUILTIN_PROMPTS_DIR / f"{name}.prompty").read_text(), name)


def test_labels_in_the_examples_are_suggested_free_text_is_not() -> None:
    sentiment = compose.read_draft(builtin("few-shot-sentiment"))
    assert compose.suggested_choices(sentiment) == ("Positive", "Negative", "Neutral")
    assert compose.suggested_choices(compose.read_draft(builtin("few-shot-translation"))) == ()
    assert compose.suggested_choices(compose.read_draft(builtin("zero-shot-sentiment"))) == ()


def test_choices_are_written_read_back_and_removed() -> None:
    base = builtin("few-shot-sentiment")
    draft = compose.read_draft(base)
    assert draft.choices is None
    built = compose.build(base, draft.edit(choices=("Positive", "Negative")))
    assert built.metadata["choices"] == ["Positive", "Negative"]
    assert built.metadata["technique"] == "few-shot"
    again = compose.read_draft(built)
    assert again.choices == ("Positive", "Negative")
    removed = compose.build(built, again.edit(choices=None))
    assert "choices" not in removed.metadata
    # unchanged: the same canonical text
    assert compose.apply_draft(built, again) == built.canonical_text()


def test_calibration_is_declared_beside_the_choices_and_goes_with_them() -> None:
    base = builtin("few-shot-sentiment")
    draft = compose.read_draft(base)
    chosen = compose.build(base, draft.edit(choices=("Positive", "Negative", "Neutral")))
    calibrated = compose.with_calibration(chosen, True)
    assert calibrated.metadata["calibrate"] is True and calibrated.body == chosen.body
    assert compose.with_calibration(calibrated, True) is calibrated
    assert "calibrate" not in compose.with_calibration(calibrated, False).metadata
    removed = compose.build(calibrated, compose.read_draft(calibrated).edit(choices=None))
    assert not {"choices", "calibrate"} & set(removed.metadata)


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        ("calibrate: yes please", "metadata.calibrate must be true or false"),
        ("calibrate: true", "metadata.calibrate needs metadata.choices"),
    ],
)
def test_a_bad_calibrate_is_one_line(metadata: str, problem: str) -> None:
    text = "---\nname: p\nmetadata:\n  " + metadata + "\n---\n{{ text }}\n"
    with pytest.raises(PromptFileError, match=problem):
        parse_prompt(text, "p")


def test_bad_choices_are_one_line() -> None:
    base = builtin("few-shot-sentiment")
    draft = compose.read_draft(base).edit(choices=compose.choices_from_text("Yes, Yes"))
    try:
        compose.build(base, draft)
    except compose.ComposeError as exc:
        assert str(exc) == "Answer choices: choice 'Yes' is given twice"
    else:
        raise AssertionError("not refused")


def open_prompt(name: str) -> Any:
    at = app_test(PAGE).run()
    at.selectbox(key="compose_prompt").set_value(name).run()
    assert not at.exception, at.exception
    return at


def test_the_page_offers_suggested_choices_and_saves_them(app_env: Path) -> None:
    at = open_prompt("few-shot-sentiment")
    scope = "compose:few-shot-sentiment@1:"
    captions = "\n".join(shown(str(c.value)) for c in at.caption)
    assert "Its examples answer with labels (Positive, Negative, Neutral)" in captions
    at.toggle(key=scope + "choices_on").set_value(True).run()
    assert at.text_input(key=scope + "choices").value == "Positive, Negative, Neutral"
    assert "choices:" in "\n".join(c.value for c in at.code)
    at.button(key="compose_save").click().run()
    assert not at.exception, at.exception
    stored = open_library().get("few-shot-sentiment").file
    assert stored.metadata["choices"] == ["Positive", "Negative", "Neutral"]


def test_the_page_refuses_bad_choices_without_saving(app_env: Path) -> None:
    at = open_prompt("few-shot-sentiment")
    scope = "compose:few-shot-sentiment@1:"
    at.toggle(key=scope + "choices_on").set_value(True).run()
    at.text_input(key=scope + "choices").input("Positive, , Negative").run()
    assert not at.exception, at.exception
    assert "Answer choices: choice 2 is empty" in "\n".join(shown(str(e.value)) for e in at.error)
    assert at.button(key="compose_save").disabled
    assert [v.number for v in open_library().versions("few-shot-sentiment")] == [1]


def test_a_prompt_without_labels_still_edits_choices(app_env: Path) -> None:
    at = open_prompt("zero-shot-sentiment")
    scope = "compose:zero-shot-sentiment@1:"
    at.toggle(key=scope + "choices_on").set_value(True).run()
    assert at.text_input(key=scope + "choices").value == ""
    at.text_input(key=scope + "choices").input("positive, negative, neutral").run()
    at.button(key="compose_save").click().run()
    stored = open_library().get("zero-shot-sentiment").file
    assert stored.metadata["choices"] == ["positive", "negative", "neutral"]
