"""`workbench eval` on outputs that carry scored answer choices: accuracy, log-loss, Brier and
ECE per version, raw and calibrated side by side, in the terminal and in every report format.

The runner's choice scoring is stood in for: each stored output gets a fixed `output.choices`
value, so the figures can be checked against a hand computation."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from workbench.runner import Runner

Result = tuple[int, str, str]
Cli = Callable[..., Result]
PROMPT = "zero-shot-sentiment"
LABELS = ["Positive", "Negative", "Neutral"]
# Per row: raw and calibrated distributions; row 3's expected answer is not a choice.
CHOICES = {
    0: ([0.6, 0.3, 0.1], [0.5, 0.4, 0.1]),
    1: ([0.6, 0.3, 0.1], [0.2, 0.7, 0.1]),
    2: ([0.2, 0.2, 0.6], [0.2, 0.2, 0.6]),
}
ROWS = [
    {"text": "I love it", "expected": "Positive"},
    {"text": "I hate it", "expected": " negative"},
    {"text": "So-so", "expected": "Mixed"},
]


@pytest.fixture
def choices_stored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every output the runner stores gets its row's scored choices."""
    original = Runner._output_row

    def with_choices(*args: Any) -> Any:
        row = original(*args)
        probs, calibrated = CHOICES[row.row_index]
        row.choices = {
            "choices": LABELS,
            "logprobs": [-1.0, -2.0, -3.0],
            "probs": probs,
            "calibrated": calibrated,
        }
        return row

    monkeypatch.setattr(Runner, "_output_row", staticmethod(with_choices))


def _dataset(tmp_path: Path) -> Path:
    path = tmp_path / "rows.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "expected"])
        writer.writeheader()
        writer.writerows(ROWS)
    return path


# By hand over rows 1 and 2 (row 3 is left out). Raw: row 1 right at 0.6, row 2 wrong at 0.6.
RAW = {"accuracy": 0.5, "log_loss": 0.857399, "brier": 0.56, "ece": 0.1}
# Calibrated: row 1 right at 0.5, row 2 right at 0.7.
CALIBRATED = {"accuracy": 1.0, "log_loss": 0.524911, "brier": 0.28, "ece": 0.4}


def test_eval_prints_raw_and_calibrated_scores_side_by_side(
    tiny_cli: Cli, choices_stored: None, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    code, out, err = tiny_cli(
        "eval",
        PROMPT,
        "--dataset",
        _dataset(tmp_path),
        "--assert",
        "exact-match",
        "--param",
        "max_new_tokens=2",
        "--no-cache",
        "--output",
        report,
    )
    assert code == 0, err
    lines = out.splitlines()
    header = next(
        i for i, line in enumerate(lines) if line.split()[:2] == ["VERSION", "PROBABILITIES"]
    )
    assert lines[header].split() == [
        "VERSION",
        "PROBABILITIES",
        "ROWS",
        "ACCURACY",
        "LOG-LOSS",
        "BRIER",
        "ECE",
    ]
    raw, calibrated = lines[header + 2].split(), lines[header + 3].split()
    assert raw == [f"{PROMPT}@1", "raw", "2", "50%", "0.857", "0.560", "0.100"]
    assert calibrated == [f"{PROMPT}@1", "calibrated", "2", "100%", "0.525", "0.280", "0.400"]
    assert "10 equal-width bins of the top probability" in out
    assert "floored at 1e-15" in out
    assert (
        f"{PROMPT}@1: row 3: the expected answer 'Mixed' is not among the choices "
        "(Positive, Negative, Neutral)" in out
    )
    data = json.loads(report.read_text())
    (version,) = data["versions"]
    found = version["probability_scores"]
    for kind, expected in (("raw", RAW), ("calibrated", CALIBRATED)):
        for name, value in expected.items():
            assert found[kind][name] == pytest.approx(value, abs=1e-6), (kind, name)
        assert sum(b["count"] for b in found[kind]["reliability"]) == 2
    assert len(found["problems"]) == 1
    rows = version["results"]
    assert [r["p_expected"] for r in rows] == [0.6, 0.3, None]
    assert [r["p_expected_calibrated"] for r in rows] == [0.5, 0.7, None]


def test_csv_and_junit_reports_carry_the_probabilities(
    tiny_cli: Cli, choices_stored: None, tmp_path: Path
) -> None:
    dataset = _dataset(tmp_path)
    args = ("eval", PROMPT, "--dataset", dataset, "--assert", "exact-match")
    params = ("--param", "max_new_tokens=2")
    code, _, err = tiny_cli(*args, *params, "--no-cache", "--output", tmp_path / "r.csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO((tmp_path / "r.csv").read_text())))
    assert [r["p_expected"] for r in rows] == ["0.6", "0.3", ""]
    assert [r["p_expected_calibrated"] for r in rows] == ["0.5", "0.7", ""]
    code, _, err = tiny_cli(*args, *params, "--output", tmp_path / "r.xml")
    assert code == 0, err
    suite = ElementTree.parse(tmp_path / "r.xml").getroot().find("testsuite")
    assert suite is not None
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["accuracy_raw"] == "0.5" and properties["accuracy_calibrated"] == "1"
    assert float(properties["log_loss_calibrated"]) == pytest.approx(0.524911, abs=1e-5)
    assert float(properties["ece_raw"]) == pytest.approx(0.1)


def test_eval_of_generated_outputs_prints_no_probability_scores(
    tiny_cli: Cli, tmp_path: Path
) -> None:
    code, out, err = tiny_cli(
        "eval",
        PROMPT,
        "--dataset",
        _dataset(tmp_path),
        "--assert",
        "exact-match",
        "--param",
        "max_new_tokens=2",
        "--json",
    )
    assert code == 0, err
    (version,) = json.loads(out)["versions"]
    assert version["probability_scores"] is None
    assert all(r["p_expected"] is None for r in version["results"])


def test_unreadable_stored_choices_and_many_left_out_rows_are_lines_not_crashes() -> None:
    from conftest import make_output

    from workbench.evaluate import (
        PROBLEMS_SHOWN,
        EvalReport,
        VersionReport,
        choice_rows,
        probability_lines,
    )
    from workbench.probability_scores import choice_scores

    good = {"choices": LABELS, "probs": [0.5, 0.3, 0.2]}
    outputs = [
        make_output("Positive", id=1, row_index=0, variables={"expected": "Positive"}),
        make_output("Positive", id=2, row_index=1, variables={"expected": "Positive"}),
        make_output(None, id=3, row_index=2, variables={"expected": "Positive"}, error="boom"),
        *(
            make_output("Positive", id=10 + i, row_index=3 + i, variables={"expected": "Mixed"})
            for i in range(PROBLEMS_SHOWN)
        ),
    ]
    stored = {1: good, 2: {"choices": LABELS, "probs": [1.0]}, **{10 + i: good for i in range(9)}}
    found = choice_scores(choice_rows(outputs, stored))
    assert found is not None and found.raw is not None and found.raw.rows == 1
    assert found.problems[:2] == (
        "row 2: no scored choices (output 2: probs must hold one probability per choice (3))",
        "row 3: no scored choices (boom)",
    )
    version = VersionReport("p@1", 1, "m", [], [], choice_scores=found)
    lines = probability_lines(EvalReport("rows", {}, [version]))
    assert lines[0].startswith("Scored from the answer choices' probabilities: log-loss")
    assert len(lines) == 1 + PROBLEMS_SHOWN + 1
    assert lines[-1] == "p@1: … and 2 more rows left out"
