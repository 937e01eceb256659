"""Token log-probabilities on the tiny model: each generated token's log-probability and its
top-k alternatives equal a reference from one plain forward pass over prompt + answer (with
the same processors applied), on every generation path, and they are stored and reused."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from transformers.generation.logits_process import (
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from workbench.backends.base import ModelInput
from workbench.backends.processors import FrequencyPresencePenalty
from workbench.logprobs import LogprobsFormatError, TokenLogprobs
from workbench.params import GenerationParams
from workbench.runner import Runner
from workbench.runs import token_logprobs

TOLERANCE = 1e-4
SHARED = "You are a careful reviewer of product reviews. Answer with one word. Review: "
REVIEWS = ["the phone was great", "awful delivery, never again!!", "fine", "lovely battery life"]


def reference(
    backend: Any, model_input: ModelInput, record: TokenLogprobs, params: GenerationParams
) -> torch.Tensor:
    """Per answer step, the log-softmax of one forward pass's logits over prompt + answer after
    the processors `params` names, applied as transformers' own classes (and ours) do."""
    prompt = backend.encode(model_input)
    ids = torch.tensor([prompt + list(record.tokens)])
    with torch.inference_mode():
        logits = backend.model(input_ids=ids).logits[0].float()
    steps = []
    for i in range(len(record)):
        seen = ids[:, : len(prompt) + i]
        scores = logits[len(prompt) + i - 1 : len(prompt) + i].clone()
        if params.repetition_penalty != 1.0:
            scores = RepetitionPenaltyLogitsProcessor(params.repetition_penalty)(seen, scores)
        if params.penalised:
            scores = FrequencyPresencePenalty.for_params(params, len(prompt))(seen, scores)
        if params.sampling:
            if params.temperature != 1.0:
                scores = TemperatureLogitsWarper(params.temperature)(seen, scores)
            if params.top_k:
                scores = TopKLogitsWarper(params.top_k)(seen, scores)
            if params.top_p < 1.0:
                scores = TopPLogitsWarper(params.top_p)(seen, scores)
        steps.append(scores.log_softmax(-1)[0])
    return torch.stack(steps)


def check(
    backend: Any, model_input: ModelInput, record: TokenLogprobs | None, params: GenerationParams
) -> None:
    assert record is not None and len(record) > 0
    ref = reference(backend, model_input, record, params)
    for i, token in enumerate(record.tokens):
        assert abs(record.logprobs[i] - float(ref[i, token])) < TOLERANCE, i
        best = ref[i].topk(record.k)
        for alt, value, want_id, want in zip(
            record.top_ids[i],
            record.top_logprobs[i],
            best.indices.tolist(),
            best.values.tolist(),
            strict=True,
        ):
            if math.isinf(want):  # cut by top-k/top-p: -inf, in any order
                assert math.isinf(value) and value < 0
                continue
            assert abs(value - want) < TOLERANCE
            assert alt == want_id or abs(float(ref[i, alt]) - want) < TOLERANCE  # ties
    # the alternatives are the processed distribution's: the chosen token is among them or below
    assert all(
        lp <= top[0] + TOLERANCE
        for lp, top in zip(record.logprobs, record.top_logprobs, strict=True)
    )


def inputs(texts: list[str]) -> list[ModelInput]:
    return [ModelInput(t, add_special_tokens=True) for t in texts]


GREEDY = GenerationParams(max_new_tokens=12)
PENALISED = GenerationParams(
    max_new_tokens=12, repetition_penalty=1.3, frequency_penalty=0.4, presence_penalty=0.2
)
SAMPLED = GenerationParams(max_new_tokens=12, temperature=0.7, top_p=0.9, top_k=40, seed=7)


@pytest.mark.parametrize(
    "params", [GREEDY, PENALISED, SAMPLED], ids=["greedy", "penalised", "sampled"]
)
def test_one_answer_matches_a_plain_forward_pass(
    tiny_backend: Any, params: GenerationParams
) -> None:
    [x] = inputs(["The delivery was"])
    [g] = tiny_backend.generate([x], params)
    assert g is not None and g.logprobs is not None
    assert len(g.logprobs) == g.completion_tokens
    check(tiny_backend, x, g.logprobs, params)


def test_the_record_names_the_processors(tiny_backend: Any) -> None:
    [x] = inputs(["The delivery was"])
    [greedy] = tiny_backend.generate([x], GREEDY)
    [sampled] = tiny_backend.generate([x], SAMPLED)
    [penalised] = tiny_backend.generate([x], PENALISED)
    assert greedy.logprobs.after == "processors" and greedy.logprobs.processors == ()
    assert sampled.logprobs.processors == ("temperature", "top_k", "top_p")
    assert penalised.logprobs.processors == ("repetition_penalty", "frequency_presence_penalty")
    # greedy: the chosen token is the best one
    assert all(
        t == top[0] for t, top in zip(greedy.logprobs.tokens, greedy.logprobs.top_ids, strict=True)
    )


def test_sampled_tokens_are_the_ones_transformers_draws(tiny_backend: Any) -> None:
    """Giving generate the warpers as processors (so the recorder sees their output) draws the
    same tokens as generate's own temperature/top-k/top-p options under the same seed."""
    [x] = inputs(["The delivery was"])
    [g] = tiny_backend.generate([x], SAMPLED)
    ids = torch.tensor([tiny_backend.encode(x)])
    torch.manual_seed(SAMPLED.seed)
    with torch.inference_mode():
        out = tiny_backend.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=True,
            temperature=SAMPLED.temperature,
            top_p=SAMPLED.top_p,
            top_k=SAMPLED.top_k,
            max_new_tokens=SAMPLED.max_new_tokens,
            pad_token_id=tiny_backend.pad_id,
            eos_token_id=sorted(tiny_backend.eos_ids),
        )
    assert list(g.logprobs.tokens) == out[0, ids.shape[1] :].tolist()[: len(g.logprobs)]


@pytest.mark.parametrize(
    "params", [GREEDY, PENALISED, SAMPLED], ids=["greedy", "penalised", "sampled"]
)
@pytest.mark.parametrize("shared", [False, True], ids=["batched", "prefix-reused"])
def test_batched_and_prefix_reused_rows_match(
    tiny_backend: Any, params: GenerationParams, shared: bool
) -> None:
    xs = inputs([(SHARED if shared else "") + r for r in REVIEWS])
    generations = tiny_backend.generate(xs, params, seeds=[params.seed + i for i in range(len(xs))])
    for x, g in zip(xs, generations, strict=True):
        assert g is not None and g.logprobs is not None and len(g.logprobs) == g.completion_tokens
        if g.batch_size > 1:
            assert not params.sampling
        check(tiny_backend, x, g.logprobs, params)


def test_rows_reported_as_they_finish_keep_their_logprobs(tiny_backend: Any) -> None:
    xs = inputs([SHARED + r for r in REVIEWS])
    params = GenerationParams(max_new_tokens=10, stop=("e",))
    seen: dict[int, Any] = {}
    tiny_backend.generate(
        xs, params, rows_as_they_finish=True, on_batch=lambda done: seen.update(dict(done))
    )
    assert len(seen) == len(xs)
    for i, x in enumerate(xs):
        assert len(seen[i].logprobs) == seen[i].completion_tokens
        check(tiny_backend, x, seen[i].logprobs, params)


@pytest.mark.parametrize("params", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_streamed_answer_matches(tiny_backend: Any, params: GenerationParams) -> None:
    [x] = inputs(["The delivery was"])
    stream = tiny_backend.stream(x, params)
    text = "".join(stream)
    assert stream.result is not None and stream.result.text == text
    record = stream.result.logprobs
    assert record is not None and len(record) == stream.result.completion_tokens
    check(tiny_backend, x, record, params)
    [batched] = tiny_backend.generate([x], params)
    assert batched.logprobs.tokens == record.tokens  # the same answer by either path


def test_the_backend_declares_it(tiny_backend: Any) -> None:
    assert tiny_backend.capabilities.has("logprobs")


# --- the stored format ---------------------------------------------------------------------------


def test_bytes_round_trip_and_size() -> None:
    record = TokenLogprobs(
        (5, 9),
        (-0.5, -1.25),
        ((5, 1, 2, 3, 4), (7, 9, 1, 2, 3)),
        ((-0.5, -1.0, -2.0, -3.0, float("-inf")), (-0.125, -1.25, -2.5, -3.5, -4.5)),
        5,
        "processors",
        ("temperature", "top_p"),
    )
    blob = record.to_bytes()
    assert TokenLogprobs.from_bytes(blob) == record
    longer = TokenLogprobs(
        record.tokens * 2,
        record.logprobs * 2,
        record.top_ids * 2,
        record.top_logprobs * 2,
        5,
        "processors",
        ("temperature", "top_p"),
    )
    assert len(longer.to_bytes()) - len(blob) == 2 * 48  # bytes per token at k = 5
    for bad in (b"", b"nope", blob[:-3], b"WLP1\xff\xff\xff\xff{"):
        with pytest.raises(LogprobsFormatError):
            TokenLogprobs.from_bytes(bad)


# --- through the runner: stored, read back, kept by cached answers ------------------------


def test_stored_with_the_output_and_kept_by_the_cache(runner: Runner) -> None:
    version = runner.library.get("zero-shot-sentiment")
    rows = [{"text": r} for r in REVIEWS]
    first = runner.run([version], rows, overrides={"max_new_tokens": 8})
    stored = token_logprobs(runner.store, [o.id for o in first.outputs])
    assert set(stored) == {o.id for o in first.outputs}
    for o in first.outputs:
        assert len(stored[o.id]) == o.completion_tokens
        check(
            runner.backend,
            ModelInput(o.model_input, True),
            stored[o.id],
            GenerationParams(max_new_tokens=8),
        )
    again = runner.run([version], rows, overrides={"max_new_tokens": 8})
    assert all(o.cached for o in again.outputs)
    kept = token_logprobs(runner.store, [o.id for o in again.outputs])
    for old, new in zip(first.outputs, again.outputs, strict=True):
        assert kept[new.id] == stored[old.id]


def test_streamed_output_is_stored_and_cached_with_them(runner: Runner) -> None:
    version = runner.library.get("zero-shot-sentiment-chat")
    streamed = runner.stream(version, {"text": "hi"}, overrides={"max_new_tokens": 10})
    "".join(streamed)
    assert streamed.output is not None
    [record] = token_logprobs(runner.store, [streamed.output.id]).values()
    assert len(record) == streamed.output.completion_tokens
    again = runner.stream(version, {"text": "hi"}, overrides={"max_new_tokens": 10})
    "".join(again)
    assert again.cached and again.output is not None
    assert token_logprobs(runner.store, [again.output.id])[again.output.id] == record


def test_outputs_without_them_or_unreadable_are_absent(
    runner: Runner, caplog: pytest.LogCaptureFixture
) -> None:
    """Outputs stored before migration 0009 (NULL) have none; a blob this version cannot read
    is left out and logged, not an error for the page that asked."""
    from sqlalchemy import update

    from workbench.store import Output

    version = runner.library.get("zero-shot-sentiment")
    summary = runner.run(
        [version], [{"text": r} for r in REVIEWS[:3]], overrides={"max_new_tokens": 4}
    )
    old, odd, fine = (o.id for o in summary.outputs)
    with runner.store.write() as s:
        s.execute(update(Output).where(Output.id == old).values(token_logprobs=None))
        s.execute(update(Output).where(Output.id == odd).values(token_logprobs=b"WLP9 from later"))
    with caplog.at_level("WARNING"):
        found = token_logprobs(runner.store, [old, odd, fine])
    assert set(found) == {fine}
    assert f"output {odd}: token log-probabilities unreadable" in caplog.text
