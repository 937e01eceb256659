"""Lint: each warning fires on a minimal file, at the line a person should look at."""

from __future__ import annotations

import pytest
from conftest import PromptText

from workbench.lint import LintIssue, lint
from workbench.params import MODEL_OPTIONS
from workbench.templates import parse_prompt

CLEAN = """\
---
name: clean
description: Nothing to say about it.
inputs:
  text:
    kind: string
    default: hi
---
system:
You are helpful.

user:
{{ text }}
"""

# (code, file text, expected line, expected severity, a phrase the message must contain)
CASES = [
    (
        "undeclared-variable",
        "---\nname: a\n---\nuser:\nHello\n{{ who }}\n",
        6,
        "warning",
        "'who' is used but not declared",
    ),
    (
        "unused-variable",
        "---\nname: a\ninputs:\n  used: 1\n  spare:\n    default: x\n---\nuser:\n{{ used }}\n",
        5,
        "warning",
        "'spare' is declared but the template never uses it",
    ),
    (
        "braces-as-jinja",
        '---\nname: a\n---\nuser:\nReply as JSON:\n{{ {"answer": 1} }}\n',
        6,
        "warning",
        "{% raw %}",
    ),
    (
        "braces-as-jinja",
        '---\nname: a\n---\nuser:\n{{ [{"a": 1}] }}\n',
        5,
        "warning",
        "JSON is evaluated",
    ),
    (
        "jinja-comment",
        "---\nname: a\n---\nuser:\nhi\nthe tag {# is gone #} here\n",
        6,
        "warning",
        "'{#' starts a Jinja comment",
    ),
    (
        "jinja-in-value",
        "---\nname: a\ninputs:\n  x:\n    default: '{{ y }}'\n---\nuser:\n{{ x }}\n",
        4,
        "info",
        "default of input 'x'",
    ),
    (
        "empty-section",
        "---\nname: a\n---\nsystem:\n\nuser:\nhi\n",
        4,
        "warning",
        "the system: section is empty",
    ),
    (
        "empty-template",
        "---\nname: a\n---\n",
        4,
        "warning",
        "body is empty",
    ),
    (
        "roles-in-completion",
        "---\nname: a\nmodel:\n  apiType: completion\n---\nOnce upon a time\nuser:\nmore\n",
        7,
        "warning",
        "'user:' is a role line in a completion prompt",
    ),
    (
        "no-user-message",
        "---\nname: a\n---\nsystem:\nYou are terse.\n",
        4,
        "warning",
        "without a user: section",
    ),
    (
        "system-not-first",
        "---\nname: a\n---\nuser:\nhi\nassistant:\nhello\nsystem:\nlate\n",
        8,
        "warning",
        "system: comes after other messages",
    ),
    (
        "unknown-technique",
        "---\nname: a\nmetadata:\n  technique: few-shots\n---\nuser:\nhi\n",
        4,
        "warning",
        "unknown technique 'few-shots' (did you mean 'few-shot'?)",
    ),
    (
        "unknown-option",
        "---\nname: a\nmodel:\n  options:\n    temperature: 0.5\n    max_tokens: 9\n"
        "---\nuser:\nhi\n",
        6,
        "warning",
        "'max_tokens' is not used by the workbench and will be ignored; write 'maxOutputTokens'",
    ),
    (
        "unknown-option",
        "---\nname: a\nmodel:\n  options:\n    warmth: 3\n---\nuser:\nhi\n",
        5,
        "warning",
        "model option 'warmth' is not used by the workbench and will be ignored; the options "
        "used are temperature, maxOutputTokens",
    ),
    (
        "unknown-option",
        "---\nname: a\nmodel:\n  options:\n    additionalProperties:\n      doSample: true\n"
        "---\nuser:\nhi\n",
        6,
        "warning",
        "'additionalProperties.doSample' is not used by the workbench and will be ignored; under "
        "additionalProperties only repetitionPenalty is used",
    ),
    (
        "unknown-option",
        "---\nname: a\nmodel:\n  options:\n    additionalProperties:\n"
        "      repetition_penalty: 1.2\n---\nuser:\nhi\n",
        6,
        "warning",
        "write 'additionalProperties.repetitionPenalty'",
    ),
    (
        "unknown-option",
        "---\nname: a\nmodel:\n  options:\n    frequency_penalty: 0.5\n---\nuser:\nhi\n",
        5,
        "warning",
        "write 'frequencyPenalty'",
    ),
    (
        "invalid-option",
        "---\nname: a\nmodel:\n  options:\n    frequencyPenalty: 3\n---\nuser:\nhi\n",
        5,
        "warning",
        "model option 'frequencyPenalty' cannot be used: frequency_penalty must be between -2 "
        "and 2, got 3.0",
    ),
    (
        "invalid-option",
        "---\nname: a\nmodel:\n  options:\n    additionalProperties:\n"
        "      repetitionPenalty: many\n---\nuser:\nhi\n",
        6,
        "warning",
        "'additionalProperties.repetitionPenalty' cannot be used: repetition_penalty cannot be",
    ),
    (
        "invalid-option",
        "---\nname: a\nmodel:\n  options:\n    temperature: -1\n---\nuser:\nhi\n",
        5,
        "warning",
        "temperature must be ≥ 0",
    ),
    (
        "self-consistency",
        "---\nname: a\nmetadata:\n  samples: 1\n  answer_pattern: '(\\d+)'\n---\nuser:\nhi\n",
        4,
        "warning",
        "at least 2",
    ),
    (
        "self-consistency",
        "---\nname: a\nmetadata:\n  samples: 5\n---\nuser:\nhi\n",
        4,
        "warning",
        "needs answer_pattern",
    ),
    (
        "self-consistency",
        "---\nname: a\nmetadata:\n  samples: 5\n  answer_pattern: '(unclosed'\n---\nuser:\nhi\n",
        4,
        "warning",
        "answer_pattern is not a valid regex",
    ),
    (
        "self-consistency",
        "---\nname: a\nmodel:\n  options:\n    temperature: 0\nmetadata:\n  samples: 3\n"
        "  answer_field: answer\n---\nuser:\nhi\n",
        5,
        "warning",
        "temperature 0",
    ),
    (
        "dashes-in-front-matter",
        "---\nname: a\ndescription: before --- after\n---\nuser:\nhi\n",
        None,
        "info",
        "'---' inside the front matter",
    ),
]


@pytest.mark.parametrize(
    ("code", "text", "line", "severity", "phrase"),
    CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)],
)
def test_lint_code(code: str, text: str, line: int | None, severity: str, phrase: str) -> None:
    issues = lint(parse_prompt(text))
    matching = [i for i in issues if i.code == code]
    assert len(matching) == 1, issues
    issue = matching[0]
    assert issue.line == line
    assert issue.severity == severity
    assert phrase in issue.message
    # every case is minimal: nothing else is reported
    assert [i.code for i in issues] == [code], issues


def test_clean_file_has_no_issues() -> None:
    assert lint(parse_prompt(CLEAN)) == []


def test_clean_files_of_every_shape(prompt_text: PromptText) -> None:
    clean = [
        prompt_text(),
        prompt_text(body="{{ text }}", model={"apiType": "completion"}),
        prompt_text(
            body="system:\nS\n{% for e in examples %}\nuser:\n{{ e.q }}\nassistant:\n{{ e.a }}\n"
            "{% endfor %}\nuser:\n{{ text }}\n",
            inputs={
                "text": {"kind": "string", "default": "x"},
                "examples": {"kind": "array", "default": [{"q": "1", "a": "2"}]},
            },
            metadata={"technique": ["few-shot", "role"]},
        ),
        prompt_text(
            model={"options": {"temperature": 0.7, "maxOutputTokens": 64}},
            metadata={"technique": "self-consistency", "samples": 5, "answer_pattern": r"(\d+)"},
        ),
        prompt_text(body="user:\nAnswer in JSON.\n{{ text | tojson }}\n"),
    ]
    for text in clean:
        assert lint(parse_prompt(text)) == [], text


@pytest.mark.parametrize(
    "body",
    [
        'user:\nReply like {% raw %}{{ "answer": 1 }}{% endraw %}\n{{ text }}\n',
        'user:\n{% raw %}\n{{ {"answer": 1} }}\n{% endraw %}\n{{ text }}\n',
        "user:\nA literal {% raw %}{#{% endraw %} sign\n{{ text }}\n",
    ],
    ids=["json-in-raw-inline", "json-in-raw-block", "comment-start-in-raw"],
)
def test_following_the_advice_silences_the_warning(body: str, prompt_text: PromptText) -> None:
    """braces-as-jinja and jinja-comment tell people to use {% raw %}; doing so must be clean."""
    pf = parse_prompt(prompt_text(body=body))
    assert lint(pf) == []


def test_every_option_of_the_table_lints_clean(prompt_text: PromptText) -> None:
    """What MODEL_OPTIONS says is used passes lint, and reaches the parameters of a run."""
    options = {
        "temperature": 0.7,
        "maxOutputTokens": 64,
        "topP": 0.9,
        "topK": 40,
        "seed": 3,
        "stopSequences": ["END"],
        "frequencyPenalty": 0.5,
        "presencePenalty": -0.5,
        "additionalProperties": {"repetitionPenalty": 1.1},
    }
    assert {o.name.split(".")[0] for o in MODEL_OPTIONS} == set(options)
    assert lint(parse_prompt(prompt_text(model={"options": options}))) == []


def test_self_consistency_reports_every_problem() -> None:
    text = "---\nname: a\nmetadata:\n  samples: 1\n---\nuser:\nhi\n"
    messages = [i.message for i in lint(parse_prompt(text))]
    assert len(messages) == 2
    assert any("at least 2" in m for m in messages)
    assert any("answer_pattern" in m for m in messages)


@pytest.mark.parametrize("samples", ["many", True, 0, -3])
def test_self_consistency_samples_must_be_a_whole_number(samples: object) -> None:
    text = (
        f"---\nname: a\nmetadata:\n  samples: {samples!r}\n  answer_field: x\n---\nuser:\nhi\n"
    ).replace("True", "true")
    codes = [(i.code, i.line) for i in lint(parse_prompt(text))]
    assert codes == [("self-consistency", 4)]


def test_issues_sorted_by_line() -> None:
    text = "---\nname: a\nmetadata:\n  technique: nope\n---\nsystem:\n\nuser:\n{{ x }}\n"
    issues = lint(parse_prompt(text))
    assert [(i.code, i.line) for i in issues] == [
        ("unknown-technique", 4),
        ("empty-section", 6),
        ("undeclared-variable", 9),
    ]


def test_issue_str() -> None:
    assert str(LintIssue("x", "msg", 3)) == "line 3: warning: msg"
    assert str(LintIssue("x", "msg", None, "info")) == "info: msg"
