"""Test sets: saved like prompt versions, reused by name in `workbench eval`."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from workbench.datasets import Dataset, read_dataset
from workbench.errors import NotFoundError, WorkbenchError
from workbench.store import Store
from workbench.testsets import add_rows, get_test_set, list_test_sets, save_test_set

ROWS = Dataset("x.csv", ("text", "expected"), ({"text": "a", "expected": "A"},))


def test_versions_only_when_rows_change(store: Store) -> None:
    first, created = save_test_set(store, "qa", ROWS, "first")
    assert (first.ref, created, first.rows) == ("qa@1", True, 1)
    again, created = save_test_set(store, "qa", ROWS, "same rows")
    assert (again.ref, created) == ("qa@1", False)
    more = Dataset("x.csv", ROWS.columns, (*ROWS.rows, {"text": "b", "expected": "B"}))
    second, created = save_test_set(store, "qa", more, "one more")
    assert (second.ref, created, second.rows) == ("qa@2", True, 2)
    assert get_test_set(store, "qa@1").rows == ROWS.rows  # old versions never change
    assert get_test_set(store, "qa").name == "qa@2"
    assert [s.ref for s in list_test_sets(store)] == ["qa@2"]


def test_add_rows_appends_a_version(store: Store) -> None:
    info, _ = add_rows(store, "picked", [{"text": "from history", "expected": "X"}])
    assert info.ref == "picked@1"
    info, _ = add_rows(store, "picked", [{"text": "another", "tone": "dry"}])
    data = get_test_set(store, "picked")
    assert info.ref == "picked@2" and data.columns == ("text", "expected", "tone")
    assert [r["text"] for r in data.rows] == ["from history", "another"]


@pytest.mark.parametrize(
    ("name", "ref", "message"),
    [
        ("Bad Name", None, "lowercase"),
        ("qa", "qa@9", "no test set 'qa@9'"),
        ("qa", "nope", "stored: qa"),
        ("qa", "qa@x", "a version is a number"),
    ],
)
def test_mistakes(store: Store, name: str, ref: str | None, message: str) -> None:
    with pytest.raises(WorkbenchError, match=message):
        save_test_set(store, name, ROWS)
        assert ref is not None
        get_test_set(store, ref)


def test_empty_rows_are_refused(store: Store) -> None:
    with pytest.raises(WorkbenchError, match="no rows"):
        save_test_set(store, "qa", Dataset("x", ("text",), ()))
    with pytest.raises(NotFoundError, match="none stored yet"):
        get_test_set(store, "qa")


Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(tiny_cli: Cli) -> Cli:
    return tiny_cli


def test_cli_save_list_show_and_eval_by_name(cli: Cli, tmp_path: Path) -> None:
    source = REPO_ROOT / "examples" / "sentiment-20.csv"
    code, out, err = cli("testsets", "save", "sentiment", source, "-m", "20 labelled reviews")
    assert code == 0, err
    assert out.startswith("saved as sentiment@1 (20 rows")
    code, out, _ = cli("testsets", "save", "sentiment", source)
    assert out.startswith("unchanged: same rows as sentiment@1")
    code, out, _ = cli("testsets", "list", "--json")
    assert [s["ref"] for s in json.loads(out)] == ["sentiment@1"]
    code, out, _ = cli("testsets", "show", "sentiment@1")
    assert list(csv.DictReader(io.StringIO(out))) == [
        {k: str(v) for k, v in r.items()} for r in read_dataset(source).rows
    ]
    small = tmp_path / "two.csv"
    small.write_text("text,expected\ngood,Positive\nbad,Negative\n", encoding="utf-8")
    cli("testsets", "save", "two", small)
    code, out, err = cli(
        "eval",
        "zero-shot-sentiment-chat",
        "--dataset",
        "two@1",
        "--assert",
        "exact-match",
        "--param",
        "max_new_tokens=3",
        "--json",
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["dataset"] == "two@1" and report["versions"][0]["rows"] == 2
    code, _, err = cli(
        "eval", "zero-shot-sentiment-chat", "--dataset", "nothing-here", "--assert", "exact-match"
    )
    assert code == 1 and "no such file" in err and "no test set 'nothing-here'" in err
