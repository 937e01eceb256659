"""Constrained decoding on the tiny model: whatever the random model would say, an answer
under a JSON Schema parses and validates, one under choices is one of them, one under a pattern
matches it; batched equals one-by-one, streamed equals generated; the cache key and the stored
parameters tell constrained from free; bad constraints are refused before the model loads."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from workbench.backends.base import ModelInput
from workbench.backends.local import TransformersBackend
from workbench.backends.model_files import resolve_model
from workbench.backends.processors import GRAMMAR
from workbench.constraints import Constraint, ConstraintError, choices, json_schema, regex
from workbench.errors import WorkbenchError
from workbench.params import GenerationParams
from workbench.runner import Runner, cache_key
from workbench.runs import run_outputs

SCHEMAS: dict[str, dict[str, Any]] = {
    "nested object": {
        "type": "object",
        "properties": {
            "a": {
                "type": "object",
                "properties": {"b": {"type": "string", "maxLength": 5}},
                "required": ["b"],
                "additionalProperties": False,
            }
        },
        "required": ["a"],
        "additionalProperties": False,
    },
    "array": {
        "type": "array",
        "items": {"type": "integer", "minimum": 0, "maximum": 9},
        "minItems": 1,
        "maxItems": 3,
    },
    "enum": {"enum": ["red", "green", "blue"]},
    "bounded numbers": {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": -3, "maximum": 40},
            # a bound on the digits too: a random model never stops adding decimals
            "x": {"type": "number", "minimum": 0, "maximum": 1, "multipleOf": 0.25},
        },
        "required": ["n", "x"],
        "additionalProperties": False,
    },
    "required and optional": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 6},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
        },
        "required": ["name"],
        "additionalProperties": False,
    },
}
TEXTS = ["Reply with JSON:", "Roger has 5 tennis balls.", "Text: I love this product!", "abc"]
GREEDY = GenerationParams(max_new_tokens=160)
SAMPLED = GenerationParams(max_new_tokens=160, temperature=1.0, seed=3)


def inputs(texts: list[str] = TEXTS) -> list[ModelInput]:
    return [ModelInput(t, add_special_tokens=True) for t in texts]


def under(constraint: Constraint, params: GenerationParams = GREEDY) -> GenerationParams:
    return params.with_(constraint=constraint)


@pytest.mark.parametrize("params", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
@pytest.mark.parametrize("name", list(SCHEMAS))
def test_every_answer_under_a_schema_parses_and_validates(
    tiny_backend: Any, name: str, params: GenerationParams
) -> None:
    schema = SCHEMAS[name]
    outs = tiny_backend.generate(inputs(), under(json_schema(schema, "test"), params))
    for out in outs:
        assert out.finish_reason == "eos", out.text
        jsonschema.validate(json.loads(out.text), schema)


def test_answers_under_choices_are_only_the_declared_strings(tiny_backend: Any) -> None:
    allowed = ["Positive", "Negative", "Neutral", "a much longer answer"]
    for params in (GREEDY, SAMPLED):
        outs = tiny_backend.generate(inputs(), under(choices(allowed, "test"), params))
        assert all(out.text in allowed for out in outs), [o.text for o in outs]


@pytest.mark.parametrize("pattern", [r"[0-9]{1,4}", r"(yes|no), because [a-z]{2,8}\."])
def test_answers_under_a_pattern_match_it(tiny_backend: Any, pattern: str) -> None:
    for params in (GREEDY, SAMPLED):
        for out in tiny_backend.generate(inputs(), under(regex(pattern, "test"), params)):
            assert re.fullmatch(pattern, out.text), out.text


def test_batched_equals_one_by_one_under_greedy(tiny_backend: Any) -> None:
    params = under(json_schema(SCHEMAS["required and optional"], "test"))
    shared = [ModelInput("Reply with JSON: " + t, True) for t in TEXTS]  # a reused prefix
    batched = tiny_backend.generate(shared, params)
    alone = tiny_backend.generate(shared, params, batch_size=1)
    assert [o.text for o in batched] == [o.text for o in alone]
    for a, b in zip(batched, alone, strict=True):
        assert a.logprobs.tokens == b.logprobs.tokens
        assert a.logprobs.logprobs == pytest.approx(b.logprobs.logprobs, abs=1e-4)


def test_a_streamed_answer_is_the_generated_one(tiny_backend: Any) -> None:
    params = under(json_schema(SCHEMAS["nested object"], "test"))
    [x] = inputs(["Reply with JSON:"])
    [generated] = tiny_backend.generate([x], params)
    stream = tiny_backend.stream(x, params)
    assert "".join(stream) == generated.text
    assert stream.result.finish_reason == "eos"
    json.loads(stream.result.text)


def test_stored_probabilities_say_they_are_after_the_mask(tiny_backend: Any) -> None:
    allowed = ["Positive", "Negative"]
    [free] = tiny_backend.generate(inputs(["abc"]), GREEDY.with_(max_new_tokens=4))
    [out] = tiny_backend.generate(inputs(["abc"]), under(choices(allowed, "test")))
    assert GRAMMAR not in free.logprobs.processors
    assert GRAMMAR in out.logprobs.processors
    # After the mask, only tokens that begin an allowed answer have any probability.
    ids, values = out.logprobs.top_ids[0], out.logprobs.top_logprobs[0]
    pieces = tiny_backend.token_pieces(ids, in_sequence=False)
    for piece, value in zip(pieces, values, strict=True):
        if value > float("-inf"):
            assert any(a.startswith(piece) for a in allowed), piece


def test_an_answer_cut_by_max_new_tokens_is_marked_length(tiny_backend: Any) -> None:
    schema = SCHEMAS["nested object"]
    [out] = tiny_backend.generate(
        inputs(["abc"]), under(json_schema(schema, "t")).with_(max_new_tokens=3)
    )
    assert out.finish_reason == "length"
    with pytest.raises((ValueError, jsonschema.ValidationError)):
        jsonschema.validate(json.loads(out.text), schema)


def test_a_branch_of_a_constrained_answer_stays_under_the_constraint(tiny_backend: Any) -> None:
    params = under(json_schema(SCHEMAS["required and optional"], "test"))
    [x] = inputs(["abc"])
    [parent] = tiny_backend.generate([x], params)
    forced = parent.logprobs.tokens[:3]
    branch = tiny_backend.generate_forced(x, forced, params, seed=0)
    assert branch.finish_reason == "eos"
    jsonschema.validate(json.loads(branch.text), SCHEMAS["required and optional"])
    outside = tiny_backend.token_ids("zz")[:1]
    with pytest.raises(ValueError, match="leave the answer's constraint"):
        tiny_backend.generate_forced(x, outside, params, seed=0)


# --- declared by the prompt, through the runner -------------------------------------------------

SCHEMA = SCHEMAS["required and optional"]


def save(library: Any, prompt_text: Any, **metadata: Any) -> Any:
    text = prompt_text(
        "constrained",
        "Reply with JSON about {{ text }}:",
        model={"apiType": "completion", "options": {"maxOutputTokens": 120}},
        metadata={"technique": "zero-shot", **metadata},
    )
    return library.save(text).version


def test_a_declared_schema_is_on_by_default_and_stored_with_each_output(
    runner: Runner, prompt_text: Any
) -> None:
    version = save(runner.library, prompt_text, json_schema=SCHEMA)
    summary = runner.run([version], [{"text": t} for t in TEXTS])
    for out in summary.outputs:
        assert out.params["constraint"]["kind"] == "json_schema"
        assert out.params["constraint"]["source"] == "metadata.json_schema"
        assert out.finish_reason == "eos"
        jsonschema.validate(json.loads(out.text), SCHEMA)


def test_no_constrain_runs_free_and_is_never_answered_by_a_constrained_output(
    runner: Runner, prompt_text: Any
) -> None:
    version = save(runner.library, prompt_text, output_pattern="[0-9]{3}")
    row = [{"text": "abc"}]
    constrained = runner.run([version], row).outputs[0]
    free = runner.run([version], row, overrides={"constrain": False}).outputs[0]
    assert re.fullmatch("[0-9]{3}", constrained.text)
    assert not free.cached and "constraint" not in free.params
    again = runner.run([version], row).outputs[0]
    assert again.cached and again.text == constrained.text


def test_the_cache_key_separates_constrained_and_free(tiny_backend: Any) -> None:
    [x] = inputs(["abc"])
    keys = {
        cache_key(tiny_backend, x, params, 0)
        for params in (
            GREEDY,
            under(regex("[0-9]+", "a")),
            under(regex("[0-9]*", "a")),
            under(choices(["x", "y"], "a")),
        )
    }
    assert len(keys) == 4


def test_the_json_format_schema_input_is_a_constraint(runner: Runner, prompt_text: Any) -> None:
    text = prompt_text(
        "json-format",
        "JSON for {{ text }} matching {{ schema }}:",
        model={"apiType": "completion", "options": {"maxOutputTokens": 120}},
        inputs={
            "text": {"kind": "string", "default": "a"},
            "schema": {"kind": "string", "default": json.dumps(SCHEMA)},
        },
        metadata={"technique": "json-format"},
    )
    version = runner.library.save(text).version
    rows = [{"text": "abc"}, {"text": "abc", "schema": json.dumps(SCHEMAS["array"])}]
    outs = runner.run([version], rows).outputs
    for out, schema in zip(outs, [SCHEMA, SCHEMAS["array"]], strict=True):
        assert out.params["constraint"]["source"] == "input schema"
        assert out.finish_reason == "eos"
        jsonschema.validate(json.loads(out.text), schema)


def test_constrain_is_refused_for_a_prompt_that_declares_nothing(
    runner: Runner, prompt_text: Any
) -> None:
    version = save(runner.library, prompt_text)
    with pytest.raises(ConstraintError, match="declares no output constraint"):
        runner.run([version], [{"text": "a"}], overrides={"constrain": True})


@pytest.fixture
def fresh_backend(tiny_model_dir: Path, tmp_path: Path) -> TransformersBackend:
    """A backend of its own (not the process-wide one), so a test can see nothing loaded."""
    return TransformersBackend(resolve_model(str(tiny_model_dir), tmp_path), "float32")


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"json_schema": {"type": "nonsense"}}, "invalid JSON Schema at type"),
        ({"json_schema": "{not json"}, "not valid JSON"),
        ({"json_schema": [1, 2]}, "must be an object"),
        ({"json_schema": {"$ref": "#/$defs/missing"}}, "cannot decode under this JSON Schema"),
        ({"json_schema": {"type": "integer", "minimum": 5, "maximum": 1}}, "Unsatisfiable"),
        ({"output_pattern": ""}, "the pattern is empty"),
        ({"output_pattern": "(unclosed"}, "cannot decode under this pattern"),
        ({"output_pattern": r"[^\s\S]"}, "no answer"),
        ({"output_pattern": "a{0}"}, "no answer but an empty one satisfies it"),
        ({"output_pattern": "[0-9]", "json_schema": {"type": "string"}}, "one output constraint"),
    ],
    ids=[
        "invalid schema",
        "schema not JSON",
        "schema not an object",
        "unresolvable ref",
        "unsatisfiable schema",
        "empty pattern",
        "invalid pattern",
        "unsatisfiable pattern",
        "empty-only pattern",
        "two constraints",
    ],
)
def test_a_bad_constraint_is_refused_before_the_model_loads(
    fresh_backend: TransformersBackend,
    builtin_library: Any,
    prompt_text: Any,
    metadata: dict[str, Any],
    message: str,
) -> None:
    version = save(builtin_library, prompt_text, **metadata)
    with pytest.raises(ConstraintError, match=re.escape(message)) as caught:
        Runner(builtin_library, fresh_backend).run([version], [{"text": "a"}])
    assert "\n" not in str(caught.value)
    assert not fresh_backend.loaded


def test_choices_with_a_blank_one_are_refused() -> None:
    with pytest.raises(ConstraintError, match="choice 2 is empty"):
        choices(["yes", "  "], "metadata.choices")


def test_a_constraint_round_trips_through_stored_parameters() -> None:
    params = under(regex("[a-z]+", "metadata.output_pattern"))
    assert GenerationParams.from_values(params.as_dict()) == params
    assert "constraint" not in GREEDY.as_dict() and "constrain" not in GREEDY.as_dict()
    assert GREEDY.with_(constrain=False).key() == GREEDY.key()


def test_a_server_runs_a_declared_constraint_free_and_refuses_a_required_one(
    builtin_library: Any, prompt_text: Any
) -> None:
    from workbench.backends.base import Capabilities
    from workbench.runner import output_constraint

    version = save(builtin_library, prompt_text, output_pattern="[0-9]+")
    rendered = version.file.render({"text": "a"})
    assert output_constraint(version, rendered, GREEDY, lambda: False, None) is None
    with pytest.raises(WorkbenchError, match="cannot decode under a grammar"):
        output_constraint(version, rendered, GREEDY.with_(constrain=True), lambda: False, None)
    assert not Capabilities().constrained


def built_in_digits(tmp_path: Path, prompt_text: Any) -> None:
    """A built-in prompt `digits` whose answer must be two digits (metadata.output_pattern)."""
    folder = tmp_path / "builtins"  # where WORKBENCH_PROMPTS_DIR points (conftest)
    folder.mkdir(exist_ok=True)
    text = prompt_text(
        "digits",
        "Digits for {{ text }}:",
        model={"apiType": "completion", "options": {"maxOutputTokens": 8}},
        metadata={"technique": "zero-shot", "output_pattern": "[0-9]{2}"},
    )
    (folder / "digits.prompty").write_text(text, encoding="utf-8")


def test_the_cli_says_what_an_answer_was_decoded_under_and_no_constrain_runs_free(
    tiny_backend: Any, tiny_model_dir: Path, tmp_path: Path, capsys: Any, prompt_text: Any
) -> None:
    from workbench.cli import main

    built_in_digits(tmp_path, prompt_text)
    model = ["--model", str(tiny_model_dir)]
    assert main(["run", "digits", "--var", "text=a", *model]) == 0
    out, err = capsys.readouterr()
    assert re.fullmatch(r"[0-9]{2}\n", out)
    assert "under regex (metadata.output_pattern)" in err
    assert main(["run", "digits", "--var", "text=a", "--no-constrain", *model]) == 0
    out, err = capsys.readouterr()
    assert "under " not in err
    assert main(["run", "digits", "--var", "text=a", "--constrain", "--no-cache", *model]) == 0
    assert "under regex" in capsys.readouterr().err


def test_violation_says_why_an_answer_does_not_follow_its_constraint() -> None:
    from workbench.constraints import violation

    schema = json_schema(
        {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}, "s"
    )
    assert violation(schema, ' {"a": 1}\n') is None
    assert violation(schema, "hello") == "not JSON"
    assert "at a" in (violation(schema, '{"a": "x"}') or "")
    assert (violation(schema, '{"a": 1}', "length") or "").startswith("incomplete")
    assert violation(schema, None) == "no answer"
    pattern = regex("[0-9]+", "p")
    assert violation(pattern, "12") is None
    assert violation(pattern, "12a") == "does not match the pattern"
    labels = choices(["Yes", "No"], "c")
    assert violation(labels, "Yes\n") is None
    assert violation(labels, "Maybe") == "not one of the choices"


# --- constrained and free side by side (evaluate --vs-free) ---------------------------------------


def test_evaluate_vs_free_reports_the_same_version_constrained_and_free(
    runner: Runner, prompt_text: Any
) -> None:
    from workbench.datasets import Dataset
    from workbench.evaluate import FREE, evaluate, render_report, report_dict

    version = save(runner.library, prompt_text, json_schema=SCHEMA)
    rows = Dataset("rows", ("text",), tuple({"text": t} for t in TEXTS))
    report = evaluate(runner.library, runner, [version.ref], rows, ["is-json"], vs_free=True)
    constrained, free = report.versions
    assert constrained.ref == free.ref == version.ref
    assert constrained.decoding == "json_schema (metadata.json_schema)"
    assert free.decoding == FREE and free.label.endswith("(free)")
    assert constrained.valid_rate == 1.0 and constrained.json_parse_rate == 1.0
    assert constrained.cut == 0 and constrained.mean_tokens is not None
    # the free answers of a random model: measured against the same schema, rarely valid
    assert free.valid_rate is not None and free.valid_rate < 1.0
    assert all(r.violation for r in free.rows if r.finish_reason == "length")
    stored = run_outputs(runner.store, free.run_id)
    assert all("constraint" not in o.params for o in stored)
    data = report_dict(report)["versions"]
    assert [v["decoding"] for v in data] == [constrained.decoding, FREE]
    assert data[0]["constraint_valid_rate"] == 1.0
    assert b"json_schema (metadata.json_schema)" in render_report(report, ".csv")


def test_evaluate_vs_free_runs_a_version_without_a_constraint_once(
    runner: Runner, prompt_text: Any
) -> None:
    from workbench.datasets import Dataset
    from workbench.evaluate import evaluate

    version = save(runner.library, prompt_text)
    rows = Dataset("rows", ("text",), ({"text": "a"},))
    [only] = evaluate(
        runner.library, runner, [version.ref], rows, ["is-json"], vs_free=True
    ).versions
    assert only.decoding is None and only.valid_rate is None and only.label == version.ref


def test_eval_cli_vs_free_prints_both_rows(
    tiny_backend: Any, tiny_model_dir: Path, tmp_path: Path, capsys: Any, prompt_text: Any
) -> None:
    from workbench.cli import main

    built_in_digits(tmp_path, prompt_text)
    data = tmp_path / "rows.csv"
    data.write_text("text\na\nb\n", encoding="utf-8")
    model = ["--model", str(tiny_model_dir)]
    args = ["eval", "digits", "--dataset", str(data), "--assert", "regex:^[0-9]{2}$", *model]
    assert main([*args, "--vs-free"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "DECODED" in out[0] and "VALID" in out[0] and "LATENCY" in out[0]
    assert "regex (metadata.output_pattern)" in out[2] and "100%" in out[2]
    assert " free " in out[3]
    assert main([*args, "--vs-free", "--no-constrain"]) != 0
    assert "--vs-free runs constrained and free" in capsys.readouterr().err


def test_a_constraint_that_costs_accuracy_is_said() -> None:
    from workbench.evaluate import FREE, EvalReport, RowResult, VersionReport, constraint_costs

    def version(decoding: str, passed: list[bool], valid: list[bool]) -> VersionReport:
        rows = [
            RowResult(
                i, i, {}, "x", [], p, float(p), violation=None if v else "not JSON", declares=True
            )
            for i, (p, v) in enumerate(zip(passed, valid, strict=True))
        ]
        return VersionReport("p@1", 1, "m", rows, [], decoding=decoding)

    constrained = version("json_schema (input schema)", [True, False], [True, True])
    free = version(FREE, [True, True], [False, True])
    [line] = constraint_costs(EvalReport("rows", {}, [constrained, free]))
    assert line == (
        "p@1: constrained decoding passes fewer rows than free (50% against 100%), although "
        "100% of its answers follow the constraint against 50% free"
    )
    better = version("json_schema (input schema)", [True, True], [True, True])
    assert constraint_costs(EvalReport("rows", {}, [better, free])) == []
