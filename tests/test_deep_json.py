"""JSON nested past what Python's decoder can recurse into is bad JSON like any other.

`[[[[…` a hundred thousand levels deep is a few hundred kilobytes: a vars file, an uploaded
row, a model's answer or a server's reply can hold it. Each path refuses it the way it refuses
any other bad JSON — one line, or a failed check — never "unexpected RecursionError".
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workbench import json_text
from workbench.answers import extract_answer
from workbench.cli import main
from workbench.datasets import DatasetError, read_dataset
from workbench.scorers import parse_json_output

DEEP = "[" * 100_000 + "]" * 100_000
DEEP_OBJECT = '{"a": ' * 100_000 + "1" + "}" * 100_000


def test_python_itself_cannot_read_it() -> None:
    """The premise: without `json_text`, this is a RecursionError, not a JSONDecodeError."""
    with pytest.raises(RecursionError):
        json.loads(DEEP)


@pytest.mark.parametrize("text", [DEEP, DEEP.encode(), DEEP_OBJECT])
def test_too_deep_is_a_decode_error_saying_so(text: str | bytes) -> None:
    with pytest.raises(json.JSONDecodeError, match="nested too deeply"):
        json_text.loads(text)


def test_a_vars_file_nested_too_deeply_is_one_line(
    tmp_path: Path, builtins: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text('{"name": ' + DEEP + "}", encoding="utf-8")
    assert main(["prompts", "render", "greet", "--vars-file", str(deep)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "deep.json" in err and "nested too deeply" in err
    assert "unexpected" not in err


def test_a_dataset_row_nested_too_deeply_names_its_line(tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"name": "ok"}\n{"name": ' + DEEP + "}\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"rows.jsonl, line 2: not JSON: nested too deeply"):
        read_dataset(rows)


def test_an_answer_nested_too_deeply_fails_its_json_check() -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_json_output(DEEP)
    assert extract_answer("{" + '"x": ' + DEEP + "}", field="x") is None


def test_a_server_reply_nested_too_deeply_names_the_problem() -> None:
    from workbench.backends.openai_wire import WireError, _json

    with pytest.raises(WireError, match="not JSON"):
        _json(DEEP, "a completion")
