"""The template editor's service: file lines mapped to lines of the template box, lint and
errors placed there, `{{ tone }}` typed but never given a value, and an untouched draft that
builds the saved file exactly."""

from __future__ import annotations

import pytest
from conftest import PromptText

from workbench import compose, editor
from workbench.datasets import Dataset, DatasetError, check_columns
from workbench.errors import MissingVariablesError, PromptFileError
from workbench.library import Library
from workbench.lint import lint
from workbench.runner import required_variables
from workbench.templates import parse_prompt


def test_template_line_counts_from_the_line_after_the_front_matter(
    prompt_text: PromptText,
) -> None:
    pf = parse_prompt(prompt_text(body="system:\nhi\nuser:\n{{ text }}\n"))
    assert pf.template_line(pf.body_line) == 1
    assert pf.template_line(pf.body_line + 3) == 4
    assert pf.template_line(2) is None  # the front matter
    assert pf.template_line(None) is None


@pytest.mark.parametrize(
    ("body", "box_line"),
    [
        ("user:\nTranslate {{ text }\n", 2),
        ("\n\nuser:\n{{ text }}\n{% if %}\n", 5),  # leading blank lines count in the box
        ("user:\n{{ text }}\n{% for x in y %}\n", 3),  # unclosed block: reported at the end
    ],
)
def test_syntax_errors_carry_the_box_line(
    prompt_text: PromptText, body: str, box_line: int
) -> None:
    with pytest.raises(PromptFileError) as info:
        parse_prompt(prompt_text(body=body))
    exc = info.value
    assert exc.template_line is not None
    assert editor.error_finding(exc, body).line == box_line
    assert exc.line is not None and exc.line > box_line  # the CLI keeps the file's line
    assert f"line {exc.line}:" in str(exc)


def test_render_errors_carry_the_box_line(prompt_text: PromptText) -> None:
    pf = parse_prompt(
        prompt_text(
            body="user:\nhi\n{{ text.missing }}\n",
            inputs={"text": {"kind": "object", "default": {}}},
        )
    )
    with pytest.raises(PromptFileError) as info:
        pf.render()
    assert info.value.template_line == 3
    assert info.value.line == pf.body_line + 2


@pytest.mark.parametrize(
    ("built", "box", "line", "expected"),
    [
        ("a\nb\nc", "a\nb\nc", 2, 2),
        ("system:\n{{ persona }}\na\nb", "system:\na\nb", 4, 3),  # a line the build added above
        ("system:\n{{ persona }}\na\nb", "system:\na\nb", 2, 1),  # the added line itself
        ("a\nb", "a\n{{ trigger }}\nb", 2, 3),  # a line the build dropped
        ("x\na", "a", 1, 1),
        ("a\nb", "a\nb", None, None),
    ],
)
def test_box_line_follows_lines_the_build_added_or_dropped(
    built: str, box: str, line: int | None, expected: int | None
) -> None:
    assert compose.box_line(built, box, line) == expected


def test_lint_findings_name_box_lines_and_file_lines(prompt_text: PromptText) -> None:
    body = "system:\nhi\nuser:\n{{ text }} {{ tone }}\n"
    pf = parse_prompt(
        prompt_text(body=body, inputs={"text": {"default": "x"}, "spare": {"default": "y"}})
    )
    found = {f.message.split(" ")[1]: f for f in editor.lint_findings(pf, body)}
    tone = found["'tone'"]
    assert (tone.severity, tone.line, tone.file_line) == ("warning", 4, None)
    assert str(tone).startswith("template line 4: variable 'tone' is used but not declared")
    assert "type a sample value for it under Sample inputs" in str(tone)
    spare = found["'spare'"]  # declared in the front matter: the file's line
    assert spare.line is None and spare.file_line == pf.line_of("inputs", "spare")
    assert str(spare).startswith(f"prompt file line {spare.file_line}: input 'spare'")


def test_numbered_view_marks_the_lines_named() -> None:
    findings = [
        editor.Finding("warning", "w", line=2),
        editor.Finding("error", "e", line=2),
        editor.Finding("info", "i", line=3),
        editor.Finding("warning", "front", file_line=5),
    ]
    assert editor.numbered("a\nb\nc\nd\n", findings) == ("a\nb    <-- error\nc    <-- info\nd")


def test_a_typed_variable_without_a_value_is_flagged_not_rendered_empty(
    prompt_text: PromptText,
) -> None:
    base = parse_prompt(prompt_text(name="t", body="user:\n{{ text }}\n"))
    box = "user:\n{{ text }}\nTone: {{ tone }}\n"
    draft = compose.read_draft(base).edit(body=box)
    checked = editor.check(base, draft)
    assert checked.file is not None and "tone" not in checked.file.inputs  # no empty default
    assert checked.rendered is None
    assert [(f.severity, f.line) for f in checked.findings] == [("error", 3), ("warning", 3)]
    assert "'tone' has no value" in checked.findings[0].message
    assert [i.code for i in lint(checked.file)] == ["undeclared-variable"]

    given = editor.check(base, draft.edit(values={**draft.values, "tone": "formal"}))
    assert given.findings == ()
    assert given.file is not None and given.file.inputs["tone"].default == "formal"
    assert given.rendered is not None and "Tone: formal" in given.rendered.messages[-1].content


def test_build_errors_name_the_box_line_even_after_a_persona_line_was_added(
    prompt_text: PromptText,
) -> None:
    base = parse_prompt(prompt_text(name="t", body="system:\nhi\nuser:\n{{ text }}\n"))
    box = "system:\nhi\nuser:\n{{ text }\n"
    checked = editor.check(base, compose.read_draft(base).edit(body=box, persona="Be brief."))
    assert [(f.severity, f.line) for f in checked.findings] == [("error", 4)]
    assert str(checked.findings[0]).startswith("template line 4: template syntax error")


IMPORTED = {
    "number default under kind string": "inputs:\n  text:\n    default: 5\n",
    "boolean default": "inputs:\n  text:\n    kind: boolean\n    default: true\n",
    "no default": "inputs:\n  text:\n    kind: string\n",
    "example shorthand": "inputs:\n  text: an example\n",
    "list of inputs": "inputs:\n  - name: text\n    default: hi\n",
    "undeclared": "",
    "examples with number labels": "inputs:\n  text:\n    default: hi\n  examples:\n"
    "    kind: array\n    default:\n    - {input: good, output: 1}\n"
    "    - {input: bad, output: 0}\n",
}


@pytest.mark.parametrize("front", IMPORTED.values(), ids=IMPORTED.keys())
def test_an_untouched_draft_builds_the_saved_file(front: str) -> None:
    """What the page gives back for an untouched form: every value as the text it showed."""
    body = (
        "{% for e in examples %}{{ e.input }}: {{ e.output }}\n{% endfor %}"
        if "examples" in front
        else ""
    )
    base = parse_prompt(
        f"---\nname: imp\ndescription: d\n{front}---\nuser:\n{body}{{{{ text }}}}\n"
    )
    draft = compose.read_draft(base)
    shown = {k: compose.form_text(v) for k, v in draft.values.items()}
    built = compose.build(base, draft.edit(values=shown))
    assert compose.changes(base, built) == ""


def test_every_runner_refuses_a_saved_variable_without_a_value(
    library: Library, prompt_text: PromptText
) -> None:
    """Saved from the editor with nothing typed for `{{ tone }}`: a dataset (Compare, the
    CLI's --dataset) needs a tone column, a single render (Playground, CLI) names it missing."""
    base = parse_prompt(prompt_text(name="t", body="user:\n{{ text }}\n"))
    draft = compose.read_draft(base).edit(body="user:\n{{ text }} {{ tone }}\n")
    version = library.save(compose.apply_draft(base, draft)).version
    assert required_variables(version) == ["tone"]
    rows = Dataset("reviews.csv", ("text",), ({"text": "fine"},))
    with pytest.raises(DatasetError, match="needs column tone"):
        check_columns(rows, {version.ref: required_variables(version)}, {})
    with pytest.raises(MissingVariablesError, match="missing variable: tone"):
        version.file.render({"text": "fine"})
