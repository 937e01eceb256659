"""`--choices` and `--calibrate` on `workbench run` and `workbench eval`: scored answers with
both raw and calibrated probabilities stored, and every bad request refused before a model."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT

from workbench.choices import ChoiceResult

Cli = Callable[..., tuple[int, str, str]]
DATASET = REPO_ROOT / "examples" / "sentiment-20.csv"
LABELS = "Positive,Negative,Neutral"


@pytest.fixture
def cli(tiny_cli: Cli) -> Cli:
    return tiny_cli


def test_eval_with_choices_and_calibration_stores_both_distributions(cli: Cli) -> None:
    code, out, err = cli(
        "eval", "few-shot-sentiment", "--dataset", DATASET, "--choices", LABELS, "--calibrate",
        "--json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    [version] = report["versions"]
    assert version["rows"] == 20
    code, out, err = cli("runs", "show", version["run_id"], "--json")
    assert code == 0, err
    outputs = json.loads(out)["outputs"]
    assert len(outputs) == 20
    for o in outputs:
        result = ChoiceResult.from_dict(o["choices"])
        assert result.choices == ("Positive", "Negative", "Neutral")
        assert result.calibrated is not None and len(result.probs) == 3
        assert o["text"] == result.answer and o["finish_reason"] == "choice"
    # the pass rate is the calibrated answer's exact match with the expected label
    expected = [o["variables"]["expected"] for o in outputs]
    passed = sum(o["text"] == e for o, e in zip(outputs, expected, strict=True))
    assert version["passed"] == passed


def test_run_with_choices_prints_the_answer_and_its_probability(cli: Cli, tmp_path: Path) -> None:
    code, out, err = cli(
        "run", "few-shot-sentiment", "--dataset", DATASET, "--choices", LABELS,
    )  # fmt: skip
    assert code == 0, err
    rows = [line for line in out.splitlines() if " choice " in line]
    assert len(rows) == 20
    assert all("%" in line for line in rows)


def test_one_input_answers_with_a_choice(cli: Cli) -> None:
    code, out, err = cli(
        "run", "few-shot-sentiment", "--var", "text=fine", "--choices", "Yes,No", "--calibrate",
    )  # fmt: skip
    assert code == 0, err
    assert out.strip() in {"Yes", "No"}
    assert "choice" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--calibrate"], "calibration needs answer choices: few-shot-sentiment@1 declares no"),
        (["--choices", "Positive,Positive"], "--choices: choice 'Positive' is given twice"),
        (["--choices", ""], "--choices: choices is empty"),
        (["--choices", "Positive"], "--choices: only one choice"),
    ],
)
@pytest.mark.parametrize("command", ["run", "eval"])
def test_bad_requests_are_refused_in_one_line_before_the_model(
    cli: Cli, monkeypatch: Any, command: str, args: list[str], message: str
) -> None:
    import workbench.backends as backends

    def no_model(*a: Any, **k: Any) -> Any:
        raise AssertionError("the model was opened")

    monkeypatch.setattr(backends, "open_backend", no_model)
    where = ["--dataset", DATASET] if command == "eval" else ["--var", "text=fine"]
    code, _, err = cli(command, "few-shot-sentiment", *where, *args)
    assert code != 0
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_help_names_both_options(cli: Cli) -> None:
    for command in ("run", "eval"):
        code, out, _ = cli(command, "--help")
        assert code == 0 and "--choices" in out and "--calibrate" in out
