"""`workbench eval --config promptfooconfig.yaml`: promptfoo's config format, run offline.

Most tests use promptfoo's `echo` provider (the answer is the rendered prompt), so every
verdict is known and no model loads; one runs the tiny model as `workbench:default`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from workbench.cli import main
from workbench.promptfoo_config import (
    PromptfooConfigError,
    UnsupportedConfigError,
    load_config,
)
from workbench.runs import list_runs
from workbench.workspace import open_library

DATA = REPO_ROOT / "tests" / "data" / "promptfoo"
ECHO = DATA / "echo" / "promptfooconfig.yaml"
Result = tuple[int, str, str]
Cli = Callable[..., Result]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    def run(*args: object) -> Result:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _write(folder: Path, text: str, name: str = "promptfooconfig.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_echo_suite_runs_every_prompt_and_test(cli: Cli, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    code, out, err = cli("eval", "--config", ECHO, "--output", report)
    assert code == 0, err
    # inline, two prompts from one text file, and a JSON chat file; 2 inline + 2 CSV tests
    lines = [line for line in out.splitlines() if "· echo" in line]
    assert len(lines) == 4 and all(line.split()[4:6] == ["4", "4"] for line in lines)
    assert "16/16 passed (100%) · 4 prompts, 1 provider, 4 tests" in out
    assert "ignored: sharing" in err and "ignored: outputPath (use --output" in err
    data = json.loads(report.read_text())
    outputs = {v["ref"].split(" ")[0]: v["results"] for v in data["versions"]}
    assert outputs["echo-1.trials@1"][0]["output"] == "Summarise: cats"
    # a file:// var is read (trimmed), defaultTest vars fill the rest
    assert outputs["echo-2.trials@1"][1]["output"] == "Write about the deep ocean in a plain tone."
    # a line of the prompt that reads like a role stays text
    assert outputs["echo-3.trials@1"][0]["output"] == "user: cats?"
    # a JSON chat prompt echoes its rendered messages as JSON, as promptfoo does
    chat = json.loads(outputs["echo-4.trials@1"][0]["output"])
    assert chat == [
        {"role": "system", "content": "You answer in a plain tone."},
        {"role": "user", "content": "Tell me about cats."},
    ]
    # each test has its own assertions (defaultTest's first); CSV __expected columns too
    first = outputs["echo-1.trials@1"]
    assert [s["metric"] for s in first[0]["scores"]] == ["icontains", "contains", "not-contains"]
    assert [s["metric"] for s in first[3]["scores"]] == ["icontains", "icontains-any", "regex"]
    assert [s["metric"] for s in first[2]["scores"]] == ["icontains", "contains", "not-icontains"]
    # the prompts are hidden versions: not in the library's list
    assert [p.name for p in open_library().list_prompts()] == []
    assert len(list_runs(open_library().store)) == 4


def test_failures_are_listed_and_the_minimum_pass_rate_holds(cli: Cli, tmp_path: Path) -> None:
    config = _write(
        tmp_path / "suite",
        "prompts: ['Hello {{name}}']\nproviders: [echo]\n"
        "tests:\n"
        "  - description: greets\n    vars: {name: Ada}\n    assert:\n"
        "      - {type: equals, value: Hello Ada}\n"
        "  - description: wrong on purpose\n    vars: {name: Bob}\n    assert:\n"
        "      - {type: starts-with, value: Bye}\n"
        "      - {type: contains, value: Bob}\n"
        "  - vars: {name: Cy}\n    threshold: 0.5\n    assert:\n"
        "      - {type: starts-with, value: Bye}\n"
        "      - {type: contains, value: Cy}\n",
    )
    code, out, err = cli("eval", "--config", config, "--min-pass-rate", "0.9")
    assert code == 3
    assert "2/3 passed (67%)" in out
    fails = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 1 and "tests[1] 'wrong on purpose'" in fails[0]
    assert "starts-with" in fails[0] and "pass rate below 90%" in err


def test_json_output_and_array_vars_expand(cli: Cli, tmp_path: Path) -> None:
    config = _write(
        tmp_path / "arrays",
        "description: arrays\nprompts:\n  - 'Translate to {{language}}: {{input}}'\n"
        "providers: [echo]\n"
        "tests:\n  - vars:\n      language: [French, German]\n      input: [Hi, Bye]\n"
        "    assert: [{type: contains, value: '{{language}}'}]\n",
    )
    code, out, err = cli("eval", "--config", config, "--json")
    assert code == 0, err
    data = json.loads(out)
    (version,) = data["versions"]
    assert version["rows"] == 4 and version["pass_rate"] == 1.0
    assert [r["output"] for r in version["results"]] == [
        "Translate to French: Hi",
        "Translate to French: Bye",
        "Translate to German: Hi",
        "Translate to German: Bye",
    ]
    assert data["promptfoo"]["description"] == "arrays"


def test_unsupported_items_are_all_listed_and_nothing_runs(cli: Cli) -> None:
    config = DATA / "unsupported" / "promptfooconfig.yaml"
    code, out, err = cli("eval", "--config", config)
    assert code == 1 and out == ""
    assert "nothing was run; 6 unsupported items" in err
    for expected in (
        "line 4: prompts[1] (prompt.py): prompt functions run code",
        "line 7: providers[1]: anthropic:messages:claude-sonnet-4: anthropic is a hosted service",
        "providers[2]: openai:chat:gpt-4.1-mini: needs a hosted service (api.openai.com)",
        "tests[1].assert[0]: javascript assertions: runs JavaScript",
        "tests[2].options.transform: output transforms run JavaScript",
        "line 28: redteam: red-team configs",
    ):
        assert expected in err, expected
    assert "Traceback" not in err
    assert list_runs(open_library().store) == []


def test_skip_unsupported_runs_the_rest_and_says_what_was_left_out(cli: Cli) -> None:
    config = DATA / "unsupported" / "promptfooconfig.yaml"
    code, out, err = cli("eval", "--config", config, "--skip-unsupported")
    assert code == 0, err
    assert err.count("skipped (unsupported):") == 6
    assert "1/1 passed (100%) · 1 prompt, 1 provider, 1 test" in out


def test_a_file_outside_the_config_folder_is_refused(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli("eval", "--config", DATA / "outside" / "promptfooconfig.yaml")
    assert code == 1
    assert err.startswith("error: promptfooconfig.yaml, line 6: tests[0].vars.text: ")
    assert "file://../secret.txt points outside the config's folder" in err
    assert len(err.strip().splitlines()) == 1
    # an absolute path elsewhere and a symlink out are refused the same way
    (tmp_path / "elsewhere.txt").write_text("x")
    folder = tmp_path / "suite"
    _write(folder, f"prompts: [file://{tmp_path / 'elsewhere.txt'}]\nproviders: [echo]\n")
    with pytest.raises(PromptfooConfigError, match=r"line 1: prompts\[0\]: .* outside"):
        load_config(folder / "promptfooconfig.yaml")
    (folder / "link.txt").symlink_to(tmp_path / "elsewhere.txt")
    _write(folder, "prompts: [file://link.txt]\nproviders: [echo]\n")
    with pytest.raises(PromptfooConfigError, match=r"file://link\.txt points outside"):
        load_config(folder / "promptfooconfig.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prompts: [a]\n", "no providers: name one, e.g. workbench:default or echo"),
        ("providers: [echo]\n", "prompts: the config has no prompts"),
        ("prompts: [a]\nproviders: [echo]\ntests: [{assert: [{type: contain}]}]\n",
         "line 3: tests[0].assert[0]: unknown assertion type 'contain'; did you mean "
         "'contains'?"),
        ("prompts: ['{{ x ']\nproviders: [echo]\n", "prompts[0]"),
        ("prompts: [a]\nproviders: [echo]\ntests:\n  - assert:\n      - {type: levenshtein}\n",
         "line 4: tests[0]: levenshtein compares with an expected answer: give a var 'expected'"),
        ("prompts: [a\n", "promptfooconfig.yaml, line 2: malformed YAML: did not find"),
        ("- a\n", "a promptfoo config is a mapping"),
        ("prompts: [a]\nproviders: [{id: echo, config: {temperature: -1}}]\n",
         "providers[0].config"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line(cli: Cli, tmp_path: Path, text: str, message: str) -> None:
    config = _write(tmp_path / "bad", text)
    code, out, err = cli("eval", "--config", config)
    assert code == 1 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_a_var_no_test_gives_renders_empty_with_a_note(cli: Cli, tmp_path: Path) -> None:
    config = _write(
        tmp_path / "missing",
        "prompts: ['[{{a}}|{{b}}]']\nproviders: [echo]\n"
        "tests:\n  - vars: {a: 1}\n    assert: [{type: equals, value: '[1|]'}]\n",
    )
    code, _, err = cli("eval", "--config", config)
    assert code == 0, err
    assert "note: 1 test gives no value for {{ b }}: it renders empty, as in promptfoo" in err


def test_csv_tests_with_expected_columns(tmp_path: Path) -> None:
    folder = tmp_path / "csv"
    _write(
        folder,
        "prompt,__expected,__expected2,__description,__metric\n"
        "Paris,Paris,,exact,city\n"
        'red apple,"contains-all:red, apple",not-contains:pear,all,\n'
        'x,similar(0.7):y,"grade:is polite",rubric,\n',
        name="tests.csv",
    )
    _write(folder, "prompts: ['{{prompt}}']\nproviders: [echo]\ntests: file://tests.csv\n")
    plan = load_config(folder / "promptfooconfig.yaml", skip_unsupported=True)
    first, second = plan.tests
    assert first.description == "exact" and first.checks[0].type == "equals"
    assert first.checks[0].metric == "city" and first.vars == {"prompt": "Paris"}
    assert second.checks[0].value == ["red", "apple"] and second.checks[1].negate
    # a model-graded __expected (grade:) needs a model: the echo provider has none
    assert "model-graded needs a model, and the echo provider has none" in plan.skipped[0]
    with pytest.raises(UnsupportedConfigError):
        load_config(folder / "promptfooconfig.yaml")


def test_import_prompts_saves_versions_with_a_note(cli: Cli) -> None:
    code, out, err = cli("eval", "--config", ECHO, "--import-prompts")
    assert code == 0, err
    library = open_library()
    names = [p.name for p in library.list_prompts()]
    assert names == ["echo-1", "echo-2", "echo-3", "echo-4"]
    assert library.get("echo-4").note == "imported from promptfooconfig.yaml"
    assert "imported echo-1@1" in out
    # a second import of the same prompts makes no new versions, and answers from the cache
    code, out, err = cli("eval", "--config", ECHO, "--import-prompts")
    assert code == 0 and [v.number for v in library.versions("echo-1")] == [1]


def test_model_runs_in_place_of_the_providers(cli: Cli) -> None:
    config = DATA / "unsupported" / "promptfooconfig.yaml"
    code, out, err = cli("eval", "--config", config, "--model", "echo", "--skip-unsupported")
    assert code == 0, err
    assert "ignored: providers (replaced by --model echo)" in err
    assert "anthropic" not in err and "1/1 passed" in out


def test_eval_options_that_clash_with_config(cli: Cli) -> None:
    code, _, err = cli("eval", "zero-shot", "--config", ECHO, "--assert", "is-json")
    assert code == 1 and "leave out REFS, --assert" in err
    code, _, err = cli("eval", "zero-shot")
    assert code == 1 and "--dataset" in err


def test_the_default_model_and_echo_side_by_side(tiny_cli: Cli) -> None:
    config = DATA / "tiny" / "promptfooconfig.yaml"
    code, out, err = tiny_cli("eval", "--config", config)
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith("tiny-1.trials@1")]
    assert [line.split(" · ")[1].split()[0] for line in lines] == ["local", "echo"]
    echo = next(line for line in lines if "· echo" in line)
    assert echo.split()[4:6] == ["2", "2"]  # rows and passed: the echo repeats the name
    runs = list_runs(open_library().store)
    assert len(runs) == 2 and "echo" in {r.model for r in runs}
    assert any(r.params.get("max_new_tokens") == 4 for r in runs)


FILTERS = DATA / "filters" / "promptfooconfig.yaml"


def test_load_filter_and_each_providers_prompts(cli: Cli) -> None:
    """promptfoo's `load` (JSON.parse) reads fields of a JSON var; each echo provider runs only
    the prompts its `prompts:` names: a label, a wildcard, a file's prompts by the file's name."""
    code, out, err = cli("eval", "--config", FILTERS, "--json")
    assert code == 0, err
    data = json.loads(out)
    lines = {v["ref"]: [r["output"] for r in v["results"]] for v in data["versions"]}
    assert lines == {
        "filters-1.trials@1 · styled": [
            "Tone: formal; length: brief; text: Hello",
            "Tone: casual; length: long; text: Bye",
        ],
        "filters-2.trials@1 · others": ["Plain: Hello", "Plain: Bye"],
        "filters-3.trials@1 · others": ["First: Hello", "First: Bye"],
        "filters-4.trials@1 · others": ["Second: Hello", "Second: Bye"],
    }
    assert all(v["pass_rate"] == 1.0 for v in data["versions"])
    assert "prompts" not in err  # read, not ignored


@pytest.mark.parametrize(
    ("style", "problem"),
    [
        ("'{tone: formal}'", "load: the value is not JSON (Expecting property name"),
        ("{tone: formal}", "this value is <dict> already: drop '| load'"),
        ("NaN", "load: NaN is not JSON"),
    ],
)
def test_load_refuses_what_json_parse_refuses_before_anything_runs(
    cli: Cli, tmp_path: Path, style: str, problem: str
) -> None:
    config = _write(
        tmp_path / "load",
        "prompts: ['Tone: {{ (style | load).tone }}']\nproviders: [echo]\n"
        f"tests:\n  - vars: {{style: {style}}}\n",
    )
    code, out, err = cli("eval", "--config", config)
    assert code == 1 and out == ""
    assert "prompts[0], with tests[0]" in err and problem in err, err
    assert len(err.strip().splitlines()) == 1
    assert list_runs(open_library().store) == []


def test_load_is_bounded_like_every_filter(tmp_path: Path) -> None:
    deep = "[" * 50_000 + "]" * 50_000
    config = _write(
        tmp_path / "deep",
        "prompts: ['{{ (v | load) | length }}']\nproviders: [echo]\n"
        f"tests:\n  - vars: {{v: '{deep}'}}\n",
    )
    with pytest.raises(PromptfooConfigError, match="nests too deeply"):
        load_config(config)
    # numbers, true/false and null pass through, as JSON.parse reads them
    config = _write(
        tmp_path / "scalars",
        "prompts: ['{{ a | load }} {{ b | load }} {{ c | load }}']\nproviders: [echo]\n"
        "tests:\n  - vars: {a: 3, b: '[1, 2]', c: '\"x\"'}\n",
    )
    assert load_config(config).tests[0].vars == {"a": 3, "b": "[1, 2]", "c": '"x"'}


def _prompts_run(plan_path: Path, **kwargs: object) -> dict[str, list[str]]:
    plan = load_config(plan_path, **kwargs)  # type: ignore[arg-type]
    return {
        provider.label: [p.label for p in plan.prompts if plan.runs(p, provider)]
        for provider in plan.providers
    }


PROVIDER_PROMPTS = """\
prompts:
  - id: file://a.txt
    label: llama_prompt
  - raw: 'B {{x}}'
    label: openai_prompt
  - raw: 'C {{x}}'
    label: Group:one
  - raw: 'D {{x}}'
    label: unused
providers:
  - id: echo
    label: by-label
    prompts: [llama_prompt]
  - id: echo
    label: by-id-and-group
    prompts: ['file://a.txt', Group]
  - id: echo
    label: by-wildcard
    prompts: ['*_prompt', 'Gr*']
  - id: echo
    label: none
    prompts: []
tests:
  - vars: {x: '1'}
"""


def test_a_providers_prompts_follow_promptfoos_matching(tmp_path: Path) -> None:
    folder = tmp_path / "pp"
    (folder / "a.txt").parent.mkdir(parents=True)
    (folder / "a.txt").write_text("A {{x}}\n")
    config = _write(folder, PROVIDER_PROMPTS)
    plan = load_config(config)
    assert _prompts_run(config) == {
        "by-label": ["llama_prompt"],
        "by-id-and-group": ["llama_prompt", "Group:one"],
        "by-wildcard": ["llama_prompt", "openai_prompt", "Group:one"],
        "none": [],  # promptfoo: an empty list runs nothing
    }
    # a prompt no provider runs is left out, and said so; so is a provider with nothing to run
    assert [p.label for p in plan.prompts] == ["llama_prompt", "openai_prompt", "Group:one"]
    assert "not run: 'unused' (no provider's prompts: list names it)" in plan.notes
    assert "none runs none of the prompts left to run" in plan.notes
    # a name that matches no prompt is a mistake, not an empty run
    _write(folder, PROVIDER_PROMPTS.replace("[llama_prompt]", "[lama_prompt]"))
    with pytest.raises(PromptfooConfigError, match=r"line 13: providers\[0\]\.prompts: "):
        load_config(config)


def test_model_runs_the_prompts_the_replaced_providers_ran(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "pp"
    (folder / "a.txt").parent.mkdir(parents=True)
    (folder / "a.txt").write_text("A {{x}}\n")
    config = _write(folder, PROVIDER_PROMPTS.replace("  - id: echo\n    label: none\n", ""))
    config.write_text(config.read_text().replace("    prompts: []\n", ""))
    # the union of the providers' lists: 'unused' is named by none of them
    assert _prompts_run(config, model="echo") == {
        "echo": ["llama_prompt", "openai_prompt", "Group:one"]
    }
    code, out, err = cli("eval", "--config", config, "--model", "echo")
    assert code == 0, err
    assert "3/3 passed" in out and "not run: 'unused'" in err
    # one provider without a list runs every prompt: so does the model in its place
    _write(
        folder,
        "prompts: ['A {{x}}', 'B {{x}}']\nproviders:\n  - openai:gpt-4.1\n"
        "  - {id: ollama:chat:llama3, prompts: ['A {{x}}']}\ntests: [{vars: {x: 1}}]\n",
    )
    assert _prompts_run(config, model="echo") == {"echo": ["A {{x}}", "B {{x}}"]}


def test_a_bare_path_prompt_is_its_file_when_it_exists(tmp_path: Path) -> None:
    """promptfoo's older examples write `prompts: {prompts/x.txt: label}` without file://."""
    folder = tmp_path / "bare"
    (folder / "prompts").mkdir(parents=True)
    (folder / "prompts" / "x.txt").write_text("<s>[INST]{{message}}[/INST]\n")
    config = _write(
        folder,
        "prompts:\n  prompts/x.txt: x_prompt\n  'What is 1/2.5?': plain\n"
        "providers: [{id: echo, prompts: [x_prompt, prompts/x.txt]}, echo]\n"
        "tests: [{vars: {message: hi}}]\n",
    )
    plan = load_config(config)
    first, second = plan.prompts
    assert (first.label, first.id, first.text) == (
        "x_prompt",
        "prompts/x.txt",
        "<s>[INST]{{message}}[/INST]",
    )
    assert second.text == "What is 1/2.5?"  # no such file: text, as written
