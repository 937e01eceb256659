"""Runs on the tiny model: datasets, progress, the cache, resume, self-consistency and export."""

from __future__ import annotations

import csv
import io
import json
import threading
from collections import Counter
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import build_prompt_text
from sqlalchemy import func, select

from workbench.backends.base import Cancel
from workbench.datasets import Dataset, DatasetError, parse_dataset
from workbench.errors import NotFoundError, WorkbenchError
from workbench.exchange import RUN_EXPORT_FIELDS, export_outputs
from workbench.params import GenerationParams, ParameterError
from workbench.runner import Progress, Runner
from workbench.runs import OutputRecord, get_run, list_runs
from workbench.store import Output, Run, RunRow, Store, Vote
from workbench.techniques import SelfConsistency

ADJECTIVES = ["great", "awful", "fine", "broken", "lovely", "slow", "cheap", "perfect"]
NOUNS = ["phone", "delivery", "service", "battery"]


def review(i: int) -> str:
    return f"The {NOUNS[i % 4]} was {ADJECTIVES[i % 8]}" + "!" * (i % 3) + f" (#{i})"


def csv_bytes(rows: list[dict[str, Any]]) -> bytes:
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def dataset(n: int, column: str = "text") -> Dataset:
    return parse_dataset(csv_bytes([{column: review(i)} for i in range(n)]), "reviews.csv")


def count(store: Store, table: Any) -> int:
    with store.read() as s:
        return int(s.scalar(select(func.count()).select_from(table)) or 0)


def cells(outputs: list[OutputRecord]) -> list[tuple[str, int, int, int]]:
    return [(o.prompt, o.version, o.row_index, o.sample_index) for o in outputs]


# --- a dataset run ------------------------------------------------------------------------------


def test_dataset_run_stores_every_output_and_reports_progress(runner: Runner) -> None:
    version = runner.library.get("zero-shot-sentiment")
    events: list[Progress] = []
    summary = runner.run([version], dataset(32), progress=events.append)
    assert summary.run.status == "done"
    assert (summary.run.total, summary.run.done, summary.run.cached) == (32, 32, 0)
    assert summary.run.dataset == "reviews.csv"
    assert len(summary.outputs) == 32
    assert [o.row_index for o in summary.outputs] == list(range(32))
    assert not any(o.cached for o in summary.outputs)
    assert all(o.text is not None and o.error is None for o in summary.outputs)
    assert [e.done for e in events] == list(range(33))
    assert {e.total for e in events} == {32}
    assert events[-1].eta_s in (None, 0) or events[-1].eta_s == pytest.approx(0)
    assert summary.generated_tokens == sum(o.completion_tokens or 0 for o in summary.outputs)
    assert count(runner.store, Output) == 32


def test_repeat_run_is_answered_from_the_cache(
    runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = runner.library.get("zero-shot-sentiment")
    rows = dataset(32)
    first = runner.run([version], rows, overrides={"max_new_tokens": 16})

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was asked although every answer is stored")

    monkeypatch.setattr(runner.backend, "generate", no_model)
    monkeypatch.setattr(runner.backend, "stream", no_model)
    events: list[Progress] = []
    again = runner.run([version], rows, overrides={"max_new_tokens": 16}, progress=events.append)
    assert again.run.id != first.run.id
    assert again.run.status == "done"
    assert all(o.cached for o in again.outputs) and again.run.cached == 32
    assert [o.text for o in again.outputs] == [o.text for o in first.outputs]
    assert [o.finish_reason for o in again.outputs] == [o.finish_reason for o in first.outputs]
    assert again.generated_tokens == 0
    assert events[-1].cached == 32


def test_no_cache_generates_again(runner: Runner) -> None:
    version = runner.library.get("zero-shot-sentiment")
    first = runner.run([version], dataset(6))
    again = runner.run([version], dataset(6), use_cache=False)
    assert not any(o.cached for o in again.outputs)
    assert [o.text for o in again.outputs] == [o.text for o in first.outputs]  # greedy


@pytest.mark.parametrize(
    "overrides",
    [{"max_new_tokens": 5}, {"stop": ["xyz"]}, {"repetition_penalty": 1.3}],
)
def test_changed_parameters_are_not_cached(runner: Runner, overrides: dict[str, Any]) -> None:
    version = runner.library.get("zero-shot-sentiment")
    runner.run([version], dataset(4))
    changed = runner.run([version], dataset(4), overrides=overrides)
    assert not any(o.cached for o in changed.outputs)


def test_greedy_cache_ignores_the_seed(runner: Runner) -> None:
    version = runner.library.get("zero-shot-sentiment")
    runner.run([version], dataset(3))
    again = runner.run([version], dataset(3), overrides={"seed": 42})
    assert all(o.cached for o in again.outputs)


def test_outputs_record_how_they_were_made(runner: Runner, tiny_backend: Any) -> None:
    version = runner.library.get("zero-shot-sentiment-chat")
    summary = runner.run([version], [{"text": "Great!"}], overrides={"max_new_tokens": 6})
    (out,) = summary.outputs
    info = tiny_backend.info
    assert (out.model, out.revision, out.dtype) == (info.name, info.revision, "float32")
    assert (out.prompt, out.version, out.row_index, out.sample_index) == (
        "zero-shot-sentiment-chat",
        1,
        0,
        0,
    )
    assert out.params == GenerationParams(max_new_tokens=6).as_dict()
    assert out.seed == 0
    assert out.variables == {"text": "Great!"}
    rendered = version.file.render({"text": "Great!"})
    assert out.messages == [m.as_dict() for m in rendered.messages]
    assert out.messages[0]["role"] == "user" and "Text: Great!" in out.messages[0]["content"]
    assert out.model_input == tiny_backend.model_input(rendered).text
    assert out.model_input.startswith("<|im_start|>user\n")
    assert out.prompt_tokens == tiny_backend.count_tokens(tiny_backend.model_input(rendered))
    assert out.completion_tokens == 6 and out.finish_reason == "length"
    assert out.latency_s is not None and out.latency_s > 0
    assert out.batch_size == 1 and out.cached is False and out.error is None
    direct = tiny_backend.generate(
        [tiny_backend.model_input(rendered)], GenerationParams(max_new_tokens=6)
    )
    assert out.text == direct[0].text
    run = get_run(runner.store, summary.run.id)
    assert run.params == {"max_new_tokens": 6}  # the overrides given
    assert run.versions == ["zero-shot-sentiment-chat@1"]
    assert run.finished_at is not None


def test_prompt_options_reach_the_outputs(runner: Runner) -> None:
    summary = runner.run([runner.library.get("zero-shot-sentiment")], [{"text": "hi"}])
    params = summary.outputs[0].params
    assert params["max_new_tokens"] == 4 and params["stop"] == ["Text:"]
    assert params["temperature"] == 0


def test_runs_are_listed_newest_first(runner: Runner) -> None:
    version = runner.library.get("zero-shot-sentiment")
    a = runner.run([version], [{"text": "a"}]).run.id
    b = runner.run([version], [{"text": "b"}]).run.id
    assert [r.id for r in list_runs(runner.store)] == [b, a]
    with pytest.raises(NotFoundError, match="no run 999"):
        get_run(runner.store, 999)


def test_two_versions_in_one_run(runner: Runner) -> None:
    lib = runner.library
    v1 = lib.get("zero-shot-sentiment")
    text = (lib.get("zero-shot-sentiment").export_text()).replace(
        "Classify the sentiment", "Please classify the sentiment"
    )
    v2 = lib.save(text, "reworded").version
    summary = runner.run([v1, v2], dataset(3))
    assert summary.run.total == 6 and summary.run.status == "done"
    assert sorted(cells(summary.outputs)) == sorted(
        [("zero-shot-sentiment", v, r, 0) for v in (1, 2) for r in range(3)]
    )
    v2_inputs = [o.model_input for o in summary.outputs if o.version == 2]
    assert all(i.startswith("Please classify") for i in v2_inputs)


# --- requests refused before anything is written -------------------------------------------------


def _nothing_written(runner: Runner) -> None:
    assert count(runner.store, Run) == 0
    assert count(runner.store, RunRow) == 0
    assert count(runner.store, Output) == 0


@pytest.fixture
def needs_two(runner: Runner) -> Any:
    """A prompt with two required variables (no defaults)."""
    text = build_prompt_text(
        "needs-two",
        "user:\nTranslate {{ text }} to {{ language }}.\n",
        inputs={"text": {"kind": "string"}, "language": {"kind": "string"}},
    )
    return runner.library.save(text).version


def test_missing_column_is_refused(runner: Runner, needs_two: Any) -> None:
    rows = parse_dataset(b"text\nhello\nbye\n", "rows.csv")
    with pytest.raises(DatasetError) as info:
        runner.run([needs_two], rows)
    message = str(info.value)
    assert "rows.csv" in message and "needs-two@1 needs column language" in message
    assert "its columns: text" in message
    _nothing_written(runner)


def test_missing_columns_are_all_named(runner: Runner, needs_two: Any) -> None:
    rows = parse_dataset(b"review\nhello\n", "rows.csv")
    with pytest.raises(DatasetError, match="needs columns language, text"):
        runner.run([needs_two], rows)
    _nothing_written(runner)


def test_dataset_with_none_of_the_templates_columns(runner: Runner) -> None:
    # zero-shot-sentiment's `text` has a default, so it is not required, but a dataset that
    # fills none of its variables would run the default on every row.
    rows = parse_dataset(b"review,stars\ngood,5\nbad,1\n", "reviews.csv")
    with pytest.raises(DatasetError) as info:
        runner.run([runner.library.get("zero-shot-sentiment")], rows)
    assert "reads text, none of which is a column" in str(info.value)
    assert "review, stars" in str(info.value)
    _nothing_written(runner)


def test_bad_parameter_is_refused_before_anything_is_written(runner: Runner) -> None:
    with pytest.raises(ParameterError, match="temperature"):
        runner.run(
            [runner.library.get("zero-shot-sentiment")], dataset(3), overrides={"temperature": -1}
        )
    _nothing_written(runner)


def test_row_that_does_not_render_is_refused(runner: Runner, needs_two: Any) -> None:
    with pytest.raises(WorkbenchError, match="row 2"):
        runner.run([needs_two], [{"text": "a", "language": "fr"}, {"text": "b"}])
    _nothing_written(runner)


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("empty.csv", b"", "the file is empty"),
        ("blank.csv", b"  \n\n", "the file is empty"),
        ("header.csv", b"text\n", "has a header but no rows"),
        ("latin1.csv", "text\ncafé crème\n".encode("latin-1"), "not UTF-8"),
        ("wide.csv", b"text\na,b\n", "line 2: more values than the 1 columns"),
        ("dup.csv", b"text,text\na,b\n", "column names repeat"),
        ("noname.csv", b"text,\na,b\n", "must name every column"),
        ("bad.jsonl", b'{"text": "a"}\n{"text": \n', "line 2: not JSON"),
        ("list.jsonl", b'{"text": "a"}\n["b"]\n', "line 2: each line must be a JSON object"),
        ("blank.jsonl", b"\n\n \n", "the file is empty"),
    ],
)
def test_bad_dataset_files(name: str, data: bytes, message: str) -> None:
    with pytest.raises(DatasetError) as info:
        parse_dataset(data, name)
    assert name in str(info.value)
    assert message in str(info.value)


def test_non_utf8_says_where() -> None:
    with pytest.raises(DatasetError, match="byte 0xe9 at offset 9"):
        parse_dataset(b"text\nabcd\xe9\n", "x.csv")


def test_jsonl_dataset_runs(runner: Runner) -> None:
    rows = parse_dataset(b'{"text": "good"}\n\n{"text": "bad", "extra": 1}\n', "r.jsonl")
    assert rows.columns == ("text", "extra")
    summary = runner.run([runner.library.get("zero-shot-sentiment")], rows)
    assert summary.run.total == 2 and summary.run.status == "done"
    assert summary.outputs[1].variables == {"text": "bad", "extra": 1}


def test_utf8_bom_csv_is_read() -> None:
    rows = parse_dataset("\ufefftext\ncafé\n".encode(), "bom.csv")
    assert rows.columns == ("text",) and rows.rows == ({"text": "café"},)


def test_empty_row_list_is_refused(runner: Runner) -> None:
    with pytest.raises(WorkbenchError, match="no rows"):
        runner.run([runner.library.get("zero-shot-sentiment")], [])
    _nothing_written(runner)


def test_no_versions_is_refused(runner: Runner) -> None:
    with pytest.raises(WorkbenchError, match="at least one"):
        runner.run([], [{"text": "a"}])


def test_prompt_too_long_fails_before_any_output(runner: Runner) -> None:
    long_text = " ".join(f"word{i} and more words" for i in range(200))
    rows = [{"text": "short one"}, {"text": long_text}, {"text": "another"}]
    version = runner.library.get("zero-shot-sentiment-chat")
    with pytest.raises(WorkbenchError) as info:
        runner.run([version], rows)
    message = str(info.value)
    assert "row 2" in message and "tokens" in message and "context window of 512" in message
    prompt_tokens = runner.backend.count_tokens(
        runner.backend.model_input(version.file.render({"text": long_text}))
    )
    assert f"the prompt is {prompt_tokens} tokens" in message
    assert count(runner.store, Output) == 0
    (run,) = list_runs(runner.store)
    assert run.status == "failed" and run.error and "context window" in run.error


# --- cancel and resume --------------------------------------------------------------------------


def _cancel_after(n: int) -> tuple[Cancel, Any]:
    cancel = Cancel()
    seen: list[OutputRecord] = []

    def on_output(record: OutputRecord) -> None:
        seen.append(record)
        if len(seen) == n:
            cancel.set()

    return cancel, on_output


def test_cancel_then_resume(runner: Runner) -> None:
    version = runner.library.get("zero-shot-sentiment")
    rows = dataset(12)
    cancel, on_output = _cancel_after(5)
    summary = runner.run(
        [version],
        rows,
        overrides={"max_new_tokens": 12},
        cancel=cancel,
        batch_size=1,
        on_output=on_output,
    )
    run_id = summary.run.id
    assert summary.run.status == "cancelled"
    assert summary.run.done == 5 and len(summary.outputs) == 5 and summary.run.total == 12
    assert count(runner.store, Output) == 5

    events: list[Progress] = []
    resumed = runner.resume(run_id, progress=events.append)
    assert resumed.run.id == run_id
    assert resumed.run.status == "done"
    assert resumed.run.done == resumed.run.total == 12
    assert len(set(cells(resumed.outputs))) == len(resumed.outputs) == 12
    assert events[0].done == 5 and events[-1].done == 12
    assert not any(o.cached for o in resumed.outputs)

    fresh = runner.run([version], rows, overrides={"max_new_tokens": 12}, use_cache=False)
    assert [o.text for o in resumed.outputs] == [o.text for o in fresh.outputs]
    assert [o.row_index for o in resumed.outputs] == list(range(12))


def test_cancel_during_a_batch_then_resume_redoes_the_cut_outputs(
    runner: Runner, tiny_backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancel that lands mid-batch cuts that batch's answers short; resume must finish them
    (a cut answer is not a finished one: the cache already refuses to reuse it)."""
    version = runner.library.get("zero-shot-sentiment-chat")
    rows = [{"text": t} for t in ("one", "two", "three", "four")]
    overrides = {"max_new_tokens": 300}
    cancel = Cancel()
    timers: list[threading.Timer] = []
    real_forward = tiny_backend.model.forward

    def forward_then_press_stop(*args: Any, **kwargs: Any) -> Any:
        if not timers:  # the first forward pass: press stop 50 ms after it starts
            timers.append(threading.Timer(0.05, cancel.set))
            timers[0].start()
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(tiny_backend.model, "forward", forward_then_press_stop)
    summary = runner.run([version], rows, overrides=overrides, cancel=cancel)
    timers[0].join()
    monkeypatch.undo()
    assert summary.run.status == "cancelled"
    cut = [o for o in summary.outputs if o.finish_reason == "cancelled"]
    assert cut, "the cancel came too late to cut a batch short"
    assert all((o.completion_tokens or 0) < 300 for o in cut)

    resumed = runner.resume(summary.run.id)
    assert resumed.run.status == "done"
    assert len(set(cells(resumed.outputs))) == len(resumed.outputs) == 4
    assert not [o for o in resumed.outputs if o.finish_reason == "cancelled"]
    fresh = runner.run([version], rows, overrides=overrides, use_cache=False)
    assert [o.text for o in resumed.outputs] == [o.text for o in fresh.outputs]


def test_resume_renders_its_own_rows_after_another_run_was_started(runner: Runner) -> None:
    """`start` and `execute` are separate steps; starting one run must not change what
    another run (same version, same row index) sends to the model when it is resumed."""
    version = runner.library.get("few-shot-sentiment")
    cancel = Cancel()
    cancel.set()
    waiting = runner.run([version], [{"text": "hi"}], cancel=cancel)
    assert waiting.run.status == "cancelled" and waiting.outputs == []
    custom = [{"input": "Meh.", "output": "Neutral"}]
    runner.start([version], [{"text": "hi", "examples": custom}])  # planned, not executed yet
    (out,) = runner.resume(waiting.run.id).outputs
    assert out.variables == {"text": "hi"}
    assert out.model_input == version.file.render({"text": "hi"}).text
    assert "Text: Great!" in out.model_input and "Meh." not in out.model_input


def test_resume_a_finished_run_does_nothing(runner: Runner) -> None:
    summary = runner.run([runner.library.get("zero-shot-sentiment")], dataset(2))
    again = runner.resume(summary.run.id)
    assert again.run.status == "done" and len(again.outputs) == 2
    assert count(runner.store, Output) == 2


def test_resume_needs_the_same_model(runner: Runner, tiny_backend: Any) -> None:
    summary = runner.run([runner.library.get("zero-shot-sentiment")], dataset(2))
    other = SimpleNamespace(info=replace(tiny_backend.info, revision="files-other"))
    with pytest.raises(WorkbenchError, match="load that model to resume it"):
        Runner(runner.library, other).resume(summary.run.id)


def test_resume_unknown_run(runner: Runner) -> None:
    with pytest.raises(NotFoundError, match="no run 41"):
        runner.resume(41)


def test_cancelled_output_is_not_reused_from_the_cache(runner: Runner) -> None:
    version = runner.library.get("zero-shot-sentiment-chat")
    cancel = Cancel()
    params = {"max_new_tokens": 60}
    streamed = runner.stream(version, {"text": "hi"}, overrides=params, cancel=cancel)
    for _ in streamed:
        cancel.set()
    out = streamed.output
    assert out is not None and out.finish_reason == "cancelled"
    assert out.completion_tokens is not None and out.completion_tokens < 60
    assert get_run(runner.store, streamed.run_id).status == "cancelled"
    again = runner.run([version], [{"text": "hi"}], overrides=params)
    assert not again.outputs[0].cached
    assert again.outputs[0].finish_reason != "cancelled"
    assert again.outputs[0].text != out.text


# --- streaming through the runner ----------------------------------------------------------------


def test_streamed_run_is_stored_and_then_cached(runner: Runner) -> None:
    version = runner.library.get("zero-shot-sentiment-chat")
    streamed = runner.stream(version, {"text": "hi"}, overrides={"max_new_tokens": 20})
    text = "".join(streamed)
    out = streamed.output
    assert out is not None and not streamed.cached
    assert out.text == text and out.ttft_s is not None
    assert get_run(runner.store, streamed.run_id).status == "done"
    again = runner.stream(version, {"text": "hi"}, overrides={"max_new_tokens": 20})
    assert "".join(again) == text
    assert again.cached and again.output is not None and again.output.cached
    batch = runner.run([version], [{"text": "hi"}], overrides={"max_new_tokens": 20})
    assert batch.outputs[0].cached and batch.outputs[0].text == text


# --- self-consistency -----------------------------------------------------------------------------


def test_self_consistency_builtin(runner: Runner) -> None:
    version = runner.library.get("self-consistency-math")
    summary = runner.run(
        [version], [{"question": "What is 2 + 3?"}], overrides={"max_new_tokens": 8, "seed": 10}
    )
    assert summary.run.total == 5 and summary.run.status == "done"
    outs = summary.outputs
    assert [o.sample_index for o in outs] == [0, 1, 2, 3, 4]
    assert [o.seed for o in outs] == [10, 11, 12, 13, 14]
    assert {o.params["temperature"] for o in outs} == {0.7}
    assert len({o.text for o in outs}) > 1  # different seeds, different samples
    sc = SelfConsistency.from_metadata(version.file.metadata)
    assert sc is not None
    assert [o.answer for o in outs] == [sc.extract(o.text or "") for o in outs]
    (vote,) = summary.votes
    assert vote.samples == 5 and vote.row_index == 0
    counts = Counter(o.answer for o in outs if o.answer is not None)
    assert vote.counts == dict(counts)
    if counts:
        answer, n = counts.most_common(1)[0]
        assert vote.answer == answer and vote.agreement == pytest.approx(n / 5)
    else:
        assert vote.answer is None and vote.agreement == 0


def test_self_consistency_vote_counts_extracted_answers(runner: Runner) -> None:
    """A version whose pattern always matches (the last word character), so the vote has
    answers to count: majority and agreement follow from the stored samples."""
    lib = runner.library
    text = lib.get("self-consistency-math").export_text()
    text = text.replace(r"answer_pattern: The answer is (-?\d+)", r"answer_pattern: ([A-Za-z])")
    version = lib.save(text, "any letter").version
    assert version.file.metadata["answer_pattern"] == "([A-Za-z])"
    summary = runner.run(
        [version],
        [{"question": "a"}, {"question": "b"}],
        overrides={"max_new_tokens": 12, "temperature": 1.0},
    )
    assert summary.run.total == 10
    assert len(summary.votes) == 2
    for vote in summary.votes:
        answers = [o.answer for o in summary.outputs if o.row_index == vote.row_index]
        assert len(answers) == 5 and all(answers)
        counts = Counter(answers)
        _, n = counts.most_common(1)[0]
        assert vote.counts == dict(counts)
        assert counts[vote.answer] == n
        assert vote.agreement == pytest.approx(n / 5)
    stored = count(runner.store, Vote)
    runner.resume(summary.run.id)  # votes are written once
    assert count(runner.store, Vote) == stored == 2


def test_samples_on_a_greedy_prompt_sample_and_vote(runner: Runner) -> None:
    """--samples 3 on a prompt without answer_pattern: samples at temperature 0.7 and votes on
    the whole answers."""
    version = runner.library.get("zero-shot-sentiment")
    summary = runner.run([version], [{"text": "hello"}], samples=3, overrides={"max_new_tokens": 3})
    outs = summary.outputs
    assert summary.run.total == 3 and [o.seed for o in outs] == [0, 1, 2]
    assert {o.params["temperature"] for o in outs} == {0.7}
    (vote,) = summary.votes
    assert vote.samples == 3
    counts = Counter((o.text or "").strip() for o in outs)
    _, n = counts.most_common(1)[0]
    assert vote.counts == dict(counts)
    assert vote.agreement == pytest.approx(n / 3)


def test_samples_below_one_is_refused(runner: Runner) -> None:
    with pytest.raises(WorkbenchError, match="at least 1"):
        runner.run([runner.library.get("zero-shot-sentiment")], [{"text": "a"}], samples=0)
    _nothing_written(runner)


@pytest.mark.parametrize(
    ("text", "sc", "expected"),
    [
        (
            "The answer is 3. No wait. The answer is 42.",
            SelfConsistency(5, answer_pattern=r"The answer is (-?\d+)"),
            "42",
        ),
        ("The answer is -7", SelfConsistency(5, answer_pattern=r"The answer is (-?\d+)"), "-7"),
        ("1 then 2 then 33", SelfConsistency(5, answer_pattern=r"\d+"), "33"),
        ("Answer: Paris.", SelfConsistency(5, answer_pattern=r"Answer: (.*)"), "Paris"),
        ("Answer:  Paris . ", SelfConsistency(5, answer_pattern=r"Answer:(.*)"), "Paris"),
        ("no number here", SelfConsistency(5, answer_pattern=r"The answer is (\d+)"), None),
        ("b", SelfConsistency(5, answer_pattern=r"(a)|b"), None),
        (
            'Sure: {"answer": "Paris", "confidence": 0.9} done',
            SelfConsistency(5, answer_field="answer"),
            "Paris",
        ),
        ('{"answer": 42}', SelfConsistency(5, answer_field="answer"), "42"),
        ('{"answer": " x "}', SelfConsistency(5, answer_field="answer"), "x"),
        ('{"other": 1}', SelfConsistency(5, answer_field="answer"), None),
        ('{"answer": null}', SelfConsistency(5, answer_field="answer"), None),
        ("{not json}", SelfConsistency(5, answer_field="answer"), None),
        ("no braces", SelfConsistency(5, answer_field="answer"), None),
        ("  whole text \n", SelfConsistency(5), "whole text"),
    ],
)
def test_extract_answer(text: str, sc: SelfConsistency, expected: str | None) -> None:
    assert sc.extract(text) == expected


# --- export ---------------------------------------------------------------------------------------


@pytest.fixture
def finished(runner: Runner) -> list[OutputRecord]:
    version = runner.library.get("zero-shot-sentiment-chat")
    rows = [{"text": 'Great, "quoted", and, commas'}, {"text": "line one\nline two"}]
    return runner.run([version], rows, overrides={"max_new_tokens": 6}).outputs


def test_export_jsonl(finished: list[OutputRecord]) -> None:
    lines = export_outputs(finished, "jsonl").decode("utf-8").splitlines()
    assert len(lines) == 2
    for line, out in zip(lines, finished, strict=True):
        row = json.loads(line)
        assert list(row) == list(RUN_EXPORT_FIELDS)
        assert row["model_input"] == out.model_input
        assert row["params"] == out.params
        assert row["messages"] == out.messages
        assert row["variables"] == out.variables
        assert row["text"] == out.text
        assert (row["model"], row["revision"], row["dtype"]) == (out.model, out.revision, "float32")
        assert row["seed"] == out.seed and row["cached"] is False


def test_export_csv(finished: list[OutputRecord]) -> None:
    data = export_outputs(finished, "csv")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))
    assert len(rows) == 2
    for row, out in zip(rows, finished, strict=True):
        assert tuple(row) == RUN_EXPORT_FIELDS
        assert row["model_input"] == out.model_input
        assert "\n" in row["model_input"]
        assert json.loads(row["params"]) == out.params
        assert json.loads(row["messages"]) == out.messages
        assert json.loads(row["variables"]) == out.variables
        assert row["text"] == out.text
        assert int(row["completion_tokens"]) == out.completion_tokens
        assert row["finish_reason"] == out.finish_reason


def test_export_unknown_format(finished: list[OutputRecord]) -> None:
    with pytest.raises(WorkbenchError, match="xml"):
        export_outputs(finished, "xml")


def test_each_output_records_the_batch_it_was_generated_in(runner: Runner) -> None:
    """A batched row's latency is its batch's time up to its end: the batch size is stored with
    it, so every screen can say "batch of 2, 0.31 s"; a cached copy says it is cached."""
    from workbench import wording

    version = runner.library.get("zero-shot-sentiment")
    rows = [{"text": review(i)} for i in range(4)]
    batched = runner.run([version], rows, batch_size=2, overrides={"max_new_tokens": 3}).outputs
    assert [o.batch_size for o in batched] == [2, 2, 2, 2]
    assert all(wording.latency_text(o).startswith("batch of 2, ") for o in batched)
    single = runner.run(
        [version], [{"text": "only"}], overrides={"max_new_tokens": 3}, batch_size=1
    ).outputs
    assert single[0].batch_size == 1
    assert wording.latency_text(single[0]) == f"{single[0].latency_s:.2f} s"
    again = runner.run([version], rows, overrides={"max_new_tokens": 3}).outputs
    assert all(o.cached for o in again)
    assert [wording.latency_text(o) for o in again] == [
        f"cached (original {o.latency_s:.2f} s)" for o in batched
    ]
    assert wording.mean_latency(again) is None  # nothing was generated: no time to average
