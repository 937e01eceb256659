"""Assertions under promptfoo's names give promptfoo's verdicts and scores.

tests/data/promptfoo_parity.json is promptfoo's own record of the cases in
tests/data/promptfoo_cases.yaml (made by scripts/promptfoo_parity, which says how to
regenerate it): the output promptfoo's echo provider produced, its verdict, score and
latency. Each case is scored here on the same output; no Node is needed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from workbench.scorers import SCORERS, AssertionConfigError, Context, parse_check, run_check

DATA = Path(__file__).parent / "data"
FIXTURE = json.loads((DATA / "promptfoo_parity.json").read_text(encoding="utf-8"))
CASES: list[dict[str, Any]] = FIXTURE["cases"]
SCORED = ("bleu", "gleu", "rouge-n")  # promptfoo's score is the metric itself
# Where the verdicts differ, and why: SQL is checked with SQLite's grammar here, MySQL's there
KNOWN = {
    ("is-sql", "SHOW TABLES"): "MySQL-only statement",
    ("is-sql", "SELECT a FROM t ORDER BY a DESC NULLS LAST"): "NULLS LAST is not MySQL",
}


def _ours(case: dict[str, Any]) -> tuple[str | bool, float | None]:
    """("refused", None) when the assertion is refused before running, else (passed, value)."""
    try:
        check = parse_check(case["assert"])
    except AssertionConfigError:
        return "refused", None
    latency = case["latency_ms"] / 1000 if case["latency_ms"] is not None else None
    score = run_check(check, Context(case["output"], latency_s=latency))
    return score.passed, score.value


def test_the_fixture_matches_the_case_file() -> None:
    cases = yaml.safe_load((DATA / "promptfoo_cases.yaml").read_text(encoding="utf-8"))["cases"]
    assert [c["assert"] for c in cases] == [c["assert"] for c in CASES]
    assert len(CASES) >= 100
    outputs = {(c["assert"]["type"], c["output"]) for c in CASES}
    assert set(KNOWN) <= outputs
    assert FIXTURE["promptfoo"] == "0.123.1"


@pytest.mark.parametrize("index", range(len(CASES)))
def test_same_verdict_as_promptfoo(index: int) -> None:
    case = CASES[index]
    verdict, value = _ours(case)
    if case["error"]:
        # promptfoo raised: a value it refuses (we refuse it before running) or a measurement
        # its echo provider cannot give (log-probabilities, cost): a failed row here, or a cost
        # of 0, which a local model's call really has
        if case["assert"]["type"] == "cost":
            assert verdict is True
        else:
            assert verdict in ("refused", False), case
        return
    if (case["assert"]["type"], case["output"]) in KNOWN:
        assert verdict == (not case["pass"]), case  # still the known difference
        return
    assert verdict == case["pass"], (case, verdict)
    kind = case["assert"]["type"]
    if kind in SCORED:
        assert value is not None and math.isclose(value, case["score"], abs_tol=1e-9), case


def test_every_promptfoo_name_we_accept_is_in_the_fixture() -> None:
    ours_only = {
        "istarts-with",
        "equals-trimmed",
        "length",
        "words",
        "is-json-fenced",
        "json-schema",
        "json-field",
        "exact-match",
        "f1",
        "rouge-1",
        "rouge-2",
        "rouge-l",
        "sacrebleu",
        "chrf",
        "edit-similarity",
        "latency-s",
        "tokens",
        # promptfoo names that need a model or embeddings: not deterministic on echo
        "similar",
        "model-graded",
        "perplexity-score",
    }
    covered = {c["assert"]["type"].removeprefix("not-") for c in CASES}
    assert set(SCORERS) - ours_only <= covered
