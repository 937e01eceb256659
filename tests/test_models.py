"""The transformers backend on a tiny random model: finding, loading, inputs, generation, streaming.

The tiny model (tests/tiny_model.py, sharpened in conftest) is random, so its answers are junk,
but they are deterministic and depend on the whole prompt: batched and one-by-one outputs can be
compared token for token, and stop strings are taken from what it actually says.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import BUILTIN_PROMPTS_DIR, build_prompt_text

from workbench.backends.base import (
    Cancel,
    ContextOverflowError,
    Generation,
    ModelError,
    ModelInput,
)
from workbench.backends.local import (
    MIN_SHARED_PREFIX,
    _shared_prefix_len,
    load_backend,
    start_token,
)
from workbench.backends.model_files import resolve_model
from workbench.params import GenerationParams, ParameterError
from workbench.templates import Rendered, parse_prompt, parse_prompt_bytes

SENTIMENT_TEXTS = [
    "I love it.",
    "Terrible service, never again",
    "It arrived on Tuesday.",
    "Great!",
    "meh",
    "The battery died after two days and support never answered my emails.",
    "ok",
    "Best purchase of the year, highly recommended to everyone I know",
    "It's fine I guess",
    "Broken on arrival.",
    "The colour is blue.",
    "Wow",
]


def builtin(name: str) -> Any:
    return parse_prompt_bytes((BUILTIN_PROMPTS_DIR / f"{name}.prompty").read_bytes(), name)


def render(text: str, variables: dict[str, Any] | None = None, **front: Any) -> Rendered:
    return parse_prompt(build_prompt_text("t", text, **front)).render(variables or {})


@pytest.fixture(scope="module")
def few_shot_inputs(tiny_backend: Any) -> list[ModelInput]:
    pf = builtin("few-shot-sentiment")
    return [tiny_backend.model_input(pf.render({"text": t})) for t in SENTIMENT_TEXTS]


@pytest.fixture(scope="module")
def chat_input(tiny_backend: Any) -> ModelInput:
    mi: ModelInput = tiny_backend.model_input(
        builtin("zero-shot-sentiment-chat").render({"text": "Great!"})
    )
    return mi


def greedy(n: int, **kw: Any) -> GenerationParams:
    return GenerationParams(max_new_tokens=n, **kw)


# --- the model's description -------------------------------------------------------------------


def test_tiny_model_info(tiny_backend: Any, tiny_model_dir: Path) -> None:
    from tiny_model import CHATML

    info = tiny_backend.info
    assert info.name == str(tiny_model_dir)
    assert info.path == str(tiny_model_dir.resolve())
    assert info.revision and info.revision.startswith("files-")
    assert info.dtype == "float32"
    assert info.context_window == 512
    assert info.chat_template_hash == hashlib.sha256(CHATML.encode()).hexdigest()[:16]
    assert info.backend == "transformers"


def test_load_backend_is_cached_per_process(
    tiny_backend: Any, tiny_model_dir: Path, tmp_path: Path
) -> None:
    assert load_backend(str(tiny_model_dir), tmp_path) is tiny_backend


def test_resolve_local_folder(tiny_model_dir: Path, tmp_path: Path) -> None:
    resolved = resolve_model(f"  {tiny_model_dir}  ", tmp_path)
    assert resolved.path == tiny_model_dir.resolve()
    assert resolved.revision.startswith("files-")
    assert resolved.local_files_only


def test_resolve_cached_hub_id(tiny_model_dir: Path, tmp_path: Path, monkeypatch: Any) -> None:
    """An id already in the Hugging Face cache resolves to its snapshot, offline."""
    hub = tmp_path / "hub"
    repo = hub / "models--someone--tiny"
    snapshot = repo / "snapshots" / "abc123"
    shutil.copytree(tiny_model_dir, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    resolved = resolve_model("someone/tiny", tmp_path)
    assert resolved.path == snapshot and resolved.revision == "abc123"


# --- models that cannot be used ----------------------------------------------------------------


@pytest.mark.parametrize(
    "spec", ["/nonexistent/tiny-model", "nobody/no-such-model", "no-such-model", "a/b/c"]
)
def test_unknown_model_says_where_it_looked(spec: str, tmp_path: Path, monkeypatch: Any) -> None:
    hub = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    with pytest.raises(ModelError) as info:
        resolve_model(spec, tmp_path / "storage")
    message = str(info.value)
    assert spec in message
    assert str(hub) in message
    assert "nothing is downloaded" in message
    assert not (tmp_path / "storage").exists()


def test_unknown_model_uses_hf_home_when_set(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    with pytest.raises(ModelError, match=re.escape(str(tmp_path / "hf-home" / "hub"))):
        resolve_model("nobody/no-such-model", tmp_path)


def test_folder_without_config(tmp_path: Path) -> None:
    folder = tmp_path / "empty-model"
    folder.mkdir()
    with pytest.raises(ModelError, match=r"no config\.json"):
        load_backend(str(folder), tmp_path)


def test_file_instead_of_folder(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="is a file"):
        load_backend(str(tiny_model_dir / "config.json"), tmp_path)


def test_folder_without_tokenizer(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "no-tokenizer"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_model_dir / name, folder / name)
    with pytest.raises(ModelError, match="no tokenizer"):
        load_backend(str(folder), tmp_path)


@pytest.mark.parametrize(
    "auto_map",
    [
        {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"},
        {"AutoConfig": "configuration_evil.EvilConfig"},
    ],
)
def test_custom_code_is_refused(
    auto_map: dict[str, str], tiny_model_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "custom-code"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = auto_map
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_evil.py").write_text("raise SystemExit('custom code ran')\n")
    (folder / "configuration_evil.py").write_text("raise SystemExit('custom code ran')\n")
    with pytest.raises(ModelError, match="trust_remote_code"):
        load_backend(str(folder), tmp_path)


def test_unsupported_dtype(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="float16"):
        load_backend(str(tiny_model_dir), tmp_path, dtype="float16")


def test_chat_prompt_on_a_model_without_chat_template(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "no-template"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    backend = load_backend(str(folder), tmp_path)
    with pytest.raises(ModelError, match="no chat template"):
        backend.model_input(render("user:\nhello\n"))
    # completion prompts still work on it
    assert backend.model_input(render("hello", model={"apiType": "completion"})).text == "hello"


# --- what the model reads -------------------------------------------------------------------------


def test_chat_input_applies_the_template_with_the_system_message(tiny_backend: Any) -> None:
    rendered = render("system:\nYou are terse.\n\nuser:\nSay {{ text }}.\n", {"text": "hi"})
    mi = tiny_backend.model_input(rendered)
    assert mi == ModelInput(
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nSay hi.<|im_end|>\n"
        "<|im_start|>assistant\n",
        add_special_tokens=False,
    )


def test_chat_input_tokens_are_exactly_the_template_text(tiny_backend: Any) -> None:
    mi = tiny_backend.model_input(render("user:\nhello\n"))
    ids = tiny_backend.encode(mi)
    tok = tiny_backend.tokenizer
    assert ids == tok(mi.text, add_special_tokens=False)["input_ids"]
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>")  # one, not doubled
    assert ids[1] != ids[0]
    assert tiny_backend.count_tokens(mi) == len(ids)


def test_completion_input_is_the_text_as_is(tiny_backend: Any) -> None:
    rendered = builtin("zero-shot-sentiment").render({"text": "Great!"})
    mi = tiny_backend.model_input(rendered)
    assert mi.text == (
        "Classify the sentiment of the following text as Positive, Negative, or Neutral.\n"
        "Text: Great!\nSentiment:"
    )
    assert mi.text == rendered.text
    assert mi.add_special_tokens is True
    assert "<|im_start|>" not in mi.text


def test_assistant_last_message_is_prefilled(tiny_backend: Any) -> None:
    rendered = render("user:\nName a colour.\n\nassistant:\nThe colour is")
    mi = tiny_backend.model_input(rendered)
    assert mi.text == (
        "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\nThe colour is"
    )
    assert mi.add_special_tokens is False


# --- batches ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_by_one(tiny_backend: Any, few_shot_inputs: list[ModelInput]) -> list[Generation]:
    params = greedy(8)
    return [tiny_backend.generate([mi], params)[0] for mi in few_shot_inputs]


def test_few_shot_rows_share_a_prefix_and_differ_in_length(
    tiny_backend: Any, few_shot_inputs: list[ModelInput], one_by_one: list[Generation]
) -> None:
    """Preconditions of the batching tests: they exercise the shared-prefix path, on rows of
    different lengths, and the rows' answers differ (so equality means something)."""
    ids = [tiny_backend.encode(mi) for mi in few_shot_inputs]
    assert _shared_prefix_len(ids) >= MIN_SHARED_PREFIX
    assert len({len(r) for r in ids}) >= 6
    assert len({g.text for g in one_by_one}) >= 6


@pytest.mark.parametrize("batch_size", [None, 3, 5])
def test_batched_greedy_equals_one_by_one(
    tiny_backend: Any,
    few_shot_inputs: list[ModelInput],
    one_by_one: list[Generation],
    batch_size: int | None,
) -> None:
    seen: list[int] = []
    batched = tiny_backend.generate(
        few_shot_inputs,
        greedy(8),
        batch_size=batch_size,
        on_batch=lambda done: seen.extend(i for i, _ in done),
    )
    assert sorted(seen) == list(range(len(few_shot_inputs)))
    for i, (alone, together) in enumerate(zip(one_by_one, batched, strict=True)):
        assert together is not None
        assert together.text == alone.text, f"row {i}"
        assert together.finish_reason == alone.finish_reason, f"row {i}"
        assert together.completion_tokens == alone.completion_tokens, f"row {i}"
        assert together.prompt_tokens == alone.prompt_tokens, f"row {i}"
    if batch_size is not None:
        assert max(g.batch_size for g in batched if g) <= batch_size
    assert max(g.batch_size for g in batched if g) > 1


def test_generate_with_no_inputs(tiny_backend: Any) -> None:
    assert tiny_backend.generate([], greedy(4)) == []


def test_generate_validates_params_against_the_window(
    tiny_backend: Any, chat_input: ModelInput
) -> None:
    with pytest.raises(ParameterError, match="context window of 512"):
        tiny_backend.generate([chat_input], greedy(512))


# --- how an answer ends -------------------------------------------------------------------------


def _a_stop_string(text: str) -> tuple[str, int]:
    """Two or more ASCII letters from inside `text`, first seen at their index."""
    for m in re.finditer(r"[A-Za-z]{2,}", text):
        if m.start() >= 2 and text.find(m.group()) == m.start():
            return m.group(), m.start()
    raise AssertionError(f"no usable stop string in {text!r}")


def test_stop_string_cuts_the_answer(tiny_backend: Any, few_shot_inputs: list[ModelInput]) -> None:
    full = tiny_backend.generate([few_shot_inputs[0]], greedy(24))[0]
    stop, at = _a_stop_string(full.text)
    cut = tiny_backend.generate([few_shot_inputs[0]], greedy(24, stop=(stop,)))[0]
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[:at]
    assert stop not in cut.text
    assert cut.completion_tokens < full.completion_tokens


def test_stop_strings_in_a_batch(tiny_backend: Any, few_shot_inputs: list[ModelInput]) -> None:
    inputs = few_shot_inputs[:4]
    full = tiny_backend.generate(inputs, greedy(24), batch_size=1)
    stop, _ = _a_stop_string(full[0].text)
    cut = tiny_backend.generate(inputs, greedy(24, stop=(stop,)))
    for f, c in zip(full, cut, strict=True):
        assert c is not None and f is not None
        if stop in f.text:
            assert (c.finish_reason, c.text) == ("stop", f.text[: f.text.find(stop)])
        else:
            assert (c.finish_reason, c.text) == (f.finish_reason, f.text)


def test_rows_are_reported_as_they_finish(
    tiny_backend: Any, few_shot_inputs: list[ModelInput]
) -> None:
    """A row that stops early is reported alone, before the rest of its batch; the results are
    the same as when the whole batch is reported at its end."""
    inputs = few_shot_inputs[:4]
    full = tiny_backend.generate(inputs, greedy(24), batch_size=1)
    stop, _ = _a_stop_string(full[0].text)
    params = greedy(24, stop=(stop,))
    calls: list[list[int]] = []
    early = tiny_backend.generate(
        inputs,
        params,
        on_batch=lambda done: calls.append([i for i, _ in done]),
        rows_as_they_finish=True,
    )
    together = tiny_backend.generate(inputs, params)
    assert [(g.text, g.finish_reason) for g in early] == [
        (g.text, g.finish_reason) for g in together
    ]
    stopped = [i for i, g in enumerate(early) if g.finish_reason == "stop"]
    assert 0 in stopped
    assert [[i] for i in stopped] == [c for c in calls if len(c) == 1 and c[0] in stopped]
    assert sorted(i for c in calls for i in c) == [0, 1, 2, 3]  # each row reported once
    last = calls.index([0])
    assert last < len(calls) - 1 or len(stopped) == 4  # reported before the batch's end
    assert early[0].latency_s <= max(g.latency_s for g in early)


def test_length_when_max_new_tokens_is_reached(tiny_backend: Any, chat_input: ModelInput) -> None:
    g = tiny_backend.generate([chat_input], greedy(5))[0]
    assert g.finish_reason == "length"
    assert g.completion_tokens == 5
    assert g.prompt_tokens == tiny_backend.count_tokens(chat_input)
    assert g.latency_s > 0 and g.batch_size == 1


def test_cancel_set_before_generate_generates_nothing(
    tiny_backend: Any, few_shot_inputs: list[ModelInput]
) -> None:
    cancel = Cancel()
    cancel.set()
    called: list[int] = []
    out = tiny_backend.generate(
        few_shot_inputs[:3],
        greedy(8),
        cancel=cancel,
        on_batch=lambda done: called.extend(i for i, _ in done),
    )
    assert out == [None, None, None] and called == []


def test_cancel_from_another_thread_stops_generate(
    tiny_backend: Any, chat_input: ModelInput
) -> None:
    cancel = Cancel()
    timer = threading.Timer(0.05, cancel.set)
    timer.start()
    started = time.perf_counter()
    g = tiny_backend.generate([chat_input], greedy(400), cancel=cancel)[0]
    timer.join()
    assert g is not None
    assert g.finish_reason == "cancelled"
    assert 0 < g.completion_tokens < 400
    assert time.perf_counter() - started < 5


# --- sampling -----------------------------------------------------------------------------------


def test_sampling_is_reproducible_with_the_same_seeds(
    tiny_backend: Any, few_shot_inputs: list[ModelInput]
) -> None:
    params = GenerationParams(temperature=1.0, max_new_tokens=8)
    inputs = few_shot_inputs[:4]
    first = tiny_backend.generate(inputs, params, seeds=[1, 2, 3, 4])
    again = tiny_backend.generate(inputs, params, seeds=[1, 2, 3, 4])
    other = tiny_backend.generate(inputs, params, seeds=[101, 102, 103, 104])
    assert [g.text for g in first] == [g.text for g in again]
    assert any(a.text != b.text for a, b in zip(first, other, strict=True))
    # a sampled row does not depend on the rows it runs with
    alone = tiny_backend.generate([inputs[2]], params, seeds=[3])[0]
    assert alone.text == first[2].text


def test_sampling_uses_params_seed_without_seeds(tiny_backend: Any, chat_input: ModelInput) -> None:
    a = tiny_backend.generate([chat_input], GenerationParams(temperature=1.0, max_new_tokens=8))
    b = tiny_backend.generate([chat_input], GenerationParams(temperature=1.0, max_new_tokens=8))
    assert a[0].text == b[0].text


def test_sampled_output_differs_from_greedy_for_some_seed(
    tiny_backend: Any, chat_input: ModelInput
) -> None:
    base = tiny_backend.generate([chat_input], greedy(8))[0].text
    sampled = tiny_backend.generate(
        [chat_input] * 4, GenerationParams(temperature=1.5, max_new_tokens=8), seeds=[0, 1, 2, 3]
    )
    assert any(g.text != base for g in sampled)


# --- what the backend declares, and the interface behind it -------------------------------------


def test_the_local_backend_declares_its_capabilities_on_its_class(
    tiny_backend: Any,
) -> None:
    from workbench.backends.base import Capabilities
    from workbench.backends.local import TransformersBackend

    # A class attribute: known before (and without) loading anything.
    assert TransformersBackend.capabilities == Capabilities(
        token_ids=True, logits=True, logprobs=True, choices=True, constrained=True
    )
    assert tiny_backend.capabilities.has("logits") and tiny_backend.capabilities.has("token_ids")
    assert tiny_backend.capabilities.has("constrained")


def test_truncate_to_tokens_is_exact(tiny_backend: Any) -> None:
    text = "Roger has 5 tennis balls. He buys 2 more cans. The answer is 11."
    ids = tiny_backend.encode(ModelInput(text, add_special_tokens=False))
    assert len(ids) > 10
    cut = tiny_backend.truncate_to_tokens(text, 10)
    assert cut.exact and cut.text == tiny_backend.tokenizer.decode(ids[:10])
    assert text.startswith(cut.text) and len(cut.text) < len(text)
    assert tiny_backend.encode(ModelInput(cut.text, add_special_tokens=False)) == ids[:10]
    whole = tiny_backend.truncate_to_tokens(text, len(ids))
    assert (whole.text, whole.exact) == (text, True)


class FakeTokenizer:
    def __init__(self, vocab: dict[str, int], unk: str | None, bos: int | None, eos: int | None):
        self.vocab, self.unk_token, self.bos_token_id, self.eos_token_id = vocab, unk, bos, eos
        self.unk_token_id = vocab.get(unk) if unk else None

    def convert_tokens_to_ids(self, token: str) -> int | None:
        return self.vocab.get(token, self.unk_token_id)


@pytest.mark.parametrize(
    ("tokenizer", "start"),
    [
        (FakeTokenizer({"<unk>": 0, "<|endoftext|>": 7}, "<unk>", 1, 2), 7),
        (FakeTokenizer({"<|endoftext|>": 0}, "<|endoftext|>", 1, 2), 0),  # SmolLM2: unk is it
        (FakeTokenizer({"<unk>": 0}, "<unk>", 1, 2), 1),
        (FakeTokenizer({}, None, 1, 2), 1),
        (FakeTokenizer({}, None, None, 2), 2),
        (FakeTokenizer({}, None, None, None), None),
    ],
)
def test_text_is_scored_after_a_start_token(tokenizer: FakeTokenizer, start: int | None) -> None:
    assert start_token(tokenizer) == start


def test_log_likelihood_is_transformers_language_modelling_loss(tiny_backend: Any) -> None:
    import math

    import torch

    text = "Classify the sentiment of the following text as Positive, Negative, or Neutral."
    scored = tiny_backend.log_likelihood(text)
    assert scored == tiny_backend.log_likelihood(text)  # deterministic
    assert math.isfinite(scored.perplexity) and scored.perplexity >= 1.0
    # the same number as transformers' own loss on [<|endoftext|>] + text
    tok = tiny_backend.tokenizer
    start = tok.convert_tokens_to_ids("<|endoftext|>")
    assert start_token(tok) == start
    ids = torch.tensor([[start, *tok(text, add_special_tokens=False)["input_ids"]]])
    with torch.inference_mode():
        loss = tiny_backend.model(input_ids=ids, labels=ids).loss
    assert scored.tokens == ids.shape[1] - 1
    assert scored.perplexity == pytest.approx(math.exp(float(loss)), rel=1e-5)


def test_log_likelihood_of_an_empty_text_is_refused(tiny_backend: Any) -> None:
    with pytest.raises(ValueError, match="the output is empty"):
        tiny_backend.log_likelihood("")
    assert tiny_backend.log_likelihood("x").tokens == 1  # one token, after the start token


# --- frequency and presence penalties -----------------------------------------------------------


def test_the_penalty_processor_is_openais_formula_over_the_answer_only() -> None:
    import torch

    from workbench.backends.processors import FrequencyPresencePenalty

    input_ids = torch.tensor([[4, 4, 1, 1, 3], [4, 4, 2, 0, 0]])  # 2 prompt columns, 3 answer
    scores = torch.zeros((2, 5))
    out = FrequencyPresencePenalty(0.5, 0.25, prompt_len=2)(input_ids, scores)
    # logits[t] -= 0.5 × count(t) + 0.25 × (count(t) > 0); token 4 is only in the prompt
    assert out.tolist() == [[0.0, -1.25, 0.0, -0.75, 0.0], [-1.25, 0.0, -0.75, 0.0, 0.0]]
    negative = FrequencyPresencePenalty(-1.0, 0.0, prompt_len=2)(input_ids, scores)
    assert negative[0, 1] == 2.0  # a negative penalty favours repeats
    assert FrequencyPresencePenalty(1.0, 1.0, prompt_len=5)(input_ids, scores) is scores


PENALTIES = [
    {"frequency_penalty": 1.5},
    {"presence_penalty": 1.5},
    {"frequency_penalty": -0.5, "presence_penalty": 1.0},
]


@pytest.mark.parametrize(
    "penalty", PENALTIES, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items())
)
def test_a_penalty_gives_the_same_tokens_batched_alone_and_streamed(
    tiny_backend: Any,
    few_shot_inputs: list[ModelInput],
    one_by_one: list[Generation],
    penalty: dict[str, float],
) -> None:
    """The batched greedy loop (shared prefix, rows leaving early) and transformers' generate
    (one row, as streamed) apply the same processor, so their tokens agree; and the penalty
    does change answers (the tiny model repeats itself)."""
    params = greedy(8, **penalty)
    batched = tiny_backend.generate(few_shot_inputs, params, batch_size=5)
    assert max(g.batch_size for g in batched if g) > 1
    for i, (mi, together) in enumerate(zip(few_shot_inputs, batched, strict=True)):
        stream = tiny_backend.stream(mi, params)
        pieces = list(stream)
        assert together is not None and stream.result is not None
        assert "".join(pieces) == stream.result.text == together.text, f"row {i}"
        assert stream.result.completion_tokens == together.completion_tokens, f"row {i}"
        assert stream.result.finish_reason == together.finish_reason, f"row {i}"
    assert any(g.text != alone.text for g, alone in zip(batched, one_by_one, strict=True))


def test_a_penalty_follows_each_row_as_finished_rows_leave_the_batch(
    tiny_backend: Any, few_shot_inputs: list[ModelInput]
) -> None:
    """Rows that end on a stop string leave the batched loop; the tokens each remaining row
    has generated must stay with it, or its penalties would count another row's answer."""
    params = greedy(24, frequency_penalty=1.5)
    alone = [tiny_backend.generate([mi], params)[0] for mi in few_shot_inputs]
    stop, _ = _a_stop_string(alone[0].text)
    stopped = params.with_(stop=(stop,))
    batched = tiny_backend.generate(few_shot_inputs, stopped)
    assert max(g.batch_size for g in batched if g) > 1
    ended = 0
    for i, (a, b) in enumerate(zip(alone, batched, strict=True)):
        assert b is not None
        if stop in a.text and a.text.find(stop) < len(a.text) - len(stop):
            ended += 1
        expected = a.text[: a.text.find(stop)] if stop in a.text else a.text
        assert b.text == expected, f"row {i}"
    assert ended >= 1  # some rows did leave before the others


@pytest.mark.parametrize("zero", [0.0, -0.0])
def test_a_zero_penalty_is_exactly_no_penalty(
    tiny_backend: Any,
    few_shot_inputs: list[ModelInput],
    one_by_one: list[Generation],
    chat_input: ModelInput,
    zero: float,
) -> None:
    params = greedy(8, frequency_penalty=zero, presence_penalty=zero)
    assert not params.penalised and params.key() == greedy(8).key()
    batched = tiny_backend.generate(few_shot_inputs, params)
    for together, alone in zip(batched, one_by_one, strict=True):
        assert together is not None
        assert (together.text, together.finish_reason, together.completion_tokens) == (
            alone.text,
            alone.finish_reason,
            alone.completion_tokens,
        )
    assert "".join(tiny_backend.stream(chat_input, params)) == "".join(
        tiny_backend.stream(chat_input, greedy(8))
    )


@pytest.mark.parametrize(
    "penalty",
    [{"repetition_penalty": 1.3}, {"repetition_penalty": 0.8, "frequency_penalty": 1.0}],
    ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()),
)
def test_a_repetition_penalty_gives_the_same_tokens_batched_and_alone(
    tiny_backend: Any, few_shot_inputs: list[ModelInput], penalty: dict[str, float]
) -> None:
    """Padding is not part of a row: a padded row in a batch is penalised exactly as it is
    alone. (transformers' own processor counts the padding, which on SmolLM2 is the EOS token,
    so padded rows were kept from ending.)"""
    params = greedy(12, **penalty)
    batched = tiny_backend.generate(few_shot_inputs, params, batch_size=5)
    assert max(g.batch_size for g in batched if g) > 1
    for i, (mi, together) in enumerate(zip(few_shot_inputs, batched, strict=True)):
        stream = tiny_backend.stream(mi, params)
        assert "".join(stream) == together.text, f"row {i}"
        assert stream.result is not None and together is not None
        assert stream.result.finish_reason == together.finish_reason, f"row {i}"


def test_penalties_apply_with_a_repetition_penalty_too(
    tiny_backend: Any, few_shot_inputs: list[ModelInput]
) -> None:
    """A repetition penalty sends greedy rows through transformers' generate instead of the
    batched loop; the frequency penalty still applies there, and streaming agrees."""
    mi = few_shot_inputs[3]
    repeat_only = greedy(12, repetition_penalty=1.2)
    both = greedy(12, repetition_penalty=1.2, frequency_penalty=-2.0)  # favours repeats
    [plain] = tiny_backend.generate([mi], repeat_only)
    [penalised] = tiny_backend.generate([mi], both)
    assert plain is not None and penalised is not None and plain.text != penalised.text
    assert "".join(tiny_backend.stream(mi, both)) == penalised.text


def test_penalties_apply_when_sampling(tiny_backend: Any, chat_input: ModelInput) -> None:
    sampled = GenerationParams(temperature=0.8, max_new_tokens=10, seed=5)
    penalised = sampled.with_(presence_penalty=-2.0)  # its answers seldom repeat: favour it
    seeds = [5, 6, 7, 8]
    plain = tiny_backend.generate([chat_input] * 4, sampled, seeds=seeds)
    with_penalty = tiny_backend.generate([chat_input] * 4, penalised, seeds=seeds)
    assert any(a.text != b.text for a, b in zip(plain, with_penalty, strict=True))
    again = tiny_backend.generate([chat_input] * 4, penalised, seeds=seeds)
    assert [g.text for g in again] == [g.text for g in with_penalty]
    # the stream draws under params.seed (5), as the first row did
    assert "".join(tiny_backend.stream(chat_input, penalised)) == with_penalty[0].text


# --- streaming ----------------------------------------------------------------------------------


def test_stream_joins_to_the_greedy_text(tiny_backend: Any, chat_input: ModelInput) -> None:
    expected = tiny_backend.generate([chat_input], greedy(40))[0]
    stream = tiny_backend.stream(chat_input, greedy(40))
    pieces = list(stream)
    assert len(pieces) >= 2
    assert all(pieces)
    assert stream.result is not None
    assert "".join(pieces) == stream.result.text == expected.text
    assert stream.result.finish_reason == expected.finish_reason
    assert stream.result.completion_tokens == expected.completion_tokens
    assert stream.result.ttft_s is not None and stream.result.ttft_s <= stream.result.latency_s


def test_stream_holds_back_a_stop_string(tiny_backend: Any, chat_input: ModelInput) -> None:
    full = tiny_backend.generate([chat_input], greedy(40))[0].text
    stop, at = _a_stop_string(full)
    stream = tiny_backend.stream(chat_input, greedy(40, stop=(stop,)))
    pieces = list(stream)
    assert stream.result is not None
    assert stream.result.finish_reason == "stop"
    assert "".join(pieces) == stream.result.text == full[:at]
    assert not any(stop in p for p in pieces)


def test_leaving_the_stream_early_stops_the_worker(
    tiny_backend: Any, chat_input: ModelInput, monkeypatch: Any
) -> None:
    generated: list[int] = []
    real_generate = tiny_backend.model.generate

    def counting_generate(*args: Any, **kwargs: Any) -> Any:
        out = real_generate(*args, **kwargs)
        generated.append(out.shape[1] - kwargs["input_ids"].shape[1])
        return out

    monkeypatch.setattr(tiny_backend.model, "generate", counting_generate)
    started = time.perf_counter()
    stream = tiny_backend.stream(chat_input, greedy(400))
    pieces = []
    for piece in stream:
        pieces.append(piece)
        if len(pieces) == 2:
            break
    elapsed = time.perf_counter() - started
    assert len(pieces) == 2
    assert stream.cancelled
    assert not any(t.name == "workbench-stream" for t in threading.enumerate())
    assert elapsed < 5
    assert len(generated) == 1 and generated[0] < 100  # stopped, not run to 400 tokens
    # the lock is free again at once
    assert tiny_backend._generate_lock.acquire(timeout=1)
    tiny_backend._generate_lock.release()


def test_cancel_from_another_thread_stops_the_stream(
    tiny_backend: Any, chat_input: ModelInput
) -> None:
    cancel = Cancel()
    first_piece = threading.Event()

    def press_stop() -> None:
        first_piece.wait(10)
        cancel.set()

    presser = threading.Thread(target=press_stop)
    presser.start()
    started = time.perf_counter()
    stream = tiny_backend.stream(chat_input, greedy(400), cancel=cancel)
    pieces = []
    for piece in stream:
        pieces.append(piece)
        first_piece.set()
    presser.join()
    assert time.perf_counter() - started < 5
    assert stream.result is not None
    assert stream.result.finish_reason == "cancelled"
    assert 0 < stream.result.completion_tokens < 400
    assert "".join(pieces) == stream.result.text


# --- prompts that do not fit --------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_input(tiny_backend: Any) -> ModelInput:
    text = " ".join(f"word{i} and more words" for i in range(200))
    mi: ModelInput = tiny_backend.model_input(
        builtin("zero-shot-sentiment-chat").render({"text": text})
    )
    return mi


def test_prompt_longer_than_the_context_is_refused(
    tiny_backend: Any, long_input: ModelInput, monkeypatch: Any
) -> None:
    n = tiny_backend.count_tokens(long_input)
    assert n > 512
    monkeypatch.setattr(
        tiny_backend.model, "generate", lambda *a, **k: pytest.fail("generate was called")
    )
    calls: list[Callable[[], object]] = [
        lambda: tiny_backend.generate([long_input], greedy(8)),
        lambda: tiny_backend.stream(long_input, greedy(8)),
    ]
    for call in calls:
        with pytest.raises(ContextOverflowError) as info:
            call()
        assert f"the prompt is {n} tokens" in str(info.value)
        assert "context window of 512" in str(info.value)


def test_prompt_plus_max_new_tokens_over_the_context_is_refused(
    tiny_backend: Any, chat_input: ModelInput
) -> None:
    n = tiny_backend.count_tokens(chat_input)
    with pytest.raises(ContextOverflowError, match=f"needs {n + 500}"):
        tiny_backend.generate([chat_input], greedy(500))
    assert tiny_backend.generate([chat_input], greedy(512 - n - 1, stop=("x",)))[0] is not None


def test_one_long_row_stops_the_batch_before_any_generation(
    tiny_backend: Any, few_shot_inputs: list[ModelInput], long_input: ModelInput
) -> None:
    called: list[int] = []
    with pytest.raises(ContextOverflowError):
        tiny_backend.generate(
            [*few_shot_inputs[:3], long_input],
            greedy(8),
            on_batch=lambda done: called.extend(i for i, _ in done),
        )
    assert called == []


def test_the_repetition_penalty_is_transformers_own_but_skips_padding() -> None:
    """On an unpadded row it computes exactly what transformers' processor computes; on the
    same row padded, it still does, where transformers' also penalises the pad token."""
    import torch
    from transformers import RepetitionPenaltyLogitsProcessor

    from workbench.backends.processors import RepetitionPenalty

    torch.manual_seed(0)
    vocab, pad = 50, 7
    scores = torch.randn(1, vocab)
    row = torch.tensor([[3, 11, 3, 42, 5]])
    padded = torch.cat([torch.full((1, 3), pad), row], dim=1)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1]])
    theirs = RepetitionPenaltyLogitsProcessor(1.3)
    ours = RepetitionPenalty(1.3, mask)
    assert torch.equal(ours(padded, scores.clone()), theirs(row, scores.clone()))
    assert not torch.equal(theirs(padded, scores.clone()), theirs(row, scores.clone()))
    generated = torch.cat([padded, torch.tensor([[pad, 9]])], dim=1)  # answer tokens count
    assert torch.equal(
        ours(generated, scores.clone()),
        theirs(torch.cat([row, torch.tensor([[pad, 9]])], dim=1), scores.clone()),
    )
