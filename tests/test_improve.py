"""Few-shot optimisation: the search finds planted best examples, stays in its budget, is the
same for a seed, resumes after a kill or a cancel from the cache, saves its winner as the next
version, and refuses every bad request before anything runs."""

from __future__ import annotations

import csv
import random
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from workbench.choices import ChoiceRequest
from workbench.compose import read_draft
from workbench.datasets import Dataset
from workbench.demos import Demo
from workbench.evaluate import EvaluationError
from workbench.improve import (
    Config,
    ImproveError,
    ImproveProgress,
    Score,
    _refinements,
    improve,
    report_dict,
    save_winner,
)
from workbench.library import Library, VersionInfo
from workbench.runner import Runner
from workbench.runs import list_runs

PROMPT = "zero-shot-sentiment"
LABELS = ("Positive", "Negative", "Neutral")


def rows(*pairs: tuple[str, str]) -> tuple[dict[str, Any], ...]:
    return tuple({"text": text, "expected": label} for text, label in pairs)


def dataset(name: str, *pairs: tuple[str, str]) -> Dataset:
    return Dataset(name, ("text", "expected"), rows(*pairs))


TRAIN = dataset(
    "train.csv",
    *[(f"train text {i}", LABELS[i % 3]) for i in range(12)],
)
DEV = dataset("dev.csv", ("dev one", "Positive"), ("dev two", "Negative"), ("dev three", "Neutral"))
TEST = dataset("test.csv", ("test one", "Positive"), ("test two", "Neutral"))


def demos_in(version: VersionInfo) -> list[str]:
    found = read_draft(version.file).examples
    return [str(r["input"]) for r in found.rows] if found is not None else []


def planted(*best: str) -> Callable[[VersionInfo, Dataset, ChoiceRequest | None], Score]:
    """A stand-in for evaluation: the share of the planted examples the prompt holds (each other
    example costs a little log-loss, so fewer is better on a tie)."""

    def score(version: VersionInfo, data: Dataset, _: ChoiceRequest | None) -> Score:
        held = demos_in(version)
        share = sum(b in held for b in best) / len(best)
        return Score(share, share, len(data.rows), log_loss=1.0 + 0.01 * len(held))

    return score


# --- the search ---------------------------------------------------------------------------------


def test_greedy_selection_finds_the_planted_examples(builtin_library: Library) -> None:
    best = ("train text 7", "train text 2")
    report = improve(
        builtin_library,
        None,
        PROMPT,
        TRAIN,
        DEV,
        TEST,
        budget=60,
        seed=3,
        max_examples=8,
        scorer=planted(*best),
    )
    held = [d.input for d in report.winner.config.demos or ()]
    assert set(best) <= set(held)
    assert report.winner.dev.accuracy == 1.0 and report.original.dev.accuracy == 0.0
    assert report.winner.test is not None and report.winner.test.accuracy == 1.0
    assert len(report.trials) <= 60 and report.improved and not report.cancelled
    # Greedy stops when nothing helps: no example beyond what raised the score.
    assert len(held) < 8
    assert {t.phase for t in report.trials} == {"format", "greedy", "refine"}


def test_greedy_balances_labels_before_adding_more_of_one(builtin_library: Library) -> None:
    def score(version: VersionInfo, data: Dataset, _: Any) -> Score:
        held = demos_in(version)
        return Score(0.5, 0.5, len(data.rows), log_loss=1.0 / (1 + len(held)))

    report = improve(
        builtin_library, None, PROMPT, TRAIN, DEV, budget=40, max_examples=6, scorer=score
    )
    labels = [d.output for d in report.winner.config.demos or ()]
    assert len(labels) == 6 and all(labels.count(label) == 2 for label in LABELS)


@pytest.mark.parametrize("strategy", ["greedy", "random"])
def test_the_budget_bounds_the_trials_and_a_seed_fixes_them(
    builtin_library: Library, strategy: str
) -> None:
    def run(seed: int) -> list[Any]:
        report = improve(
            builtin_library,
            None,
            PROMPT,
            TRAIN,
            DEV,
            budget=9,
            strategy=strategy,
            seed=seed,
            scorer=planted("train text 5"),
        )
        assert len(report.trials) <= 9
        return [t.config for t in report.trials]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_random_search_keeps_its_best_subset(builtin_library: Library) -> None:
    report = improve(
        builtin_library,
        None,
        PROMPT,
        TRAIN,
        DEV,
        budget=30,
        strategy="random",
        seed=0,
        scorer=planted("train text 4"),
    )
    assert report.strategy == "random" and 26 <= len(report.trials) <= 30
    best = max(t.dev.accuracy for t in report.trials)
    assert report.winner.dev.accuracy == best
    assert {t.phase for t in report.trials} <= {"format", "random", "refine"}


def test_formats_include_completion_mode_and_scored_calibrated_labels(
    builtin_library: Library,
) -> None:
    report = improve(
        builtin_library,
        None,
        f"{PROMPT}-chat",
        TRAIN,
        DEV,
        budget=6,
        scorer=planted("none of these"),
    )
    seen = {(t.config.mode, t.config.choices, t.config.calibrate) for t in report.trials}
    assert seen == {
        (mode, choices, calibrate)
        for mode in ("chat", "completion")
        for choices, calibrate in ((None, False), (LABELS, False), (LABELS, True))
    }
    # Nothing beat the original: it stays the winner and --save has nothing to store.
    assert not report.improved and save_winner(builtin_library, report) is None


def test_a_calibrated_winner_declares_its_calibration(builtin_library: Library) -> None:
    def calibrated_best(version: VersionInfo, data: Dataset, request: Any) -> Score:
        acc = 1.0 if request is not None and request.calibrate else 0.0
        assert (request is not None) == (version.file.metadata.get("calibrate") is True)
        return Score(acc, acc, len(data.rows), log_loss=1.0)

    report = improve(builtin_library, None, PROMPT, TRAIN, DEV, budget=6, scorer=calibrated_best)
    assert report.winner.config.calibrate
    assert "choices calibrated (metadata.calibrate)" in report.changes()
    saved = save_winner(builtin_library, report)
    assert saved is not None and saved.version.file.metadata["calibrate"] is True
    # Run as it is, the saved version calibrates: no option to remember.
    assert saved.version.file.metadata["choices"] == list(LABELS)


def test_the_winner_is_saved_as_the_next_version_with_a_note(builtin_library: Library) -> None:
    report = improve(
        builtin_library,
        None,
        PROMPT,
        TRAIN,
        DEV,
        TEST,
        budget=20,
        scorer=planted("train text 1"),
    )
    saved = save_winner(builtin_library, report)
    assert saved is not None and saved.created
    latest = builtin_library.get(PROMPT)
    assert latest.ref == f"{PROMPT}@2" == saved.version.ref
    assert "train text 1" in demos_in(latest)
    assert "dev 0% of 3 → 100% of 3" in latest.note and "test 0% of 2 → 100% of 2" in latest.note
    assert "examples from train.csv" in latest.note
    # Trials are versions of a hidden companion prompt, not of the prompt itself.
    assert [v.number for v in builtin_library.versions(PROMPT)] == [1, 2]
    assert report_dict(report)["winner"]["dev"]["accuracy"] == 1.0


# --- real runs on the tiny model: every trial a stored run; resume after a kill or a cancel -------


class Killed(Exception):
    pass


def test_a_killed_search_resumes_from_the_cache(runner: Runner) -> None:
    library = runner.library
    args = (library, runner, PROMPT, TRAIN, DEV, TEST)
    options: dict[str, Any] = {"budget": 5, "seed": 1, "max_examples": 4}

    def kill_in_trial_four(p: ImproveProgress) -> None:
        if p.trials == 3 and p.rows is not None and p.rows.done >= 1:
            raise KeyboardInterrupt  # as Ctrl+C or a kill would, part way through a trial

    with pytest.raises(KeyboardInterrupt):
        improve(*args, **options, progress=kill_in_trial_four)
    runs_before = len(list_runs(library.store, limit=1000))
    report = improve(*args, **options)
    assert len(report.trials) == 5
    assert [t.generated for t in report.trials[:3]] == [0, 0, 0]  # finished: not regenerated
    assert report.trials[3].generated < len(DEV.rows)  # the killed trial's stored rows reused
    assert all(t.run_id is not None for t in report.trials)
    assert len(list_runs(library.store, limit=1000)) > runs_before
    again = improve(*args, **options)
    assert [t.config for t in again.trials] == [t.config for t in report.trials]
    assert [t.dev for t in again.trials] == [t.dev for t in report.trials]
    assert all(t.generated == 0 for t in again.trials)


def test_cancel_stops_between_trials_and_keeps_the_best_so_far(runner: Runner) -> None:
    cancel = threading.Event()
    seen: list[ImproveProgress] = []

    def watch(p: ImproveProgress) -> None:
        seen.append(p)
        if p.trials == 2:
            cancel.set()

    report = improve(
        runner.library,
        runner,
        PROMPT,
        TRAIN,
        DEV,
        TEST,
        budget=6,
        progress=watch,
        cancel=cancel,
    )
    assert report.cancelled and len(report.trials) == 2
    assert report.winner.test is None and report.original.test is None
    assert all(p.budget == 6 for p in seen) and seen[-1].eta_s is not None
    assert any(p.rows is not None for p in seen)


# --- bad requests: refused with the reason before anything runs --------------------------------


NO_EXPECTED = Dataset("plain.csv", ("text",), ({"text": "dev one"},))
EMPTY = Dataset("empty.csv", ("text", "expected"), ())


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"budget": 0}, "budget must be at least 1"),
        ({"budget": -3}, "budget must be at least 1"),
        ({"max_examples": 0}, "max examples must be at least 1"),
        ({"strategy": "annealing"}, "choose greedy or random"),
        ({"train": EMPTY}, "train set empty.csv has no rows"),
        ({"dev": EMPTY}, "dev set empty.csv has no rows"),
        ({"dev": NO_EXPECTED}, "has no assertions .* no 'expected' column"),
        ({"test": NO_EXPECTED}, "test set plain.csv has no 'expected' column"),
        (
            {"test": dataset("t.csv", ("train text 4", "Positive"))},
            "share 1 input .*'train text 4'.*test",
        ),
        ({"dev": dataset("d.csv", ("train text 0", "Positive"))}, "share 1 input"),
        ({"train": Dataset("t.csv", ("text",), ({"text": "x"},))}, "no 'expected' column"),
        (
            {"train": dataset("t.csv", ("ok", "Positive"), ("", "Negative"))},
            "t.csv, line 3: empty text",
        ),
        (
            {"dev": Dataset("d.csv", ("body", "expected"), ({"body": "x", "expected": "y"},))},
            "fills none of",
        ),
    ],
)
def test_a_bad_request_is_refused_before_any_run(
    builtin_library: Library, change: dict[str, Any], problem: str
) -> None:
    args: dict[str, Any] = {"train": TRAIN, "dev": DEV, "test": TEST, **change}
    train, dev, test = args.pop("train"), args.pop("dev"), args.pop("test")
    with pytest.raises(ImproveError, match=problem):
        improve(builtin_library, None, PROMPT, train, dev, test, **args)  # None: no model
    assert list_runs(builtin_library.store, limit=10) == []


def test_a_bad_assertion_in_the_prompt_is_refused_before_any_run(builtin_library: Library) -> None:
    text = builtin_library.get(PROMPT).file.canonical_text()
    builtin_library.save(text.replace("technique: zero-shot", "technique: zero-shot\n  assert: 3"))
    with pytest.raises(EvaluationError, match=r"metadata\.assert must be a list"):
        improve(builtin_library, None, PROMPT, TRAIN, DEV)


# --- the command --------------------------------------------------------------------------------


def write(path: Path, data: Dataset) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(data.columns))
        writer.writeheader()
        writer.writerows(data.rows)
    return path


def test_the_command_prints_dev_and_test_side_by_side(tiny_cli: Any, tmp_path: Path) -> None:
    files = [write(tmp_path / d.name, d) for d in (TRAIN, DEV, TEST)]
    args = ["improve", PROMPT, "--train", files[0], "--dev", files[1], "--test", files[2]]
    code, out, err = tiny_cli(*args, "--budget", "3", "--save")
    assert code == 0, err
    lines = out.splitlines()
    header = next(line for line in lines if line.split()[:3] == ["VERSION", "VARIANT", "DEV"])
    assert header.split()[-1] == "TEST"
    assert any(line.startswith("original ") and f"{PROMPT}@1" in line for line in lines)
    assert any(line.startswith("winner ") for line in lines)
    assert "3 trials (0 from the cache)" in out
    assert ("saved zero-shot-sentiment@2" in out) or ("nothing saved" in out)
    code, out, err = tiny_cli(*args, "--budget", "3", "--json")
    assert code == 0, err
    assert '"generated": 0' in out and '"saved": null' in out


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (["--budget", "0"], "budget must be at least 1"),
        (["--test", "TRAIN"], "share 12 inputs"),
        (["--dev", "NO_EXPECTED"], "no 'expected' column"),
    ],
)
def test_the_command_refuses_bad_input_with_one_line_and_status_2(
    tiny_cli: Any, tmp_path: Path, extra: list[str], problem: str
) -> None:
    files = {
        "TRAIN": write(tmp_path / "train.csv", TRAIN),
        "DEV": write(tmp_path / "dev.csv", DEV),
        "NO_EXPECTED": write(tmp_path / "plain.csv", NO_EXPECTED),
    }
    extra = [str(files.get(e, e)) for e in extra]
    args = {"--train": str(files["TRAIN"]), "--dev": str(files["DEV"])}
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        args[flag] = value
    code, out, err = tiny_cli("improve", PROMPT, *[x for kv in args.items() for x in kv])
    assert code == 2 and out == ""
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert problem in err


def test_a_prompt_with_its_own_assertions_needs_no_expected_column_in_dev(
    builtin_library: Library,
) -> None:
    text = builtin_library.get(PROMPT).file.canonical_text()
    builtin_library.save(
        text.replace("technique: zero-shot", "technique: zero-shot\n  assert: [is-json]")
    )
    report = improve(
        builtin_library, None, PROMPT, TRAIN, NO_EXPECTED, budget=3, scorer=planted("x")
    )
    assert len(report.trials) == 3


# --- short examples first, then the chosen ones asked other ways and in other orders ------------


def test_candidates_are_tried_shortest_first(builtin_library: Library) -> None:
    train = dataset(
        "train.csv",
        ("a long and winding positive review of the thing", "Positive"),
        ("good", "Positive"),
        ("a long and winding negative review of the thing", "Negative"),
        ("bad", "Negative"),
        ("a long and winding neutral review of the thing", "Neutral"),
        ("fine", "Neutral"),
    )
    report = improve(builtin_library, None, PROMPT, train, DEV, budget=3, scorer=planted("nothing"))
    first = report.trials[0].config.demos or ()
    assert [d.input for d in first][:3] == ["good", "bad", "fine"]  # then the long ones


def test_refine_tries_the_chosen_examples_in_other_orders_and_ways() -> None:
    demos = tuple(Demo(f"text {i}", LABELS[i % 3]) for i in range(3))
    chosen = Config("completion", LABELS, False, demos)
    formats = [
        Config("completion", None, False, demos[:1]),
        Config("completion", LABELS, False, demos[:1]),
        Config("completion", LABELS, True, demos[:1]),
    ]
    out = _refinements(chosen, formats, random.Random(0))
    assert out[:2] == [
        Config("completion", None, False, demos),
        Config("completion", LABELS, True, demos),
    ]
    assert out[2] == replace(chosen, demos=tuple(reversed(demos)))
    chat = [Config("chat", LABELS, True, demos[:1])]
    assert _refinements(chosen, [*formats, *chat], random.Random(0))[-1].mode == "chat"
    assert all(set(c.demos or ()) == set(demos) for c in out)
    assert len(out) == len(set(out)) and chosen not in out


def test_the_refine_phase_runs_after_selection(builtin_library: Library) -> None:
    report = improve(
        builtin_library, None, PROMPT, TRAIN, DEV, budget=60, seed=3, scorer=planted("x")
    )
    phases = [t.phase for t in report.trials]
    assert phases[-1] == "refine" and phases.index("refine") > phases.index("greedy")


# --- instruction candidates -------------------------------------------------------------------


def rewrites(*texts: str) -> Callable[[str, int], list[str]]:
    def rewrite(original: str, draws: int) -> list[str]:
        assert original.startswith("Classify the sentiment") and draws >= 1
        return list(texts)

    return rewrite


def rewarded(word: str) -> Callable[[VersionInfo, Dataset, ChoiceRequest | None], Score]:
    def score(version: VersionInfo, data: Dataset, _: Any) -> Score:
        acc = 1.0 if word in version.file.body else 0.0
        return Score(acc, acc, len(data.rows), log_loss=1.0)

    return score


def test_instruction_rewrites_are_tried_and_the_best_kept(builtin_library: Library) -> None:
    report = improve(
        builtin_library,
        None,
        PROMPT,
        TRAIN,
        DEV,
        TEST,
        budget=12,
        instructions=3,
        scorer=rewarded("BEST"),
        rewriter=rewrites(
            "Here is the new instruction: Say whether the text is Positive, Negative or Neutral.",
            "",  # empty: dropped
            "user:\nSay it",  # a role line would add a turn: dropped
            "Label the {{ text }} now please",  # template syntax: dropped
            "Classify the sentiment of the following text as Positive, Negative, or Neutral.",
            "Decide: Positive, Negative or Neutral? BEST answer with the label.",
            "Decide: Positive, Negative or Neutral? BEST answer with the label.",  # repeated
            "Decide: Positive or Negative? BEST.",  # drops Neutral, which the original names
            "Name the feeling of the text: Positive, Negative or Neutral.",
        ),
    )
    tried = [t.config.instruction for t in report.trials if t.phase == "instructions"]
    assert tried == [
        "Say whether the text is Positive, Negative or Neutral.",
        "Decide: Positive, Negative or Neutral? BEST answer with the label.",
        "Name the feeling of the text: Positive, Negative or Neutral.",
    ]
    assert report.winner.config.instruction == tried[1]
    assert any("instruction rewritten" in c for c in report.changes())
    # The trial differs from the original only in its instruction line.
    winner = report.winner.file
    original = builtin_library.get(PROMPT).file
    assert winner.body.startswith(f"{tried[1]}\n")
    assert winner.body.split("\n")[1:][-3:] == original.body.split("\n")[1:][-3:]
    assert winner.render({"text": "hi"}).text.startswith(str(tried[1]))


def test_the_model_writes_the_rewrites_as_a_stored_run(runner: Runner) -> None:
    report = improve(
        runner.library, runner, PROMPT, TRAIN, DEV, budget=5, max_examples=3, instructions=2
    )
    assert len([t for t in report.trials if t.phase == "instructions"]) <= 2
    meta = [r for r in list_runs(runner.library.store, limit=1000) if r.samples == 4]
    assert meta, "the meta-prompt ran once with two draws per rewrite wanted"


@pytest.mark.parametrize(
    ("instructions", "problem"),
    [(-1, "ask for 0 to 20 rewrites, got -1"), (21, "ask for 0 to 20 rewrites, got 21")],
)
def test_a_bad_number_of_instructions_is_refused(
    builtin_library: Library, instructions: int, problem: str
) -> None:
    with pytest.raises(ImproveError, match=problem):
        improve(builtin_library, None, PROMPT, TRAIN, DEV, instructions=instructions)


def test_a_prompt_without_an_instruction_has_none_to_rewrite(builtin_library: Library) -> None:
    pf = builtin_library.get(PROMPT).file
    body_only = pf.canonical_text().replace(
        "Classify the sentiment of the following text as Positive, Negative, or Neutral.\n", ""
    )
    builtin_library.save(body_only)
    with pytest.raises(ImproveError, match="has no instruction to rewrite"):
        improve(builtin_library, None, PROMPT, TRAIN, DEV, instructions=2)
