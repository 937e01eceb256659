"""Branching an answer at a token on the tiny model: the branch keeps the parent's first N
tokens exactly (ids, and log-probabilities to 1e-4), puts the chosen token at N, continues with
the parent's parameters, records its parent, and is refused with the reason when the parent no
longer means the same token ids."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from sqlalchemy import update
from test_logprobs import check

from workbench.backends.base import ModelInput
from workbench.branching import BranchError, branch_output, branches, children
from workbench.errors import NotFoundError
from workbench.params import GenerationParams
from workbench.runner import Runner
from workbench.runs import OutputRecord, run_outputs, token_logprobs
from workbench.store import Output

TOLERANCE = 1e-4
MAX_NEW = 12


def _parent(runner: Runner, **overrides: Any) -> OutputRecord:
    version = runner.library.get("zero-shot-sentiment")
    summary = runner.run(
        [version],
        [{"text": "the phone was great, the battery less so"}],
        overrides={"max_new_tokens": MAX_NEW, **overrides},
    )
    [output] = summary.outputs
    return output


def _alternative(runner: Runner, output: OutputRecord, position: int) -> int:
    """A token the model had at `position` that the parent did not take."""
    record = token_logprobs(runner.store, [output.id])[output.id]
    return next(t for t in record.top_ids[position] if t != record.tokens[position])


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"temperature": 0.8, "top_p": 0.9, "seed": 3},
        {"repetition_penalty": 1.3, "frequency_penalty": 0.5},
    ],
    ids=["greedy", "sampled", "penalised"],
)
def test_branch_keeps_the_prefix_exactly_and_forces_the_token(
    runner: Runner, overrides: dict[str, Any]
) -> None:
    parent = _parent(runner, **overrides)
    before = token_logprobs(runner.store, [parent.id])[parent.id]
    position = 3
    forced = _alternative(runner, parent, position)

    branch = branch_output(runner.library, runner.backend, parent.id, position, forced)

    after = token_logprobs(runner.store, [branch.id])[branch.id]
    assert after.tokens[:position] == before.tokens[:position]
    for i in range(position):
        assert abs(after.logprobs[i] - before.logprobs[i]) < TOLERANCE, i
        assert after.top_ids[i] == before.top_ids[i]
    assert after.tokens[position] == forced
    # the forced step is the model's distribution there: the parent's alternatives, its value
    assert after.top_ids[position] == before.top_ids[position]
    k = before.top_ids[position].index(forced)
    assert abs(after.logprobs[position] - before.top_logprobs[position][k]) < TOLERANCE
    assert len(after) == branch.completion_tokens <= MAX_NEW
    # the whole answer, continuation included, equals a reference from one forward pass
    params = GenerationParams.from_values(parent.params)
    check(runner.backend, ModelInput(parent.model_input, True), after, params)
    pieces = runner.backend.token_pieces(list(after.tokens))
    assert branch.text is not None and "".join(pieces).startswith(branch.text)
    assert (branch.params, branch.seed, branch.model_input) == (
        parent.params,
        parent.seed,
        parent.model_input,
    )


def test_branch_records_its_parent_and_where(runner: Runner) -> None:
    parent = _parent(runner)
    forced = _alternative(runner, parent, 0)
    branch = branch_output(runner.library, runner.backend, parent.id, 0, forced)
    found = branches(runner.library, [parent.id, branch.id])
    assert set(found) == {branch.id}
    point = found[branch.id].point
    assert found[branch.id].parent_output_id == parent.id
    assert (point.position, point.token_id) == (0, forced)
    assert point.token == runner.backend.token_pieces([forced], in_sequence=False)[0]
    assert children(runner.library, parent.id) == [branch.id]
    assert run_outputs(runner.store, branch.run_id) == [branch]  # a run of its own
    assert branch.run_id != parent.run_id


def test_a_typed_token_is_one_token_or_refused(runner: Runner) -> None:
    parent = _parent(runner)
    text = runner.backend.token_pieces([_alternative(runner, parent, 1)], in_sequence=False)[0]
    branch = branch_output(runner.library, runner.backend, parent.id, 1, text)
    record = token_logprobs(runner.store, [branch.id])[branch.id]
    assert record.tokens[1] == runner.backend.token_ids(text)[0]
    with pytest.raises(BranchError, match=r"tokens for .* type exactly one token"):
        branch_output(runner.library, runner.backend, parent.id, 1, "a whole sentence here")


def test_a_branch_is_not_an_answer_from_the_cache(runner: Runner) -> None:
    parent = _parent(runner)
    branch_output(runner.library, runner.backend, parent.id, 0, _alternative(runner, parent, 0))
    again = _parent(runner)
    assert again.cached and again.text == parent.text


def _refusal(runner: Runner, output_id: int, position: int = 0, token: int | str = 5) -> str:
    with pytest.raises((BranchError, NotFoundError)) as caught:
        branch_output(runner.library, runner.backend, output_id, position, token)
    return str(caught.value)


def _change(runner: Runner, output_id: int, **values: Any) -> None:
    with runner.store.write() as s:
        s.execute(update(Output).where(Output.id == output_id).values(**values))


def test_refusals_say_why(runner: Runner) -> None:
    parent = _parent(runner)
    n = parent.completion_tokens or 0
    stored = len(run_outputs(runner.store, parent.run_id))
    assert "outside output" in _refusal(runner, parent.id, position=n)
    assert f"0 to {n - 1}" in _refusal(runner, parent.id, position=-1)
    assert "vocabulary" in _refusal(runner, parent.id, token=10**6)
    assert "vocabulary" in _refusal(runner, parent.id, token=-5)
    assert "no output 999" in _refusal(runner, 999)

    _change(runner, parent.id, revision="other-revision")
    assert "load that model" in _refusal(runner, parent.id)
    _change(runner, parent.id, revision=parent.revision, chat_template_hash="x" * 64)
    assert "another chat template" in _refusal(runner, parent.id)
    info = runner.backend.info
    _change(runner, parent.id, chat_template_hash=info.chat_template_hash, model_input="other")
    assert "different input" in _refusal(runner, parent.id)
    _change(runner, parent.id, model_input=parent.model_input, backend="openai")
    assert "server" in _refusal(runner, parent.id)
    _change(runner, parent.id, backend="transformers", token_logprobs=None)
    assert "no stored token log-probabilities" in _refusal(runner, parent.id)
    assert len(run_outputs(runner.store, parent.run_id)) == stored  # nothing was stored


def test_a_version_that_no_longer_renders_the_input_is_refused(
    runner: Runner, prompt_text: Any
) -> None:
    """Versions are immutable; what can change is which version the output names (an import
    into another library): one that needs a value the output does not have is refused."""
    parent = _parent(runner)
    body = "user:\n{{ text }} and {{ other }}\n"
    other = runner.library.save(
        prompt_text("needs-other", body, inputs={"text": {"kind": "string"}, "other": {}})
    ).version
    with runner.store.write() as s:
        version_id = runner.library.resolve_in(s, other.ref).id
    _change(runner, parent.id, version_id=version_id)
    assert "needs-other@1 no longer renders" in _refusal(runner, parent.id)


def test_a_model_that_scores_the_kept_tokens_differently_stores_nothing(
    runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = _parent(runner)
    backend = runner.backend
    real = backend.generate_forced

    def drifted(*args: Any, **kwargs: Any) -> Any:
        generation = real(*args, **kwargs)
        lp = generation.logprobs
        moved = dataclasses.replace(lp, logprobs=tuple(v - 0.5 for v in lp.logprobs))
        return dataclasses.replace(generation, logprobs=moved)

    monkeypatch.setattr(backend, "generate_forced", drifted)
    message = _refusal(runner, parent.id, position=2, token=_alternative(runner, parent, 2))
    assert "changed since" in message
    assert children(runner.library, parent.id) == []


def test_forcing_the_end_token_ends_the_answer_there(runner: Runner) -> None:
    parent = _parent(runner)
    eos = min(runner.backend.eos_ids)
    branch = branch_output(runner.library, runner.backend, parent.id, 2, eos)
    record = token_logprobs(runner.store, [branch.id])[branch.id]
    assert branch.finish_reason == "eos" and branch.completion_tokens == 3
    assert record.tokens[2] == eos and len(record) == 3


def test_a_branch_at_the_last_step_of_a_full_answer_adds_no_token(runner: Runner) -> None:
    parent = _parent(runner)
    n = parent.completion_tokens or 0
    assert parent.finish_reason == "length"  # the tiny model writes on to max_new_tokens
    forced = _alternative(runner, parent, n - 1)
    branch = branch_output(runner.library, runner.backend, parent.id, n - 1, forced)
    record = token_logprobs(runner.store, [branch.id])[branch.id]
    assert branch.finish_reason == "length" and len(record) == n == MAX_NEW
    assert record.tokens[-1] == forced


def test_the_same_branch_again_is_the_stored_one(runner: Runner) -> None:
    parent = _parent(runner, temperature=0.9, seed=5)
    forced = _alternative(runner, parent, 1)
    first = branch_output(runner.library, runner.backend, parent.id, 1, forced)
    again = branch_output(runner.library, runner.backend, parent.id, 1, forced)
    other = branch_output(runner.library, runner.backend, parent.id, 2, forced)
    assert again == first and other.id != first.id
    assert children(runner.library, parent.id) == [first.id, other.id]


def test_a_row_of_a_batch_with_a_shared_prefix_branches_the_same(runner: Runner) -> None:
    """Batched, left-padded, prefix-reused generation scored its tokens as one plain pass
    over that row does: the kept steps match, so the branch is made."""
    version = runner.library.get("few-shot-sentiment")
    rows = [{"text": t} for t in ("great phone", "awful, never again", "it is fine I guess")]
    summary = runner.run([version], rows, overrides={"max_new_tokens": MAX_NEW})
    assert all(o.batch_size and o.batch_size > 1 for o in summary.outputs)
    parent = summary.outputs[1]
    before = token_logprobs(runner.store, [parent.id])[parent.id]
    position = min(4, len(before) - 1)
    forced = _alternative(runner, parent, position)
    branch = branch_output(runner.library, runner.backend, parent.id, position, forced)
    after = token_logprobs(runner.store, [branch.id])[branch.id]
    assert after.tokens[: position + 1] == (*before.tokens[:position], forced)
    for i in range(position):
        assert abs(after.logprobs[i] - before.logprobs[i]) < TOLERANCE, i
