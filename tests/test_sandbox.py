"""The bounded sandbox: each limit at its edge, and normal templates render exactly as in Jinja.

The limits are lowered with monkeypatch so the edges are cheap to reach; the hostile payloads
at full size run in tests/test_limits_templates.py, in a child process under caps.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from workbench import sandbox
from workbench.errors import PromptFileError, TemplateLimitError
from workbench.templates import PromptFile, parse_prompt

WORKBENCH = Path(__file__).resolve().parent.parent / "workbench"


def render(source: str, **variables: Any) -> str:
    with sandbox.budget():
        return str(sandbox.compile_template(source).render(**variables))


def refusal(source: str, **variables: Any) -> str:
    with pytest.raises(TemplateLimitError) as caught:
        render(source, **variables)
    return caught.value.problem


def prompt(body: str, **inputs: str) -> PromptFile:
    lines = "".join(f"  {name}: {{default: {value!r}}}\n" for name, value in inputs.items())
    lines = lines or "  x: {default: 1}\n"
    return parse_prompt(f"---\nname: t\ninputs:\n{lines}---\n{body}\n")


# --- normal templates render exactly as in Jinja's own sandbox --------------------------------

JINJA = ImmutableSandboxedEnvironment(
    undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False
)
VARIABLES: dict[str, Any] = {
    "items": [{"input": "Great!", "output": "Positive"}, {"input": "Meh", "output": "Neutral"}],
    "tree": [{"name": "a", "children": [{"name": "b", "children": []}]}],
    "text": "The quick brown fox jumps over the lazy dog. " * 4,
    "n": 7,
    "nothing": None,
}
SAME_AS_JINJA = [
    "{% for e in items %}{{ loop.index }}/{{ loop.length }} {{ e.input }}={{ e.output }}"
    "{{ ',' if not loop.last }}{{ loop.cycle('a', 'b') }}{% else %}none{% endfor %}",
    "{% for e in items if e.output != 'Neutral' %}{{ e.input }}{% endfor %}",
    "{% for a, b in [(1, 2), (3, 4)] %}{{ a + b }}{% endfor %}",
    "{% for node in tree recursive %}{{ node.name }}[{{ loop(node.children) }}]{% endfor %}",
    "{% set ns = namespace(labels=[]) %}{% for e in items %}"
    "{% set ns.labels = ns.labels + [e.output] %}{% endfor %}{{ ns.labels|join(' | ') }}",
    "{% macro row(e) %}{{ e.input }}: {{ caller() }}{% endmacro %}"
    "{% for e in items %}{% call row(e) %}{{ e.output|upper }}{% endcall %}\n{% endfor %}",
    "{% set block %}{{ n }} {{ text|wordcount }}{% endset %}{{ block }}"
    "{% filter upper %}{{ items[0].input }}{% endfilter %}",
    "{{ 'n=' ~ n ~ nothing ~ [1, 2] ~ {'a': 1} }}",
    "{{ 'x'.center(9, '*') }}{{ 'x'.ljust(3) }}|{{ '7'.zfill(3) }}{{ 'a\tb'.expandtabs(4) }}",
    "{{ 'a-b-c'.replace('-', '+', 1) }} {{ ', '.join(['x', 'y']) }}"
    " {{ 'ab'.translate({97: 'z'}) }}",
    "{{ '{} {:>5} {x:.2f}'.format('a', 'b', x=2.5) }} {{ '{a}'.format_map({'a': 1}) }}",
    "{{ '%s=%5d %(k)s' % ('a', 3, ) if false else '%s=%5d' % ('a', 3) }} "
    "{{ '%(k)s!' % {'k': 'v'} }} {{ '%-4s|' % 'ab' }} {{ '%*d' % (4, 2) }}",
    "{{ 'x'|center(7) }}|{{ text|indent(2, first=true) }}|{{ 'a\n\nb'|indent('> ', blank=true) }}",
    "{{ text|wordwrap(20) }}\n{{ text|wordwrap(15, wrapstring='\n  ') }}",
    "{{ text|truncate(20) }} {{ text|truncate(20, end=' [more]') }}",
    "{{ items|tojson }}\n{{ items|tojson(indent=2) }}\n{{ items|pprint }}\n{{ tree|pprint }}",
    "{{ items|map(attribute='output')|join(', ') }} {{ items|join(attribute='input') }}",
    "{{ [[1], [2, 3]]|sum(start=[]) }} {{ [(1,), (2,)]|sum(start=()) }} {{ [1, 2, 3]|sum }}"
    " {{ items|sum(attribute='input', start='') if false else items|length }}",
    "{{ range(7)|batch(3, 0)|list }} {{ range(7)|slice(3, 'x')|list }}",
    "{{ '%s and %s'|format('a', 'b') }} {{ 'a a a'|replace('a', 'b', 2) }}",
    "{{ 'see example.com'|urlize }} {{ 'see example.com'|urlize(target='_blank') }}",
    "{{ items|map(attribute='output')|sort|unique|list }} {{ items|groupby('output')|list }}",
    "{{ 2 ** 10 }} {{ 7 * 6 }} {{ 'ab' * 3 }} {{ [1, 2] * 2 }} {{ (1,) + (2,) }} {{ 7 // 2 }}"
    " {{ 7 % 3 }} {{ -n }} {{ 2 ** -1 }} {{ 10 ** 4299 > 0 }}",
    "{{ dict(a=1, b=[n]) }} {{ cycler('x', 'y').next() }} {{ range(3)|list }}",
    "{{ items[0] }} {{ items|first }} {{ text|length }} {{ n|string * 2 }}",
]


@pytest.mark.parametrize("source", SAME_AS_JINJA)
def test_normal_templates_render_as_in_jinjas_own_sandbox(source: str) -> None:
    assert render(source, **VARIABLES) == JINJA.from_string(source).render(**VARIABLES)


def test_long_words_and_wide_values_still_wrap_and_print() -> None:
    assert render("{{ ('x' * 200000)|wordwrap(80)|length }}") == str(200000 + 200000 // 80 - 1)
    assert render("{{ range(60000)|list|pprint|length }}") == "468889"


def test_lipsum_makes_the_paragraphs_asked_for() -> None:
    assert render("{{ lipsum(3, html=false).split('\n\n')|length }}") == "3"
    html = render("{{ lipsum(2, min=5, max=6) }}")
    assert html.count("<p>") == 2 and len(html.split()) == 10


# --- each limit at its edge -------------------------------------------------------------------


@pytest.fixture
def small_text(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(sandbox, "MAX_TEXT", 100)
    return 100


@pytest.mark.parametrize(
    ("at_limit", "over", "named"),
    [
        ("{{ 'a' * 100 }}", "{{ 'a' * 101 }}", "'a' * 101"),
        ("{{ 'a'|center(100) }}", "{{ 'a'|center(101) }}", "|center(101)"),
        ("{{ 'a'.rjust(100) }}", "{{ 'a'.rjust(101) }}", "rjust()"),
        ("{{ ['a'] * 19 }}", "{{ ['a'] * 20 }}", "<list> * 20"),
        ("{{ 'a' * 60 + 'b' * 40 }}", "{{ 'a' * 60 + 'b' * 41 }}", "+"),
        ("{{ ('a' * 60) ~ ('b' * 40) }}", "{{ ('a' * 60) ~ ('b' * 41) }}", "'~'"),
        ("{{ '%90s' % 'a' }}", "{{ '%101s' % 'a' }}", "'%101s' % 'a'"),  # sized generously
        ("{{ '{:100}'.format('') }}", "{{ '{:101}'.format('') }}", "format '101'"),
        ("{{ '%90s'|format('') }}", "{{ '%101s'|format('') }}", "|format"),
        ("{{ 'ab'|indent(98, first=true) }}", "{{ 'ab'|indent(99, first=true) }}", "|indent(99)"),
        ("{{ 'aa'|replace('a', 'b' * 50) }}", "{{ 'aa'|replace('a', 'b' * 51) }}", "|replace"),
        ("{{ 'aa'.replace('a', 'b' * 50) }}", "{{ 'aa'.replace('a', 'b' * 51) }}", "replace()"),
        ("{{ ('a' * 98).join('xx') }}", "{{ ('a' * 99).join('xx') }}", "join()"),
        ("{{ (['a'] * 19)|join('xxxx') }}", "{{ (['a'] * 19)|join('xxxxxx') }}", "|join"),
        ("{{ [1]|tojson(indent=90) }}", "{{ [[1]]|tojson(indent=60) }}", "|tojson"),
        ("{{ [1, 2]|batch(10, 0)|list }}", "{{ [1, 2]|batch(30, 0)|list }}", "|batch"),
        ("{{ (1).to_bytes(100, 'big')|length }}", "{{ (1).to_bytes(101, 'big') }}", "to_bytes()"),
        ("{{ [['x' * 30]] * 2 }}", "{{ [['x' * 30]] * 3 }}", "*"),
        (
            "{% set a = ['x' * 30] %}{{ [a, a] }}",
            "{% set a = ['x' * 30] %}{{ [a, a, a] }}",
            "a list or mapping written in the template",
        ),
        ("{{ {'k': 'x' * 80} }}", "{{ {'k': 'x' * 95} }}", "a list or mapping written"),
        (
            "{% set ns = namespace() %}{% set ns.a = 'x' * 30 %}{% set ns.b = 'x' * 30 %}",
            "{% set ns = namespace() %}{% set ns.a = 'x' * 40 %}{% set ns.b = 'x' * 40 %}",
            "namespace attribute 'b'",
        ),
        (
            "{% for i in range(2) %}{{ 'x' * 50 }}{% endfor %}",
            "{% for i in range(3) %}{{ 'x' * 50 }}{% endfor %}",
            "the output",
        ),
        (
            "{% macro m() %}{{ 'x' * 100 }}{% endmacro %}{{ m()|length }}",
            "{% macro m() %}{{ 'x' * 100 }}.{% endmacro %}{{ m()|length }}",
            "the output",
        ),
    ],
)
def test_text_limit(small_text: int, at_limit: str, over: str, named: str) -> None:
    render(at_limit)
    message = refusal(over)
    assert message.startswith("template makes more than 100 characters of text")
    assert named in message


def test_lipsum_within_the_text_limit(small_text: int) -> None:
    assert "lipsum(n=1, max=51)" in refusal("{{ lipsum(1, min=50, max=51) }}")
    assert "lipsum(n=100" in refusal("{{ lipsum(100, min=1, max=2) }}")


def test_a_variable_longer_than_the_limit_is_refused_by_name() -> None:
    pf = prompt("user:\n{{ text }}", text="hi")
    assert pf.resolve_variables({"text": "x" * sandbox.MAX_TEXT})
    with pytest.raises(TemplateLimitError, match=r"variable 'text' is more than 1,000,000"):
        pf.render({"text": "x" * (sandbox.MAX_TEXT + 1)})
    with pytest.raises(TemplateLimitError, match=r"variable 'text' is more than 1,000,000"):
        pf.render({"text": ["x" * 500_000, "y" * 500_000]})


@pytest.mark.parametrize(
    ("at_limit", "over", "named"),
    [
        ("{{ 10 ** 4299 }}", "{{ 10 ** 4300 }}", "10 ** 4300"),
        ("{{ (10 ** 2149) * (10 ** 2150) }}", "{{ (10 ** 2150) * (10 ** 2150) }}", "digits> *"),
        (
            "{% set ns = namespace(n=10) %}{% for i in range(11) %}{% set ns.n = ns.n * ns.n %}"
            "{% endfor %}{{ ns.n > 0 }}",
            "{% set ns = namespace(n=10) %}{% for i in range(13) %}{% set ns.n = ns.n * ns.n %}"
            "{% endfor %}{{ ns.n > 0 }}",
            "*",
        ),
    ],
)
def test_number_limit(at_limit: str, over: str, named: str) -> None:
    render(at_limit)
    message = refusal(over)
    assert message.startswith("template computes a number of more than 4,300 digits")
    assert named in message


def test_step_limit_counts_loop_iterations_calls_and_filters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sandbox, "MAX_STEPS", 10)
    render("{% for i in range(9) %}{% endfor %}")  # a call and nine iterations
    render("{% for i in [1, 2, 3] %}{{ i|string|trim }}{% endfor %}{{ i|abs }}", i=1)
    render("{% macro m(n) %}{% if n %}{{ m(n - 1) }}{% endif %}{% endmacro %}{{ m(9) }}")
    for over in (
        "{% for i in range(10) %}{% endfor %}",
        "{% for i in [1, 2, 3] %}{{ i|string|trim }}{% endfor %}{{ i|abs|abs }}",
        "{% macro m(n) %}{% if n %}{{ m(n - 1) }}{% endif %}{% endmacro %}{{ m(10) }}",
        "{% for x in [[[[[[[[[[[1]]]]]]]]]]] recursive %}{{ loop(x) if x is iterable }}"
        "{% endfor %}",
    ):
        assert refusal(over, i=1).startswith("template takes more than 10 steps")


def test_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "MAX_SECONDS", 0.0)
    render("{{ 'no step here' }}")
    assert refusal("{% for i in range(1) %}{% endfor %}").startswith(
        "template takes more than 0 seconds to render"
    )


def test_limit_on_new_values_along_the_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "MAX_MADE", 1000)
    render("{{ range(5)|map('center', 90)|join|length }}")
    message = refusal("{{ range(20)|map('center', 90)|join|length }}")
    assert message.startswith("template makes more than 1,000 characters of values along the way")


def test_token_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "MAX_TOKENS", 40)
    prompt("user:\n" + "{{ x }}" * 7)  # five tokens each, and the text before and after
    with pytest.raises(TemplateLimitError) as caught:
        prompt("user:\n" + "{{ x }}\n" * 3 + "{{ x }}" * 5)
    assert str(caught.value) == (
        "prompt, line 10: template is too long: more than 40 pieces of Jinja syntax (tags, names, "
        "operators, text between tags; the limit for one template)"
    )


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}", "template nests too deeply"),
        ("{% if true %}" * 1000 + "{% endif %}" * 1000, "template nests too deeply"),
        (
            "{% for i in [1] %}" * 25 + "{% endfor %}" * 25,
            "template nests loops or blocks too deeply to compile (too many statically nested "
            "blocks)",
        ),
    ],
    ids=["brackets", "blocks", "loops"],
)
def test_nesting_limits_at_parse(body: str, problem: str) -> None:
    with pytest.raises(TemplateLimitError) as caught:
        prompt("user:\n" + body)
    assert problem in str(caught.value)


def test_recursion_at_render_is_refused_with_its_line() -> None:
    pf = prompt("user:\n{% macro m() %}\n{{ m() }}{% endmacro %}{{ m() }}")
    with pytest.raises(TemplateLimitError, match=r"^prompt, line \d+: template nests too deeply"):
        pf.render()


def test_a_deeply_nested_json_value_is_refused_by_name() -> None:
    pf = parse_prompt("---\nname: t\ninputs:\n  x: {kind: array, default: []}\n---\n{{ x }}\n")
    with pytest.raises(PromptFileError, match="variable 'x' nests too deeply"):
        pf.render({"x": "[" * 100_000 + "]" * 100_000})


@pytest.mark.parametrize(
    ("expression", "problem"),
    [("'{0}'.format()", "tuple index out of range"), ("'{a}'.format_map({})", "'a'")],
)
def test_a_format_without_its_field_is_one_clear_line(expression: str, problem: str) -> None:
    with pytest.raises(PromptFileError) as caught:
        prompt("user:\n{{ " + expression + " }}").render()
    assert str(caught.value) == f"prompt, line 7: rendering failed: {problem}"


def test_every_template_renders_through_the_bounded_sandbox() -> None:
    """Nothing but the sandbox makes a Jinja environment for prompts (the model's own chat
    template, from its model folder, has its own in backends/chat_template.py)."""
    environments = {
        str(path.relative_to(WORKBENCH))
        for path in WORKBENCH.rglob("*.py")
        if re.search(r"\bEnvironment\(|from_string\(|jinja2\.Template\(", path.read_text())
    }
    assert environments == {"sandbox.py", "backends/chat_template.py"}
    assert prompt("user:\n{{ x }}").compiled.environment is sandbox.ENV
