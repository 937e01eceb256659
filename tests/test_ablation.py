"""Technique ablation on the tiny model: trials stored, intervals, bad input, the command."""

from __future__ import annotations

import csv
import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import build_prompt_text

from workbench.ablation import (
    HEADERS,
    AblationError,
    ablate,
    report_dict,
    save_best,
    table_rows,
)
from workbench.datasets import Dataset
from workbench.errors import WorkbenchError
from workbench.evaluate import EvaluationError
from workbench.library import Library
from workbench.runner import Runner
from workbench.runs import list_runs, run_outputs

Result = tuple[int, str, str]
Cli = Callable[..., Result]
REVIEWS = [
    ("Great, I love it", "Positive"),
    ("Terrible, it broke", "Negative"),
    ("It arrived on Tuesday", "Neutral"),
    ("Wonderful service", "Positive"),
    ("Awful and slow", "Negative"),
]
SENTIMENT = "few-shot-sentiment"


def _reviews(columns: tuple[str, ...] = ("text", "expected")) -> Dataset:
    rows = tuple(dict(zip(("text", "expected"), pair, strict=True)) for pair in REVIEWS)
    return Dataset("reviews.csv", columns, tuple({c: r[c] for c in columns} for r in rows))


def _runs(library: Library) -> int:
    return len(list_runs(library.store))


def test_every_variant_is_a_stored_run_with_an_interval(runner: Runner) -> None:
    library = runner.library
    report = ablate(library, runner, SENTIMENT, _reviews(), resamples=200, seed=1)
    assert report.prompt == f"{SENTIMENT}@1" and report.checks == ("exact-match",)
    keys = [r.key for r in report.results]
    assert keys == [
        "original",
        "no-examples",
        "mode-chat",
        "1-shot",
        "choices",
        "choices-calibrated",
    ]
    assert report.original.ref == f"{SENTIMENT}@1"  # the original runs under its own name
    for result in report.results:
        assert result.status == "done", (result.key, result.error)
        assert result.n == len(REVIEWS) and result.run_id is not None
        assert result.ci is not None and result.ci.low <= result.ci.estimate <= result.ci.high
        assert result.ci.low >= 0 and result.ci.high <= 1
        if result.key == "original":
            assert result.difference is None
        else:
            assert result.ref is not None and result.ref.startswith(f"{SENTIMENT}.trials@")
            assert result.difference is not None
            assert result.mean is not None and report.original.mean is not None
            assert result.difference.estimate == pytest.approx(result.mean - report.original.mean)
    assert len({r.run_id for r in report.results}) == len(report.results)
    assert _runs(library) == len(report.results)
    assert library.get(SENTIMENT).number == 1  # trials never become the prompt's latest
    calibrated = report.results[-1]
    outputs = run_outputs(library.store, calibrated.run_id or 0)
    assert all(o.choices is not None and o.choices["calibrated"] for o in outputs)

    again = ablate(library, runner, SENTIMENT, _reviews(), resamples=200, seed=1)
    assert [(r.ref, r.scores, r.ci, r.difference) for r in again.results] == [
        (r.ref, r.scores, r.ci, r.difference) for r in report.results
    ]
    for result in again.results:  # a repeat comes from the cache
        assert all(o.cached for o in run_outputs(library.store, result.run_id or 0))


def test_the_table_marks_differences_whose_interval_excludes_zero(runner: Runner) -> None:
    report = ablate(runner.library, runner, SENTIMENT, _reviews(), resamples=200, seed=0)
    rows = table_rows(report)
    assert len(rows) == len(report.results) and all(len(r) == len(HEADERS) for r in rows)
    for row, result in zip(rows, report.results, strict=True):
        assert row[0] == result.variant.label
        significant = result.difference is not None and result.difference.excludes_zero
        assert row[5].endswith("*") == significant
    data = json.loads(json.dumps(report_dict(report)))
    assert data["variants"][0]["key"] == "original"
    calibrated = {v["key"]: v["calibrated"] for v in data["variants"]}
    assert calibrated["choices-calibrated"] and not calibrated["original"]


def test_a_self_consistency_prompt_scores_the_majority_answer(runner: Runner) -> None:
    library = runner.library
    text = build_prompt_text(
        "vote",
        "user:\n{{ text }}\n",
        model={"apiType": "chat", "options": {"temperature": 0.7, "maxOutputTokens": 3}},
        metadata={"technique": "self-consistency", "samples": 3, "answer_pattern": r"(\w+)"},
    )
    library.save(text)
    rows = Dataset("r", ("text",), ({"text": "a"}, {"text": "b"}))
    report = ablate(library, runner, "vote", rows, ["not-contains:zzzz"], resamples=100, seed=0)
    results = {r.key: r for r in report.results}
    assert set(results) == {"original", "mode-completion", "sc-1", "sc-5"}
    for result in results.values():
        assert result.status == "done" and result.n == 2, (result.key, result.error)
    five = run_outputs(library.store, results["sc-5"].run_id or 0)
    assert len(five) == 2 * 5  # five samples a row, one vote scored a row


def test_a_variant_that_fails_is_reported_and_the_others_go_on(runner: Runner) -> None:
    library = runner.library
    library.save(
        build_prompt_text(
            "cot",
            "user:\n{{ text }}\nRemember: {{ trigger }}\n{{ trigger }}\n",
            model={"options": {"maxOutputTokens": 2}},
            inputs={
                "text": {"kind": "string", "default": "2+2?"},
                "trigger": {"kind": "string", "default": "Think step by step."},
            },
            metadata={"technique": "chain-of-thought"},
        )
    )
    report = ablate(library, runner, "cot", _reviews(), resamples=100, seed=0)
    results = {r.key: r for r in report.results}
    assert results["no-cot"].status == "failed" and results["no-cot"].run_id is None
    assert "{{ trigger }}" in (results["no-cot"].error or "")
    assert results["original"].status == "done" and results["mode-completion"].status == "done"
    assert "failed: " in table_rows(report)[list(results).index("no-cot")][-1]


def test_cancel_reports_the_variants_not_run(runner: Runner) -> None:
    cancel = threading.Event()
    cancel.set()
    report = ablate(
        runner.library, runner, SENTIMENT, _reviews(), resamples=100, seed=0, cancel=cancel
    )
    assert {r.status for r in report.results} == {"cancelled"}
    assert _runs(runner.library) == 0


@pytest.mark.parametrize(
    ("dataset", "extra", "resamples", "error", "message"),
    [
        (_reviews(("text",)), (), 200, AblationError, "has no 'expected' column"),
        (_reviews(("text",)), ("exact-match",), 200, EvaluationError, "no 'expected' column"),
        (_reviews(), ("no-such-scorer",), 200, WorkbenchError, "no-such-scorer"),
        (_reviews(), (), 5, AblationError, "--resamples: resamples must be between 100"),
        (Dataset("empty.csv", ("text", "expected"), ()), (), 200, AblationError, "no rows"),
    ],
)
def test_bad_input_is_refused_before_any_run(
    runner: Runner,
    dataset: Dataset,
    extra: tuple[str, ...],
    resamples: int,
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        ablate(runner.library, runner, SENTIMENT, dataset, extra, resamples=resamples, seed=0)
    assert _runs(runner.library) == 0


def test_a_trial_is_not_ablated(runner: Runner) -> None:
    ablate(runner.library, runner, SENTIMENT, _reviews(), resamples=100, seed=0)
    with pytest.raises(AblationError, match="is a trial"):
        ablate(runner.library, runner, f"{SENTIMENT}.trials@1", _reviews(), resamples=100, seed=0)


def test_save_best_keeps_the_winner_as_the_next_version(runner: Runner) -> None:
    library = runner.library
    report = ablate(library, runner, SENTIMENT, _reviews(), resamples=100, seed=0)
    chosen = save_best(library, report, key="choices")
    assert chosen.saved is not None and chosen.saved.created
    latest = library.get(SENTIMENT)
    assert latest.number == 2 and latest.ref == chosen.saved.version.ref
    assert latest.file.metadata["choices"] == ["Positive", "Negative", "Neutral"]
    assert "choices scored" in latest.note and "vs original" in latest.note
    assert f"run {report.results[4].run_id}" in latest.note

    best = save_best(library, report)
    winner = report.best()
    assert winner is not None
    if winner.key == "original":
        assert best.saved is None and "nothing saved" in best.message
    with pytest.raises(AblationError, match="no variant 'nope'"):
        save_best(library, report, key="nope")


def test_the_original_scoring_best_saves_nothing(runner: Runner) -> None:
    report = ablate(runner.library, runner, SENTIMENT, _reviews(), resamples=100, seed=0)
    original_only = type(report)(
        report.prompt, report.dataset, report.checks, 100, 0, report.results[:1], ()
    )
    outcome = save_best(runner.library, original_only)
    assert outcome.saved is None and "scores best" in outcome.message
    assert runner.library.get(SENTIMENT).number == 1


# --- the command ------------------------------------------------------------------------------


@pytest.fixture
def cli(tiny_cli: Cli) -> Cli:
    return tiny_cli


def _csv(tmp_path: Path, columns: tuple[str, ...] = ("text", "expected")) -> Path:
    path = tmp_path / "reviews.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(pair[: len(columns)] for pair in REVIEWS)
    return path


def test_the_command_prints_every_variant(cli: Cli, tmp_path: Path) -> None:
    code, out, err = cli("ablate", SENTIMENT, "--dataset", _csv(tmp_path), "--resamples", 200)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["VARIANT", "CHANGE"]
    for label in ("original", "without examples (0-shot)", "chat mode", "1-shot"):
        assert any(line.startswith(label) for line in lines), label
    assert "95% CIs from 200 bootstrap resamples (seed 0)" in out
    assert "* = its CI excludes 0" in out


def test_the_command_prints_json_and_saves_the_best(cli: Cli, tmp_path: Path) -> None:
    code, out, err = cli(
        "ablate",
        SENTIMENT,
        "--dataset",
        _csv(tmp_path),
        "--resamples",
        100,
        "--seed",
        3,
        "--save-best",
        "--format",
        "json",
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["seed"] == 3 and data["resamples"] == 100
    assert [v["key"] for v in data["variants"]][:2] == ["original", "no-examples"]
    assert all(v["rows"] == len(REVIEWS) and v["ci"] is not None for v in data["variants"])
    assert data["saved"]["message"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--columns", "text"), 1, "has no 'expected' column"),
        (("--resamples", "5"), 2, "--resamples"),
        (("--assert", "bogus"), 1, "--assert 'bogus'"),
        (("--dataset-name", "nowhere.csv"), 1, "--dataset nowhere.csv: no such file"),
    ],
)
def test_bad_input_is_one_line(
    cli: Cli, tmp_path: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    dataset: object = _csv(tmp_path)
    extra: list[str] = []
    if args[0] == "--columns":
        dataset = _csv(tmp_path, ("text",))
    elif args[0] == "--dataset-name":
        dataset = args[1]
    else:
        extra = list(args)
    got, out, err = cli("ablate", SENTIMENT, "--dataset", dataset, *extra)
    assert got == code, (out, err)
    lines = err.strip().splitlines()
    assert message in err and out == ""
    if code == 1:
        assert len(lines) == 1 and lines[0].startswith("error: ")
