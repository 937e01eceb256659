"""The built-in prompts (workbench/prompts/): each parses, is canonical, lints clean, renders."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from workbench.lint import lint
from workbench.techniques import TECHNIQUES, SelfConsistency
from workbench.templates import PromptFile, parse_prompt_bytes

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "workbench" / "prompts"
PROMPT_PATHS = sorted(PROMPTS_DIR.glob("*.prompty"))


def load(path: Path) -> PromptFile:
    return parse_prompt_bytes(path.read_bytes(), path.name)


def builtin(name: str) -> PromptFile:
    return load(PROMPTS_DIR / f"{name}.prompty")


def all_text(pf: PromptFile) -> str:
    return "\n".join(m.content for m in pf.render().messages)


def test_library_size() -> None:
    assert len(PROMPT_PATHS) >= 10, [p.name for p in PROMPT_PATHS]


def test_techniques_covered() -> None:
    used = {t for path in PROMPT_PATHS for t in load(path).techniques}
    assert set(TECHNIQUES) <= used, f"no built-in uses {sorted(set(TECHNIQUES) - used)}"


def test_names_unique() -> None:
    names = [load(path).name for path in PROMPT_PATHS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("path", PROMPT_PATHS, ids=lambda p: p.stem)
def test_builtin_file(path: Path) -> None:
    pf = load(path)
    text = path.read_text(encoding="utf-8")
    assert pf.name == path.stem
    assert pf.description
    assert pf.techniques, "metadata.technique is missing"
    assert pf.canonical_text() == text, "not canonical: write it with dump_prompt(front, body)"
    issues = lint(pf)
    assert issues == [], "\n".join(str(issue) for issue in issues)
    for volatile in ("version", "note", "labels"):
        assert volatile not in pf.metadata
    for name, spec in pf.inputs.items():
        assert spec.has_default, f"input {name!r} has no default"
        assert spec.description, f"input {name!r} has no description"

    rendered = pf.render()
    assert len(rendered.messages) >= 1
    for message in rendered.messages:
        assert message.content.strip(), f"empty {message.role} message"
        assert "\n\n\n" not in message.content, f"stray blank lines in {message.role} message"
        assert message.content == message.content.strip(), "untrimmed message"
    if pf.mode == "chat":
        assert rendered.messages[-1].role == "user"
    else:
        assert [m.role for m in rendered.messages] == ["system"], "role lines in a completion"


def test_few_shot_translation() -> None:
    pf = builtin("few-shot-translation")
    messages = pf.render().messages
    text = "\n".join(m.content for m in messages)
    for phrase in ("Good morning", "Bonjour", "Thank you", "Merci"):
        assert phrase in text
    # the examples become chat turns: user asks, assistant answers
    assert [(m.role, m.content) for m in messages[1:5]] == [
        ("user", "Good morning"),
        ("assistant", "Bonjour"),
        ("user", "Thank you"),
        ("assistant", "Merci"),
    ]
    assert messages[-1].role == "user"


def test_few_shot_sentiment_is_a_completion_with_three_labels() -> None:
    pf = builtin("few-shot-sentiment")
    assert pf.mode == "completion"
    text = pf.render().text
    for example, label in (("Great!", "Positive"), ("Terrible", "Negative")):
        assert f"Text: {example}\nSentiment: {label}" in text
    assert "Sentiment: Neutral" in text
    assert text.endswith("Text: I love this product!\nSentiment:")


def test_chain_of_thought() -> None:
    pf = builtin("chain-of-thought-math")
    assert "chain-of-thought" in pf.techniques
    text = all_text(pf)
    assert "5 + 6 = 11" in text
    assert "Let's think step by step." in text
    assert pf.render().messages[-1].content.endswith("Let's think step by step.")


def test_zero_shot_sentiment() -> None:
    pf = builtin("zero-shot-sentiment")
    assert pf.mode == "completion"
    assert pf.techniques == ("zero-shot",)
    text = pf.render().text
    assert text.endswith("Sentiment:")
    assert "Positive, Negative, or Neutral" in text
    assert pf.render({"text": "Meh."}).text.endswith("Text: Meh.\nSentiment:")


def test_json_answer_schema() -> None:
    pf = builtin("json-answer")
    assert "json-format" in pf.techniques
    default = pf.inputs["schema"].default
    schema = json.loads(default)
    assert schema["type"] == "object"
    assert set(schema["required"]) == {"answer", "confidence", "reasoning"}
    assert schema["properties"]["confidence"]["minimum"] == 0
    assert schema["properties"]["confidence"]["maximum"] == 1
    assert schema["additionalProperties"] is False
    text = all_text(pf)
    assert default in text
    assert "Reply with JSON only, matching this schema:" in text
    # the schema reaches the model through a variable, never as braces in the template
    assert "{" not in pf.body.replace("{{", "").replace("{%", "")


def test_constraints_rendered_as_bullets() -> None:
    pf = builtin("constraints-explain")
    rules = "- Answer in exactly 50 words.\n- Use simple language suitable for a 10-year-old."
    assert all_text(pf).endswith("\n\nFollow these rules:\n" + rules)
    custom = pf.render({"constraints": ["Use one sentence."]}).messages[-1].content
    assert custom.endswith("\n- Use one sentence.")


def test_self_consistency() -> None:
    pf = builtin("self-consistency-math")
    sc = SelfConsistency.from_metadata(pf.metadata)
    assert sc is not None
    assert sc.problems() == []
    assert sc.samples >= 2
    assert sc.answer_pattern
    assert pf.options["temperature"] > 0
    match = re.search(sc.answer_pattern, "23 - 20 = 3. 3 + 6 = 9. The answer is 9.")
    assert match is not None
    assert match.group(1) == "9"
