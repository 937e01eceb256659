"""Putting chosen examples into a prompt: a block replaced in place, or made from a zero-shot
prompt's own question format (a completion loop, or earlier chat turns), always a file that
renders and lints clean."""

from __future__ import annotations

import pytest
from conftest import BUILTIN_PROMPTS_DIR, build_prompt_text

from workbench.compose import read_draft
from workbench.demos import Demo, DemosError, demo_count, with_choices, with_demos, with_mode
from workbench.lint import lint
from workbench.templates import PromptFile, parse_prompt

DEMOS = (Demo("Great!", "Positive"), Demo("Awful", "Negative"))


def builtin(name: str) -> PromptFile:
    return parse_prompt((BUILTIN_PROMPTS_DIR / f"{name}.prompty").read_text(), name)


def test_a_zero_shot_completion_prompt_repeats_its_question_format() -> None:
    pf = with_demos(builtin("zero-shot-sentiment"), DEMOS, "text")
    assert pf.render({"text": "meh"}).text == (
        "Classify the sentiment of the following text as Positive, Negative, or Neutral.\n\n"
        "Text: Great!\nSentiment: Positive\n\n"
        "Text: Awful\nSentiment: Negative\n\n"
        "Text: meh\nSentiment:"
    )
    assert pf.techniques == ("few-shot",) and pf.name == "zero-shot-sentiment"
    assert lint(pf) == [] and demo_count(pf) == 2


def test_a_zero_shot_chat_prompt_gets_earlier_turns() -> None:
    pf = with_demos(builtin("zero-shot-sentiment-chat"), DEMOS, "text")
    messages = pf.render({"text": "meh"}).messages
    assert [m.role for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[0].content.endswith("Text: Great!\nSentiment:")
    assert [messages[1].content, messages[3].content] == ["Positive", "Negative"]
    assert messages[4].content.endswith("Text: meh\nSentiment:")
    assert lint(pf) == []


@pytest.mark.parametrize("name", ["few-shot-sentiment", "few-shot-sentiment-chat"])
def test_an_examples_block_is_replaced_and_nothing_else_moves(name: str) -> None:
    base = builtin(name)
    pf = with_demos(base, DEMOS, "text")
    rows = read_draft(pf).examples
    assert rows is not None and [dict(r) for r in rows.rows] == [
        {"input": "Great!", "output": "Positive"},
        {"input": "Awful", "output": "Negative"},
    ]
    assert pf.body == base.body and pf.mode == base.mode
    empty = with_demos(base, (), "text")
    assert (
        demo_count(empty) == 0 and "Great!" not in empty.render({"text": "x"}).messages[-1].content
    )


def test_no_examples_leave_a_zero_shot_prompt_as_it_is() -> None:
    base = builtin("zero-shot-sentiment")
    assert with_demos(base, (), "text") is base


def test_the_same_examples_build_the_same_file() -> None:
    base = builtin("zero-shot-sentiment")
    assert with_demos(base, DEMOS, "text").canonical_text() == (
        with_demos(base, DEMOS, "text").canonical_text()
    )


def test_a_chat_prompt_in_completion_mode_stops_at_the_end_of_its_line() -> None:
    pf = with_mode(builtin("zero-shot-sentiment-chat"), "completion")
    assert pf.mode == "completion" and pf.options["stopSequences"] == ["\n"]
    assert (
        pf.render({"text": "x"}).text == builtin("zero-shot-sentiment").render({"text": "x"}).text
    )
    own = with_mode(builtin("zero-shot-sentiment"), "completion")
    assert own.options["stopSequences"] == ["Text:"]


def test_choices_are_declared_and_removed() -> None:
    pf = with_choices(builtin("zero-shot-sentiment"), ("Positive", "Negative"))
    assert pf.metadata["choices"] == ["Positive", "Negative"]
    assert "choices" not in with_choices(pf, None).metadata


def test_a_question_that_is_the_last_line_gets_its_label_under_it() -> None:
    text = build_prompt_text("q", "Label each text.\n{{ text }}\n", model={"apiType": "completion"})
    pf = with_demos(parse_prompt(text, "q"), DEMOS[:1], "text")
    assert pf.render({"text": "meh"}).text == "Label each text.\n\nGreat!\nPositive\n\nmeh"


@pytest.mark.parametrize(
    ("body", "question", "problem"),
    [
        ("user:\n{{ text }}\n", "other", "does not use {{ other }}"),
        ("user:\n{{ text }} {{ example }}\n", "text", "already uses a variable named 'example'"),
        ("user:\n{{ text }}\nassistant:\nok\nuser:\nthanks\n", "text", "not in the last message"),
    ],
)
def test_a_prompt_without_a_place_for_examples_says_why(
    body: str, question: str, problem: str
) -> None:
    pf = parse_prompt(
        build_prompt_text(
            "q", body, inputs={"text": {"kind": "string"}, "example": {"kind": "string"}}
        ),
        "q",
    )
    with pytest.raises(DemosError, match=problem.replace("{", r"\{").replace("}", r"\}")):
        with_demos(pf, DEMOS, question)
