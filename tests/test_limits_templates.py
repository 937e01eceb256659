"""Hostile prompt files are refused in bounded time and memory, with one line naming the limit.

Each payload runs in a child process under tests/limits.py's caps: before the limits, these
templates rendered for minutes or gigabytes, and the front-matter bombs took over a minute to
parse, lint or preview. Through every door: parsing and rendering, `workbench prompts render`
and `lint`, and importing a file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import PromptText
from limits import Bounded, run_bounded

from workbench.cli import main

TEXT = "more than 1,000,000 characters of text"
DIGITS = "number of more than 4,300 digits"
STEPS = "more than 100,000 steps"

BIG = "{% set big = 'x' * 900000 %}"
LITERAL_BOMB = (
    "{% set a = ['xxxxxxxxxx'] %}"
    + "{% set a = [a, a, a, a, a, a, a, a, a, a] %}" * 12
    + "{{ a|length }}"
)

# (id, template body, the limit the refusal names)
TEMPLATE_BOMBS = [
    ("center", "{{ 'x'|center(10**9) }}", TEXT),
    ("string-times", "{{ 'a' * 10**9 }}", TEXT),
    ("power", "{{ 7 ** (10**7) }}", DIGITS),
    ("lipsum", "{{ lipsum(n=10**6) }}", TEXT),
    (
        "nested-loops",
        "{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}",
        STEPS,
    ),
    ("method-center-in-loop", "{% for i in range(3) %}{{ 'x'.center(10**9) }}{% endfor %}", TEXT),
    ("indent", "{{ 'x\\ny'|indent(10**9) }}", TEXT),
    ("replace", "{{ ('a' * 1000)|replace('a', 'b' * 100000) }}", TEXT),
    ("printf-width", "{{ '%0999999999d' % 1 }}", TEXT),
    ("format-width", "{{ '{:>1000000000}'.format(1) }}", TEXT),
    ("tojson-indent", "{{ range(10)|list|tojson(indent=10**9) }}", TEXT),
    ("slice", "{{ range(100)|slice(10**9)|list }}", TEXT),
    ("list-literals-nested", LITERAL_BOMB, TEXT),
    (
        "doubling-in-a-namespace",
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s|length }}",
        TEXT,
    ),
    (
        "macro-calling-itself-twice",
        "{% macro m(n) %}{% if n %}{{ m(n-1) }}{{ m(n-1) }}{% endif %}{% endmacro %}{{ m(40) }}",
        # 100,000 macro calls take about 2 s on an idle core, so on a busy machine the clock
        # can stop it first: either limit is a clear refusal.
        (STEPS, "more than 2 seconds to render"),
    ),
    ("macro-without-end", "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "nests too deeply"),
    (
        "text-of-a-block",
        BIG + "{% set t %}{{ big }}{{ big }}{% endset %}{{ t|length }}",
        TEXT,
    ),
    (
        "output",
        "{% for i in range(99999) %}" + "y" * 1000 + "{% endfor %}",
        TEXT + " (the limit for one prompt) in the output",
    ),
    (
        "fresh-values-piling-up",
        "{{ range(100000)|map('center', 900000)|join }}",
        "more than 10,000,000 characters of values along the way",
    ),
    ("wordwrap-long-word", "{{ ('x' * 999000)|wordwrap(1) }}", "more than 2 seconds to render"),
    (
        "pprint-deep",
        "{% set a = 'x y ' * 200000 %}" + "{% set a = [a] %}" * 200 + "{{ a|pprint|length }}",
        "more than 2 seconds to render",
    ),
    (
        "slow-loop",  # each step is quick, but the list grows: only the clock stops it
        "{% set ns = namespace(l=[]) %}{% for i in range(99999) %}{% set ns.l = ns.l + [i] %}"
        "{% endfor %}{{ ns.l|length }}",
        "more than 2 seconds to render",
    ),
]

ALIAS_BOMB = (
    "---\nname: bomb\ninputs:\n  x:\n    kind: object\n    default:\n"
    '      a: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(f"      b{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 9))
    + "---\nuser:\n{{ x }}\n"
)
DEEP_YAML = (
    "---\nname: deep\ninputs:\n  x:\n    default: "
    + "[" * 20000
    + "]" * 20000
    + "\n---\nuser:\n{{ x }}\n"
)
MANY_TAGS = "---\nname: long\ninputs:\n  x: {default: hi}\n---\nuser:\n" + "{{ x }}\n" * 120000

# (id, file text, the limit the refusal names, its file line)
FILE_BOMBS = [
    ("yaml-alias-bomb", ALIAS_BOMB, "holds more than 10,000 values", 11),
    ("yaml-deep", DEEP_YAML, "nests more than 50 levels deep", 5),
    ("many-tags", MANY_TAGS, "more than 20,000 pieces of Jinja syntax", 3340),
]


def bomb_file(body: str) -> str:
    return "---\nname: bomb\ninputs:\n  x: {default: hi}\n---\nuser:\n" + body + "\n"


PARSE_AND_RENDER = """
from pathlib import Path
from workbench.errors import WorkbenchError
from workbench.templates import parse_prompt
try:
    parse_prompt(Path({path!r}).read_text(encoding="utf-8"), "bomb.prompty").render()
    print("rendered")
except WorkbenchError as exc:
    print(exc)
"""

CLI = """
from workbench.cli import main
code = main({argv!r})
print(f"exit {{code}}")
"""


def assert_refused(result: Bounded, *phrases: str | tuple[str, ...]) -> None:
    """Refused within bounds, naming every phrase (a tuple: any one of its alternatives)."""
    assert result.within_bounds, result
    for phrase in phrases:
        alternatives = phrase if isinstance(phrase, tuple) else (phrase,)
        assert any(a in result.stdout + result.stderr for a in alternatives), result


@pytest.mark.parametrize(
    ("case", "body", "limit"), TEMPLATE_BOMBS, ids=[c[0] for c in TEMPLATE_BOMBS]
)
def test_template_bombs_are_refused_at_render_within_bounds(
    case: str, body: str, limit: str | tuple[str, ...], tmp_path: Path
) -> None:
    path = tmp_path / "bomb.prompty"
    path.write_text(bomb_file(body), encoding="utf-8")
    result = run_bounded(PARSE_AND_RENDER.format(path=str(path)))
    where = "bomb.prompty: " if case == "output" else "bomb.prompty, line 7: "  # not one line
    assert_refused(result, where + "template", limit)
    assert result.stdout.count("\n") == 1


@pytest.mark.parametrize(
    ("case", "text", "limit", "line"), FILE_BOMBS, ids=[c[0] for c in FILE_BOMBS]
)
def test_file_bombs_are_refused_at_parse_within_bounds(
    case: str, text: str, limit: str, line: int, tmp_path: Path
) -> None:
    path = tmp_path / "bomb.prompty"
    path.write_text(text, encoding="utf-8")
    result = run_bounded(PARSE_AND_RENDER.format(path=str(path)))
    assert_refused(result, f"bomb.prompty, line {line}: ", limit)


@pytest.mark.parametrize(
    ("case", "body", "limit"),
    [c for c in TEMPLATE_BOMBS if c[0] in ("center", "nested-loops", "list-literals-nested")],
    ids=["center", "nested-loops", "list-literals-nested"],
)
def test_cli_render_of_a_saved_bomb_is_one_error_line_within_bounds(
    case: str, body: str, limit: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bomb.prompty"
    path.write_text(bomb_file(body), encoding="utf-8")
    assert main(["prompts", "save", str(path)]) == 0  # saving is bounded: it never renders
    capsys.readouterr()
    result = run_bounded(CLI.format(argv=["prompts", "render", "bomb"]))
    assert_refused(result, "exit 1", limit)
    assert result.stderr.startswith("error: bomb@1, line ")  # the stored file's line
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("case", "text", "limit", "line"), FILE_BOMBS, ids=[c[0] for c in FILE_BOMBS]
)
@pytest.mark.parametrize("command", ["lint", "import"])
def test_cli_lint_and_import_of_a_file_bomb_are_one_error_line_within_bounds(
    command: str, case: str, text: str, limit: str, line: int, tmp_path: Path
) -> None:
    path = tmp_path / "bomb.prompty"
    path.write_text(text, encoding="utf-8")
    argv = ["prompts", "lint", str(path)] if command == "lint" else ["import", str(path)]
    result = run_bounded(CLI.format(argv=argv))
    where = f"bomb.prompty, line {line}: " if command == "lint" else f"bomb.prompty: line {line}: "
    assert_refused(result, "exit 1", where, limit)
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("error: ")


def test_an_imported_template_bomb_is_refused_when_rendered(
    tmp_path: Path, prompt_text: PromptText
) -> None:
    """Import checks the file, not every input it could be given; the render is what's bounded."""
    path = tmp_path / "bomb.prompty"
    path.write_text(prompt_text("bomb", body="user:\n{{ text * 10**9 }}\n"), encoding="utf-8")
    code = f"""
from workbench.cli import main
print("import", main(["import", {str(path)!r}]))
print("render", main(["prompts", "render", "bomb"]))
"""
    result = run_bounded(code)
    assert_refused(result, "import 0", "render 1", "'hello' * 1000000000", TEXT)
    assert result.stderr.startswith("error: bomb@1, line ")


def test_the_bounded_child_reports_its_own_memory_not_its_parents() -> None:
    # Linux carries ru_maxrss from the forking parent over exec; a pytest worker holding a model
    # made every child look 1.2 GB large. The child's report must not see this ballast.
    ballast = bytearray(300 * 1024 * 1024)
    ballast[::4096] = b"\1" * len(ballast[::4096])
    result = run_bounded("print('ok')")
    assert result.peak_mb is not None and result.peak_mb < 200, result
    del ballast
