"""Front matter is read within bounds: depth, values and text, each alias counted in full.

Small versions of the hostile files; the full-size bombs run under caps in
tests/test_limits_templates.py.
"""

from __future__ import annotations

import pytest
from conftest import PromptText

from workbench import frontmatter
from workbench.errors import PromptFileError, TemplateLimitError
from workbench.lint import lint
from workbench.templates import parse_prompt


def with_default(default: str) -> str:
    return (
        f"---\nname: t\ninputs:\n  x:\n    kind: object\n    default: {default}\n---\n{{{{ x }}}}\n"
    )


def laughs(levels: int, fan_out: int) -> str:
    """Billion laughs: each level an anchored list of `fan_out` aliases to the level below."""
    lines = [f"&l0 [{', '.join(['lol'] * fan_out)}]"]
    lines += [f"&l{i} [{', '.join([f'*l{i - 1}'] * fan_out)}]" for i in range(1, levels)]
    body = "\n".join(f"      - {line}" for line in lines)
    return f"---\nname: t\ninputs:\n  x:\n    default:\n{body}\n---\n{{{{ x|length }}}}\n"


def test_aliases_within_the_budget_load_render_lint_and_round_trip(prompt_text: PromptText) -> None:
    text = (
        "---\nname: t\ninputs:\n  a: {default: &shared [one, two]}\n  b: {default: *shared}\n"
        "---\nuser:\n{{ a|join }} {{ b|join }}\n"
    )
    pf = parse_prompt(text)
    assert pf.render().messages[0].content == "onetwo onetwo"
    assert [i.code for i in lint(pf)] == []
    again = parse_prompt(pf.canonical_text())  # PyYAML's dumper writes the anchor back
    assert "&id001" in pf.canonical_text()
    assert again.canonical_text() == pf.canonical_text()
    parse_prompt(laughs(3, 9))  # 1 + 9 + 81 + 729 values, aliases counted in full


def test_an_alias_bomb_is_refused_with_the_line_where_it_crosses_the_limit() -> None:
    with pytest.raises(TemplateLimitError) as caught:
        parse_prompt(laughs(5, 10), "bomb.prompty")
    assert str(caught.value) == (
        "bomb.prompty, line 9: front matter holds more than 10,000 values, counting each alias "
        "(*name) as the values it stands for (the limit for front matter)"
    )


def test_an_alias_repeating_long_text_counts_its_characters() -> None:
    text = (
        f"---\nname: t\ninputs:\n  a: {{default: &long {'x' * 400_000}}}\n"
        "  b: {default: [*long, *long]}\n---\n{{ a }}{{ b }}\n"
    )
    with pytest.raises(TemplateLimitError, match=r"line 5: front matter holds more than 1,000,000"):
        parse_prompt(text)


def test_an_alias_inside_its_own_anchor_is_refused() -> None:
    with pytest.raises(TemplateLimitError) as caught:
        parse_prompt(with_default("&loop [1, *loop]"))
    assert str(caught.value) == (
        "prompt, line 6: front matter has the alias *loop inside its own anchor's value; a value "
        "cannot contain itself"
    )


def test_nesting_deeper_than_the_limit_is_refused_at_its_line() -> None:
    depth = frontmatter.MAX_DEPTH - 3  # the front matter, inputs and x are three levels
    parse_prompt(with_default("[" * depth + "]" * depth))
    with pytest.raises(TemplateLimitError) as caught:
        parse_prompt(with_default("[" * (depth + 1) + "]" * (depth + 1)))
    assert str(caught.value) == (
        "prompt, line 6: front matter nests more than 50 levels deep (the limit for front matter)"
    )
    with pytest.raises(TemplateLimitError, match="nests more than 50 levels deep"):
        parse_prompt(with_default("[" * 20_000 + "]" * 20_000))


def test_more_values_than_the_limit_are_refused() -> None:
    parse_prompt(with_default("[" + ", ".join(["1"] * 9_000) + "]"))
    with pytest.raises(TemplateLimitError, match="holds more than 10,000 values"):
        parse_prompt(with_default("[" + ", ".join(["1"] * 10_000) + "]"))


def test_a_number_too_long_to_read_is_refused_with_its_line() -> None:
    parse_prompt(with_default("1" * 4300))
    with pytest.raises(PromptFileError) as caught:
        parse_prompt(with_default("1" * 4301))
    assert str(caught.value) == (
        "prompt, line 6: malformed front matter: a number of more than 4,300 digits; quote it to "
        "keep it as text"
    )
    parse_prompt(with_default(f"'{'1' * 5000}'"))


def test_a_date_that_does_not_exist_is_malformed_front_matter() -> None:
    with pytest.raises(PromptFileError, match=r"malformed front matter: month must be in 1\.\.12"):
        parse_prompt(with_default("2024-13-45"))


def test_lines_of_keys_are_still_found() -> None:
    pf = parse_prompt(with_default("[1, 2]"))
    assert pf.line_of("inputs", "x") == 4
    assert pf.line_of("inputs", "missing") == 3
