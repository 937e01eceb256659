"""The perplexity scorer reuses an output's stored token log-probabilities when they stand for
its text (greedy, raw model distribution, not cut by a stop string): no forward pass. Otherwise
it scores the text with the model, as before."""

from __future__ import annotations

import math
from typing import Any

import pytest

from workbench.datasets import Dataset
from workbench.evaluate import evaluate
from workbench.logprobs import TokenLogprobs
from workbench.runner import Runner
from workbench.runs import run_outputs, token_logprobs
from workbench.scorers import Context, parse_check, run_check, stored_perplexity


def _logprobs(values: list[float], processors: tuple[str, ...] = ()) -> TokenLogprobs:
    n = len(values)
    return TokenLogprobs(
        tuple(range(n)), tuple(values), ((0,),) * n, ((0.0,),) * n, 1, processors=processors
    )


@pytest.mark.parametrize(
    ("values", "reason", "processors", "expected"),
    [
        ([-1.0, -3.0, -0.5], "eos", (), (math.exp(2.0), 2)),  # the final EOS is not text
        ([-1.0, -3.0], "length", (), (math.exp(2.0), 2)),
        ([-1.0, -3.0], "stop", (), None),  # text cut inside the tokens
        ([-1.0, -3.0], "choice", (), None),
        ([-1.0, -3.0], "length", ("temperature", "top_p"), None),  # not the model's own
        ([-0.2], "eos", (), None),  # only the EOS: no text tokens
        ([-1.0, float("-inf")], "length", (), None),
    ],
)
def test_when_stored_log_probabilities_stand_for_the_text(
    values: list[float], reason: str, processors: tuple[str, ...], expected: Any
) -> None:
    found = stored_perplexity(_logprobs(values, processors), reason)
    if expected is None:
        assert found is None
    else:
        assert found is not None and found[0] == pytest.approx(expected[0])
        assert found[1] == expected[1]


def test_stored_values_need_no_model_and_say_where_they_come_from() -> None:
    check = parse_check("perplexity<=10")
    ctx = Context("Positive", token_logprobs=_logprobs([-1.0, -3.0]), finish_reason="length")
    score = run_check(check, ctx)  # no model given: nothing could run a forward pass
    assert score.value == pytest.approx(math.exp(2.0)) and score.passed
    assert score.detail == "perplexity 7.39 ≤ 10, given its prompt (stored, 2 tokens)"
    fallback = run_check(check, Context("Positive", finish_reason="stop"))
    assert fallback.value is None and "needs a loaded model" in fallback.detail


def _rows() -> Dataset:
    rows = ({"text": "I love it"}, {"text": "It broke at once"})
    return Dataset("rows", ("text",), rows)


def test_evaluation_reuses_greedy_outputs_log_probabilities(
    runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_forward_pass(text: str) -> Any:
        raise AssertionError("perplexity ran a forward pass")

    monkeypatch.setattr(runner.backend, "log_likelihood", no_forward_pass)
    report = evaluate(
        runner.library,
        runner,
        ["zero-shot-sentiment"],
        _rows(),
        ["perplexity"],
        overrides={"max_new_tokens": 5, "temperature": 0},
    )
    (version,) = report.versions
    outputs = run_outputs(runner.store, version.run_id)
    stored = token_logprobs(runner.store, [o.id for o in outputs])
    for row, output in zip(version.rows, outputs, strict=True):
        values = list(stored[output.id].logprobs)
        if output.finish_reason == "eos":
            values = values[:-1]
        (score,) = row.scores
        assert score.value == pytest.approx(math.exp(-sum(values) / len(values)), rel=1e-6)
        assert "given its prompt (stored" in score.detail


def test_sampled_outputs_are_scored_by_the_model_as_before(runner: Runner) -> None:
    report = evaluate(
        runner.library,
        runner,
        ["zero-shot-sentiment"],
        _rows(),
        ["perplexity"],
        overrides={"max_new_tokens": 5, "temperature": 0.7, "seed": 3},
    )
    for row in report.versions[0].rows:
        (score,) = row.scores
        assert row.output
        assert score.value == pytest.approx(runner.backend.log_likelihood(row.output).perplexity)
        assert "stored" not in score.detail
