"""Answer choices on the tiny model: each choice's score is the summed log-probability of its
tokens after the prompt, as one plain forward pass over prompt + choice gives it, however the
rows are batched; calibration is Zhao et al.'s correction, by hand; bad choices say so."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from workbench.backends.base import ModelInput
from workbench.choices import (
    ChoiceRequest,
    ChoiceResult,
    ChoicesError,
    average,
    calibrate,
    continuation,
    normalise,
    parse_choices,
)

TOLERANCE = 1e-4
SHARED = "Classify the sentiment of the following text as Positive, Negative, or Neutral. Text: "
TEXTS = ["I love this product!", "awful", "It arrived on Tuesday.", "fine, I guess"]
CHOICES = ["Positive", "Negative", "Neutral", "a much longer answer than the others"]


def plain_score(backend: Any, model_input: ModelInput, choice: str) -> float:
    """Summed log-probability of the choice's tokens: one forward pass over prompt + choice,
    the choice's tokens being those of prompt + choice after the prompt's own."""
    prompt = backend.encode(model_input)
    text = model_input.text + continuation(model_input.text, choice)
    full = backend.encode(ModelInput(text, model_input.add_special_tokens))
    assert full[: len(prompt)] == prompt
    ids = torch.tensor([full])
    with torch.inference_mode():
        logp = backend.model(input_ids=ids).logits[0].float().log_softmax(-1)
    return sum(float(logp[i - 1, full[i]]) for i in range(len(prompt), len(full)))


def inputs(texts: list[str]) -> list[ModelInput]:
    return [ModelInput(SHARED + t + " Sentiment:", add_special_tokens=True) for t in texts]


@pytest.mark.parametrize("batch_size", [None, 1, 3], ids=["auto", "one-by-one", "three"])
def test_choice_scores_equal_a_plain_forward_pass(
    tiny_backend: Any, batch_size: int | None
) -> None:
    xs = inputs(TEXTS)
    scored = tiny_backend.score_choices(xs, CHOICES, batch_size=batch_size)
    for x, result in zip(xs, scored, strict=True):
        assert result is not None
        assert result.prompt_tokens == len(tiny_backend.encode(x))
        for choice, value in zip(CHOICES, result.logprobs, strict=True):
            assert abs(value - plain_score(tiny_backend, x, choice)) < TOLERANCE, choice


def test_single_token_choices_need_one_pass_and_match(tiny_backend: Any) -> None:
    xs = inputs(TEXTS[:2])
    singles = [
        c for c in ["a", "b", "c", "!"] if len(tiny_backend.choice_tokens(xs[0], [c])[0]) == 1
    ]
    assert len(singles) >= 2
    scored = tiny_backend.score_choices(xs, singles)
    for x, result in zip(xs, scored, strict=True):
        for choice, value in zip(singles, result.logprobs, strict=True):
            assert abs(value - plain_score(tiny_backend, x, choice)) < TOLERANCE


def test_a_chat_input_scores_without_a_leading_space(tiny_backend: Any) -> None:
    x = ModelInput("<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n", False)
    [result] = tiny_backend.score_choices([x], ["Positive", "Negative"])
    assert continuation(x.text, "Positive") == "Positive"
    for choice, value in zip(["Positive", "Negative"], result.logprobs, strict=True):
        assert abs(value - plain_score(tiny_backend, x, choice)) < TOLERANCE


def test_the_answer_is_the_most_likely_choice() -> None:
    result = ChoiceResult.score(["A", "B", "C"], [-3.0, -1.0, -2.0])
    assert result.answer == "B"
    assert abs(sum(result.probs) - 1) < 1e-12
    assert result.calibrated is None


def test_calibration_matches_a_hand_computation() -> None:
    # three content-free inputs' distributions, averaged: p_cf
    cf = [[0.7, 0.2, 0.1], [0.5, 0.3, 0.2], [0.6, 0.25, 0.15]]
    p_cf = average(cf)
    assert p_cf == pytest.approx([0.6, 0.25, 0.15])
    row = [0.5, 0.3, 0.2]  # raw argmax: A
    by_hand = [0.5 / 0.6, 0.3 / 0.25, 0.2 / 0.15]
    total = sum(by_hand)
    assert calibrate(row, p_cf) == pytest.approx([v / total for v in by_hand])
    logprobs = [math.log(v) for v in row]
    result = ChoiceResult.score(["A", "B", "C"], logprobs, p_cf)
    assert result.probs == pytest.approx(row)
    assert result.raw_answer == "A"
    assert result.answer == "C"  # 1.333 > 1.2 > 0.833
    assert ChoiceResult.from_dict(result.as_dict()) == result


def test_normalise_is_a_softmax_that_does_not_overflow() -> None:
    assert normalise([-1000.0, -1000.0]) == pytest.approx([0.5, 0.5])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "choices is empty"),
        ("", "choices is empty"),
        (" , ", "choices is empty"),
        (["Positive"], "only one choice"),
        (["Positive", "Positive"], "'Positive' is given twice"),
        ("Positive,Negative,Positive", "'Positive' is given twice"),
        (["Positive", 3], "choice 2 is int 3, not text"),
        (["Positive", None], "choice 2 is NoneType"),
        (["Positive", "  "], "choice 2 is empty"),
        ({"a": 1}, "must be a list"),
        (5, "must be a list"),
    ],
)
def test_bad_choices_say_what_is_wrong(value: Any, message: str) -> None:
    with pytest.raises(ChoicesError, match=message):
        parse_choices(value)


def test_choices_from_the_command_line_are_split_and_trimmed() -> None:
    assert parse_choices("Positive, Negative ,Neutral") == ("Positive", "Negative", "Neutral")


def test_a_request_without_choices_or_calibration_is_none() -> None:
    assert ChoiceRequest.build(None, False) is None
    request = ChoiceRequest.build("A,B", True)
    assert request is not None
    assert ChoiceRequest.from_stored(request.stored()) == request


def test_a_choice_that_tokenises_to_nothing_is_refused(tiny_backend: Any, monkeypatch: Any) -> None:
    [x] = inputs(["fine"])
    real = tiny_backend.encode
    monkeypatch.setattr(
        tiny_backend,
        "encode",
        lambda mi: (
            real(mi)
            if not mi.text.endswith("Z")
            else real(ModelInput(mi.text[:-2], mi.add_special_tokens))
        ),
    )
    monkeypatch.setattr("workbench.choices.LEADING_SPACE", True)
    with pytest.raises(ChoicesError, match="'Z' tokenises to nothing"):
        tiny_backend.score_choices([x], ["Positive", "Z"])


# --- through the runner -----------------------------------------------------------------------

LABELS = ("Positive", "Negative", "Neutral")
ROWS = [{"text": t} for t in TEXTS]


def test_a_prompt_that_declares_choices_is_scored(runner: Any, prompt_text: Any) -> None:
    version = save(runner, prompt_text, choices=list(LABELS))
    summary = runner.run([version], ROWS)
    assert len(summary.outputs) == len(ROWS)
    for out in summary.outputs:
        assert out.finish_reason == "choice"
        assert out.completion_tokens == 0
        result = ChoiceResult.from_dict(out.choices)
        assert result.choices == LABELS and result.calibrated is None
        assert out.text == result.answer == LABELS[max(range(3), key=lambda i: result.probs[i])]
        x = ModelInput(out.model_input, True)
        for choice, value in zip(LABELS, result.logprobs, strict=True):
            assert abs(value - plain_score(runner.backend, x, choice)) < TOLERANCE


def test_an_export_of_a_scored_run_carries_each_distribution(runner: Any, prompt_text: Any) -> None:
    import json

    from workbench.exchange import export_outputs

    version = save(runner, prompt_text, choices=list(LABELS))
    outputs = runner.run([version], ROWS).outputs
    lines = export_outputs(outputs, "jsonl").decode().splitlines()
    assert [json.loads(line)["choices"] for line in lines] == [o.choices for o in outputs]
    assert all(o.choices for o in outputs)


def test_calibration_is_stored_with_the_run_and_matches_by_hand(
    runner: Any, prompt_text: Any
) -> None:
    version = save(runner, prompt_text)
    request = ChoiceRequest.build(",".join(LABELS), calibrate=True)
    summary = runner.run([version], ROWS, choices=request)
    with runner.store.read() as s:
        from workbench.store import Run

        stored = s.get_one(Run, summary.run.id).calibration
    assert stored["choices"] == list(LABELS)
    assert stored["content_free"] == ["N/A", "", "[MASK]"]
    [dist] = stored["distributions"].values()
    assert dist["variables"] == ["text"]
    # by hand: the prompt with each content-free input, scored, normalised, averaged
    by_hand = []
    for value in ["N/A", "", "[MASK]"]:
        x = ModelInput(f"Text: {value}\nSentiment:", True)
        logprobs = [plain_score(runner.backend, x, c) for c in LABELS]
        top = max(logprobs)
        weights = [math.exp(v - top) for v in logprobs]
        by_hand.append([w / sum(weights) for w in weights])
    p_cf = [sum(d[i] for d in by_hand) / 3 for i in range(3)]
    assert dist["probs"] == pytest.approx(p_cf, abs=TOLERANCE)
    for out in summary.outputs:
        result = ChoiceResult.from_dict(out.choices)
        q = [p / c for p, c in zip(result.probs, p_cf, strict=True)]
        q = [v / sum(q) for v in q]
        assert result.calibrated == pytest.approx(q, abs=TOLERANCE)
        assert out.text == LABELS[q.index(max(q))]


def test_scored_generated_and_calibrated_answers_never_share_a_cache_entry(
    runner: Any, prompt_text: Any
) -> None:
    version = save(runner, prompt_text)
    params = {"max_new_tokens": 3}
    generated = runner.run([version], ROWS[:2], overrides=params)
    raw = runner.run([version], ROWS[:2], overrides=params, choices=ChoiceRequest.build("A,B"))
    calibrated = runner.run(
        [version], ROWS[:2], overrides=params, choices=ChoiceRequest.build("A,B", True)
    )
    other = runner.run([version], ROWS[:2], overrides=params, choices=ChoiceRequest.build("A,C"))
    keys = set()
    for summary in (generated, raw, calibrated, other):
        assert not any(o.cached for o in summary.outputs)
        keys |= {o.id for o in summary.outputs}
    assert all(o.choices is None for o in generated.outputs)
    assert all(o.choices["calibrated"] is None for o in raw.outputs)
    assert all(o.choices["calibrated"] is not None for o in calibrated.outputs)
    again = runner.run(
        [version], ROWS[:2], overrides=params, choices=ChoiceRequest.build("A,B", True)
    )
    assert all(o.cached for o in again.outputs)
    assert [o.choices for o in again.outputs] == [o.choices for o in calibrated.outputs]
    assert [o.text for o in again.outputs] == [o.text for o in calibrated.outputs]


def test_a_single_streamed_row_is_scored_too(runner: Any, prompt_text: Any) -> None:
    version = save(runner, prompt_text, choices=list(LABELS))
    streamed = runner.stream(version, {"text": "fine"})
    text = "".join(streamed)
    assert streamed.output is not None and streamed.output.finish_reason == "choice"
    assert text == streamed.output.text in LABELS


def test_calibration_without_choices_is_refused_before_the_model_loads(
    builtin_library: Any, prompt_text: Any
) -> None:
    from workbench.runner import Runner

    def no_model() -> Any:
        raise AssertionError("the model was loaded")

    version = save_in(builtin_library, prompt_text)
    with pytest.raises(ChoicesError, match="calibration needs answer choices"):
        Runner(builtin_library, no_model).run([version], ROWS, choices=ChoiceRequest(None, True))


def test_choices_with_samples_are_refused(runner: Any, prompt_text: Any) -> None:
    version = save(runner, prompt_text, choices=list(LABELS))
    with pytest.raises(ChoicesError, match="scored, not sampled"):
        runner.run([version], ROWS, samples=3)


def test_a_server_is_named_when_it_cannot_score_choices(
    builtin_library: Any, prompt_text: Any
) -> None:
    from workbench.backends.base import Capabilities, CapabilityError, ModelInfo
    from workbench.runner import Runner

    class Server:
        info = ModelInfo("openai:gpt-x@http://127.0.0.1:9/v1", "", "", "", 4096, "")
        capabilities = Capabilities()

    version = save_in(builtin_library, prompt_text, choices=list(LABELS))
    with pytest.raises(
        CapabilityError, match=r"openai:gpt-x@http://127.0.0.1:9/v1 gives no log-prob"
    ):
        Runner(builtin_library, Server()).run([version], ROWS)  # type: ignore[arg-type]


def save_in(library: Any, prompt_text: Any, **metadata: Any) -> Any:
    text = prompt_text(
        "labels",
        "Text: {{ text }}\nSentiment:",
        model={"apiType": "completion"},
        metadata={"technique": "zero-shot", **metadata},
    )
    return library.save(text).version


def save(runner: Any, prompt_text: Any, **metadata: Any) -> Any:
    return save_in(runner.library, prompt_text, **metadata)


def test_calibration_keeps_examples_given_in_the_rows(runner: Any) -> None:
    version = runner.library.get("few-shot-sentiment")
    examples = [{"input": "yay", "output": "Positive"}, {"input": "boo", "output": "Negative"}]
    rows = [{"text": t, "examples": examples} for t in TEXTS[:2]]
    summary = runner.run([version], rows, choices=ChoiceRequest.build("Positive,Negative", True))
    with runner.store.read() as s:
        from workbench.store import Run

        stored = s.get_one(Run, summary.run.id).calibration
    [dist] = stored["distributions"].values()
    assert dist["variables"] == ["text"]
    assert all(o.choices["calibrated"] is not None for o in summary.outputs)


def test_single_and_multi_token_choices_together(tiny_backend: Any) -> None:
    xs = inputs(TEXTS)
    single = next(
        c for c in ["a", "b", "!", "."] if len(tiny_backend.choice_tokens(xs[0], [c])[0]) == 1
    )
    mixed = [single, "Qz", "a much longer answer than the others"]
    assert [len(t) > 1 for t in tiny_backend.choice_tokens(xs[0], mixed)] == [False, True, True]
    for x, result in zip(xs, tiny_backend.score_choices(xs, mixed), strict=True):
        for choice, value in zip(mixed, result.logprobs, strict=True):
            assert abs(value - plain_score(tiny_backend, x, choice)) < TOLERANCE, choice


def test_a_resumed_run_scores_the_rest_with_the_stored_calibration(
    runner: Any, prompt_text: Any
) -> None:
    from sqlalchemy import delete

    from workbench.store import Output, Run

    version = save(runner, prompt_text)
    request = ChoiceRequest.build(",".join(LABELS), calibrate=True)
    first = runner.run([version], ROWS, choices=request, use_cache=False)
    run_id = first.run.id
    with runner.store.write() as s:
        s.execute(delete(Output).where(Output.run_id == run_id, Output.row_index >= 2))
        s.get_one(Run, run_id).status = "failed"
        stored = s.get_one(Run, run_id).calibration
    calls: list[int] = []
    real = runner.backend.score_choices

    def counting(inputs: Any, choices: Any, **kw: Any) -> Any:
        calls.append(len(inputs))
        return real(inputs, choices, **kw)

    runner.backend.score_choices = counting
    try:
        resumed = runner.resume(run_id)
    finally:
        del runner.backend.score_choices
    assert calls == [2]  # the two missing rows; the content-free prompts are not scored again
    by_row = {o.row_index: o for o in resumed.outputs}
    for o in first.outputs:
        again = by_row[o.row_index].choices
        for key in ("logprobs", "probs", "calibrated"):
            assert again[key] == pytest.approx(o.choices[key], abs=TOLERANCE)
        assert by_row[o.row_index].text == o.text
    with runner.store.read() as s:
        assert s.get_one(Run, run_id).calibration == stored


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[]", "metadata.choices: choices is empty"),
        ("[Positive, Positive]", "metadata.choices: choice 'Positive' is given twice"),
        ("[Positive, 3]", "metadata.choices: choice 2 is int 3, not text: quote it"),
        ("[Positive, null]", "metadata.choices: choice 2 is NoneType None, not text"),
    ],
)
def test_a_file_with_bad_choices_is_refused_naming_file_and_line(value: str, message: str) -> None:
    from workbench.errors import PromptFileError
    from workbench.templates import parse_prompt

    text = (
        "---\nname: labels\nmodel:\n  apiType: completion\nmetadata:\n"
        f"  choices: {value}\n---\nText: {{{{ text }}}}\nSentiment:\n"
    )
    with pytest.raises(PromptFileError) as caught:
        parse_prompt(text, "labels.prompty")
    assert str(caught.value).startswith("labels.prompty, line 6: " + message)
    assert "\n" not in str(caught.value)
