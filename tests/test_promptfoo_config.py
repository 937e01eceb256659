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
    assert "16/16 passed (100%) · 4 prompts × 1 providers × 4 tests" in out
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
    assert "1/1 passed (100%) · 1 prompts × 1 providers × 1 tests" in out


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
