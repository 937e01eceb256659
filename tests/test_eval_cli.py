"""`workbench eval`: pass rates per version, reports for CI, every bad assertion refused early."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from conftest import REPO_ROOT

from workbench.cli import EXIT_BELOW_MIN
from workbench.evaluate import stored_scores
from workbench.runner import Runner
from workbench.runs import list_runs, run_outputs
from workbench.workspace import open_library

Result = tuple[int, str, str]
Cli = Callable[..., Result]
DATASET = REPO_ROOT / "examples" / "sentiment-20.csv"
CHAT, COMPLETION = "zero-shot-sentiment-chat", "zero-shot-sentiment"


@pytest.fixture
def cli(tiny_cli: Cli) -> Cli:
    return tiny_cli


def _small(tmp_path: Path, rows: list[dict[str, str]]) -> Path:
    path = tmp_path / "small.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_two_versions_on_the_labelled_dataset(cli: Cli, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    code, out, err = cli(
        "eval",
        CHAT,
        COMPLETION,
        "--dataset",
        DATASET,
        "--assert",
        "exact-match",
        "--assert",
        "tokens<=4",
        "--param",
        "max_new_tokens=4",
        "--output",
        report,
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["VERSION", "RUN", "ROWS", "PASSED", "PASS"]
    assert lines[2].startswith(f"{CHAT}@1") and lines[3].startswith(f"{COMPLETION}@1")
    assert all(line.split()[2] == "20" for line in lines[2:4])
    data = json.loads(report.read_text())
    assert [v["ref"] for v in data["versions"]] == [f"{CHAT}@1", f"{COMPLETION}@1"]
    for version in data["versions"]:
        assert version["rows"] == 20 and len(version["results"]) == 20
        assert {m["metric"] for m in version["metrics"]} == {"exact-match", "tokens"}
        # the tiny random model never says "Positive": exact match fails, the length check passes
        assert version["pass_rate"] == 0.0
        for result in version["results"]:
            by_metric = {s["metric"]: s for s in result["scores"]}
            assert by_metric["tokens"]["passed"] is True
            assert by_metric["exact-match"]["passed"] is False
    # Scores are stored against the outputs.
    runner = Runner(open_library())
    outputs = run_outputs(runner.store, data["versions"][0]["run_id"])
    stored = stored_scores(runner.store, [o.id for o in outputs])
    assert len(stored) == 20 and all(len(v) == 2 for v in stored.values())


def test_min_pass_rate_fails_the_build(cli: Cli, tmp_path: Path) -> None:
    path = _small(tmp_path, [{"text": "good", "expected": "Positive"}])
    args = (
        "eval",
        CHAT,
        "--dataset",
        path,
        "--assert",
        "exact-match",
        "--param",
        "max_new_tokens=3",
    )
    code, _, err = cli(*args, "--min-pass-rate", "0.5")
    assert code == EXIT_BELOW_MIN
    assert "pass rate below 50%" in err and f"{CHAT}@1 0%" in err
    assert "Traceback" not in err
    code, _, err = cli(*args, "--min-pass-rate", "0")
    assert code == 0, err


def test_a_passing_assertion_passes(cli: Cli, tmp_path: Path) -> None:
    path = _small(tmp_path, [{"text": "good"}, {"text": "bad"}])
    code, out, err = cli(
        "eval",
        CHAT,
        "--dataset",
        path,
        "--assert",
        "not-contains:no such text anywhere",
        "--param",
        "max_new_tokens=3",
        "--min-pass-rate",
        "1",
    )
    assert code == 0, err
    assert " 100%" in out.splitlines()[2]


@pytest.mark.parametrize("suffix", [".csv", ".xml"])
def test_reports_for_ci(cli: Cli, tmp_path: Path, suffix: str) -> None:
    path = _small(
        tmp_path,
        [{"text": "good", "expected": "Positive"}, {"text": "bad", "expected": "Negative"}],
    )
    report = tmp_path / f"report{suffix}"
    code, _, err = cli(
        "eval",
        CHAT,
        "--dataset",
        path,
        "--assert",
        "exact-match",
        "--assert",
        "is-json",
        "--param",
        "max_new_tokens=3",
        "--output",
        report,
    )
    assert code == 0, err
    if suffix == ".csv":
        rows = list(csv.DictReader(io.StringIO(report.read_text())))
        assert len(rows) == 4 and {r["metric"] for r in rows} == {"exact-match", "is-json"}
        json_rows = [r for r in rows if r["metric"] == "is-json"]
        assert all(r["passed"] == "False" and r["detail"] for r in json_rows)  # not a crash
    else:
        root = ElementTree.fromstring(report.read_bytes())
        suite = root.find("testsuite")
        assert suite is not None and suite.get("tests") == "2" and suite.get("failures") == "2"
        failure = suite.find("testcase/failure")
        assert failure is not None and "is-json" in failure.get("message", "")


@pytest.mark.parametrize(
    ("assertion", "message"),
    [
        ("python:1 + 1", "python"),
        ('{"type": "regex", "value": "(unclosed"}', "regex"),
        ('{"type": "json-schema", "value": {"type": "nonsense"}}', "schema"),
        ('{"type": "rouge-l", "threshold": "high"}', "threshold"),
        ('{"type": "contains"', "not valid JSON"),
    ],
)
def test_bad_assertions_are_refused_before_generation(
    cli: Cli, tmp_path: Path, assertion: str, message: str
) -> None:
    path = _small(tmp_path, [{"text": "good", "expected": "Positive"}])
    code, out, err = cli("eval", CHAT, "--dataset", path, "--assert", assertion)
    assert code == 1, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0].lower() or message in lines[0]
    assert list_runs(open_library().store) == []  # nothing ran


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--assert", "rouge-l"), "no 'expected' column"),
        (("--assert", "exact-match", "--output", "report.txt"), "report.txt"),
        ((), "has no assertions"),
    ],
)
def test_other_mistakes_are_refused_before_generation(
    cli: Cli, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    path = _small(tmp_path, [{"text": "good"}])
    code, out, err = cli("eval", CHAT, "--dataset", path, *args)
    assert code == 1, (out, err)
    assert message in err and "Traceback" not in err
    assert list_runs(open_library().store) == []


def test_assertions_in_the_prompt_file(cli: Cli, tmp_path: Path) -> None:
    lib = open_library()
    text = lib.get(CHAT).file.canonical_text()
    text = text.replace(
        "metadata:\n",
        "metadata:\n  assert:\n  - type: icontains-any\n    value: [positive, "
        "negative]\n  - type: latency\n    threshold: 60\n",
        1,
    )
    saved = lib.save(text, "with assertions")
    path = _small(tmp_path, [{"text": "good"}])
    code, out, err = cli(
        "eval",
        f"{CHAT}@{saved.version.number}",
        "--dataset",
        path,
        "--json",
        "--param",
        "max_new_tokens=3",
    )
    assert code == 0, err
    data = json.loads(out)
    metrics = [m["metric"] for m in data["versions"][0]["metrics"]]
    assert metrics == ["icontains-any", "latency"]


def test_json_parse_rate_is_a_column_when_outputs_should_be_json(cli: Cli, tmp_path: Path) -> None:
    """Checked with a JSON assertion, a version gets a JSON PARSED column in the table and
    json_parse_rate in the report (the tiny random model writes no JSON: 0%); checked without
    one, a sentiment prompt gets no such column."""
    reviews = _small(tmp_path, [{"text": "good", "expected": "Positive"}, {"text": "bad"}])
    report = tmp_path / "report.json"
    code, out, err = cli(
        "eval", CHAT, "--dataset", reviews, "--assert", "is-json",
        "--param", "max_new_tokens=4", "--output", report,
    )  # fmt: skip
    assert code == 0, err
    header, _, line = out.splitlines()[:3]
    assert "JSON PARSED" in header
    assert line.split()[5] == "0%"
    version = json.loads(report.read_text())["versions"][0]
    assert version["json_parse_rate"] == 0.0
    code, out, err = cli(
        "eval", CHAT, "--dataset", reviews, "--assert", "not-contains:zzzz",
        "--param", "max_new_tokens=3",
    )  # fmt: skip
    assert code == 0, err
    assert "JSON PARSED" not in out


def test_json_format_prompts_expect_json(builtin_library: Any) -> None:
    from workbench.evaluate import expects_json
    from workbench.scorers import parse_checks

    assert expects_json(builtin_library.get("json-answer"), [])
    sentiment = builtin_library.get(CHAT)
    assert not expects_json(sentiment, parse_checks(["exact-match"]))
    assert expects_json(sentiment, parse_checks(["is-json"]))


def test_json_parse_rate_counts_outputs_that_parse() -> None:
    from workbench.evaluate import RowResult, VersionReport

    rows = [
        RowResult(i, i, {}, text, [], False, 0.0)
        for i, text in enumerate(['{"a": 1}', "```json\n[1, 2]\n```", "not json", None])
    ]
    assert VersionReport("p@1", 1, "m", rows, []).json_parse_rate == 0.5
