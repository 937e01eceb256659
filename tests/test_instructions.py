"""Finding a prompt's instruction, replacing it, and keeping only usable rewrites."""

from __future__ import annotations

import pytest

from workbench.instructions import (
    clean_rewrite,
    instruction_of,
    meta_prompt,
    with_instruction,
)
from workbench.library import Library
from workbench.templates import parse_prompt

ORIGINAL = "Classify the sentiment of the following text as Positive, Negative, or Neutral."


@pytest.mark.parametrize(
    ("name", "instruction"),
    [
        ("zero-shot-sentiment", ORIGINAL),
        ("zero-shot-sentiment-chat", None),
        ("few-shot-sentiment", "Classify the sentiment of each text as Positive, Negative, or"),
        ("few-shot-sentiment-chat", "Classify the sentiment of each text as Positive"),
    ],
)
def test_the_instruction_is_the_first_plain_lines(
    builtin_library: Library, name: str, instruction: str | None
) -> None:
    found = instruction_of(builtin_library.get(name).file)
    if instruction is None:
        assert found is None or found.startswith("Classify")
    else:
        assert found is not None and found.startswith(instruction)


def test_replacing_it_changes_that_line_only(builtin_library: Library) -> None:
    pf = builtin_library.get("few-shot-sentiment-chat").file
    changed = with_instruction(pf, "Answer Positive, Negative or Neutral.")
    before, after = pf.body.split("\n"), changed.body.split("\n")
    assert len(before) == len(after)
    assert [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b] == [1]
    assert changed.render({"text": "ok"}).messages[0].content.startswith("Answer Positive")
    assert changed.inputs.keys() == pf.inputs.keys() and changed.mode == pf.mode


def test_a_prompt_that_starts_with_its_question_has_no_instruction() -> None:
    pf = parse_prompt("---\nname: bare\n---\n{{ text }}\nSentiment:\n", "bare")
    assert instruction_of(pf) is None
    with pytest.raises(ValueError, match="no instruction"):
        with_instruction(pf, "Do it well.")


@pytest.mark.parametrize(
    ("answer", "kept"),
    [
        ("Instruction: Label the text as Positive, Negative or Neutral.", "Label the text as"),
        ('"Say Positive, Negative or Neutral."', "Say Positive, Negative or Neutral."),
        ("Line one of it\nand line two of it\n\nA second paragraph", "Line one of it and line"),
        ("Here's a clearer version: Tell me the mood.", "Tell me the mood."),
        ("", None),
        ("Short", None),
        (ORIGINAL.lower(), None),
        ("system:\nYou are a bot", None),
        ("Use {% if x %} here", None),
        ("word " * 200, None),
    ],
)
def test_only_usable_rewrites_are_kept(answer: str, kept: str | None) -> None:
    cleaned = clean_rewrite(answer, ORIGINAL)
    if kept is None:
        assert cleaned is None
    else:
        assert cleaned is not None and cleaned.startswith(kept) and "\n" not in cleaned


def test_a_rewrite_that_drops_a_label_the_original_names_is_not_kept() -> None:
    labels = ("Positive", "Negative", "Neutral", "Mixed")  # "Mixed" is not in the original
    dropped = "Say whether the text is positive or negative."
    kept = "Say whether the text is positive, negative or neutral."
    assert clean_rewrite(dropped, ORIGINAL, labels) is None
    assert clean_rewrite(kept, ORIGINAL, labels) == kept
    assert clean_rewrite(dropped, ORIGINAL) == dropped  # no labels given: not checked


def test_the_meta_prompt_renders_the_instruction() -> None:
    rendered = meta_prompt().render({"instruction": ORIGINAL})
    assert rendered.messages[-1].content.endswith(ORIGINAL)
