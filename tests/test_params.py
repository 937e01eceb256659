"""Generation parameters: built from Prompty options and overrides, coerced, validated."""

from __future__ import annotations

import json
from typing import Any

import pytest

from workbench.params import (
    MODEL_OPTIONS,
    OPTION_ALIASES,
    OPTIONS_BY_NAME,
    GenerationParams,
    ParameterError,
    option_values,
    parse_param_pairs,
    typed_values,
)

PROMPTY_OPTIONS: dict[str, Any] = {
    "temperature": 0.5,
    "topP": 0.9,
    "topK": 40,
    "maxOutputTokens": 64,
    "seed": 7,
    "stopSequences": ["\n\n", "END"],
    "frequencyPenalty": 0.5,
    "presencePenalty": -0.25,
    "additionalProperties": {"repetitionPenalty": 1.2},
}


def test_defaults_are_greedy() -> None:
    p = GenerationParams.build()
    assert p == GenerationParams()
    assert p.temperature == 0 and not p.sampling
    assert p.max_new_tokens == 256 and p.stop == ()


def test_build_from_prompty_options() -> None:
    p = GenerationParams.build(PROMPTY_OPTIONS)
    assert p == GenerationParams(
        temperature=0.5,
        top_p=0.9,
        top_k=40,
        max_new_tokens=64,
        repetition_penalty=1.2,
        frequency_penalty=0.5,
        presence_penalty=-0.25,
        seed=7,
        stop=("\n\n", "END"),
    )


def test_overrides_win_over_prompt_options() -> None:
    p = GenerationParams.build(
        PROMPTY_OPTIONS,
        {"temperature": "0", "max_new_tokens": "12", "stop": ["###"], "repetition_penalty": 1.0},
    )
    assert p.temperature == 0.0
    assert p.max_new_tokens == 12
    assert p.stop == ("###",)
    assert p.repetition_penalty == 1.0
    assert p.top_p == 0.9 and p.top_k == 40 and p.seed == 7  # not overridden: from the prompt


def test_options_the_table_does_not_know_are_ignored() -> None:
    # Files from other Prompty tools still run; lint names what is not used.
    p = GenerationParams.build({"maxOutputTokens": 5, "responseFormat": 1, "max_tokens": 9})
    assert p == GenerationParams(max_new_tokens=5)


def test_additional_properties_without_repetition_penalty_is_ignored() -> None:
    assert GenerationParams.build({"additionalProperties": {"other": 1}}) == GenerationParams()


# --- the one table of model options ------------------------------------------------------------


@pytest.mark.parametrize("option", MODEL_OPTIONS, ids=lambda o: o.name)
def test_every_option_sets_a_parameter_and_says_what_each_backend_does(option: Any) -> None:
    assert option.field in GenerationParams.__dataclass_fields__
    assert option.local and option.server
    name, _, sub = option.name.partition(".")
    options = {name: {sub: PROMPTY_OPTIONS[name][sub]}} if sub else {name: PROMPTY_OPTIONS[name]}
    values, unused = option_values(options)
    assert list(values) == [option.field] and unused == []
    assert getattr(GenerationParams.build(options), option.field) != getattr(
        GenerationParams(), option.field
    )


def test_every_parameter_but_do_sample_has_a_prompty_option() -> None:
    # The output constraint is declared in metadata (workbench.constraints), not model.options.
    fields = set(GenerationParams.__dataclass_fields__) - {"do_sample", "constrain", "constraint"}
    assert {o.field for o in MODEL_OPTIONS} == fields


def test_aliases_point_at_options_of_the_table() -> None:
    assert set(OPTION_ALIASES.values()) <= set(OPTIONS_BY_NAME)
    assert not set(OPTION_ALIASES) & set(OPTIONS_BY_NAME)


def test_option_values_names_what_is_not_used() -> None:
    values, unused = option_values(
        {"temperature": 0.2, "max_tokens": 3, "additionalProperties": {"doSample": True}}
    )
    assert values == {"temperature": 0.2}
    assert unused == ["max_tokens", "additionalProperties.doSample"]


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("temperature", "0.7", 0.7),
        ("top_p", "0.9", 0.9),
        ("top_k", "5", 5),
        ("max_new_tokens", "12", 12),
        ("max_new_tokens", 12.0, 12),
        ("seed", "3", 3),
        ("repetition_penalty", "1.1", 1.1),
        ("frequency_penalty", "0.5", 0.5),
        ("presence_penalty", "-1", -1.0),
        ("frequency_penalty", 1, 1.0),
        ("do_sample", "true", True),
        ("do_sample", "no", False),
        ("do_sample", "auto", None),
        ("stop", "END", ("END",)),
        ("stop", ["a", "b"], ("a", "b")),
    ],
)
def test_string_values_are_coerced(name: str, raw: Any, expected: Any) -> None:
    overrides = {name: raw}
    if name == "do_sample" and expected:
        overrides["temperature"] = "0.5"
    value = getattr(GenerationParams.build(None, overrides), name)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("overrides", "mentions"),
    [
        ({"temperature": "-0.1"}, "temperature"),
        ({"temperature": "nan"}, "temperature"),
        ({"temperature": "inf"}, "temperature"),
        ({"top_p": "0"}, "top_p"),
        ({"top_p": "1.5"}, "top_p"),
        ({"top_k": "-1"}, "top_k"),
        ({"max_new_tokens": "0"}, "max_new_tokens"),
        ({"max_new_tokens": "-1"}, "max_new_tokens"),
        ({"repetition_penalty": "0"}, "repetition_penalty"),
        ({"frequency_penalty": "2.5"}, "frequency_penalty must be between -2 and 2"),
        ({"frequency_penalty": "-2.01"}, "frequency_penalty"),
        ({"frequency_penalty": "nan"}, "frequency_penalty"),
        ({"presence_penalty": "3"}, "presence_penalty must be between -2 and 2"),
        ({"presence_penalty": "-inf"}, "presence_penalty"),
        ({"presence_penalty": "lots"}, "presence_penalty"),
        ({"seed": "-3"}, "seed"),
        ({"stop": [""]}, "stop"),
        ({"do_sample": "true", "temperature": "0"}, "do_sample"),
        ({"temprature": "0.5"}, "temprature"),
        ({"max_tokens": "5"}, "max_tokens"),
        ({"temperature": "warm"}, "temperature"),
        ({"max_new_tokens": "ten"}, "max_new_tokens"),
        ({"max_new_tokens": "1.5"}, "max_new_tokens"),
        ({"max_new_tokens": 1.5}, "max_new_tokens"),
        ({"top_k": "many"}, "top_k"),
        ({"seed": "x"}, "seed"),
        ({"do_sample": "maybe"}, "do_sample"),
    ],
)
def test_bad_parameters_are_rejected(overrides: dict[str, Any], mentions: str) -> None:
    with pytest.raises(ParameterError) as info:
        GenerationParams.build(None, overrides)
    assert mentions in str(info.value)


def test_unknown_parameter_lists_the_known_ones() -> None:
    with pytest.raises(ParameterError, match="unknown generation parameter 'temprature'") as info:
        GenerationParams.build(None, {"temprature": 1})
    assert "temperature" in str(info.value).split("known:")[1]


def test_bad_prompt_option_is_rejected_too() -> None:
    with pytest.raises(ParameterError, match="temperature"):
        GenerationParams.build({"temperature": -1})


@pytest.mark.parametrize("max_new_tokens", [512, 513, 4096])
def test_max_new_tokens_must_leave_room_in_the_context_window(max_new_tokens: int) -> None:
    p = GenerationParams(max_new_tokens=max_new_tokens)
    p.validate()  # fine without a model
    with pytest.raises(ParameterError, match="context window of 512"):
        p.validate(512)


def test_max_new_tokens_just_below_the_window_is_accepted() -> None:
    assert GenerationParams(max_new_tokens=511).validate(512).max_new_tokens == 511


def test_with_validates_the_change() -> None:
    p = GenerationParams()
    assert p.with_(temperature=0.7).sampling
    with pytest.raises(ParameterError, match="top_p"):
        p.with_(top_p=2.0)


@pytest.mark.parametrize(
    ("temperature", "do_sample", "sampling"),
    [
        (0.0, None, False),
        (0.01, None, True),
        (0.7, None, True),
        (0.7, True, True),
        (0.7, False, False),
        (0.0, False, False),
    ],
)
def test_sampling_iff_temperature_positive_or_do_sample(
    temperature: float, do_sample: bool | None, sampling: bool
) -> None:
    p = GenerationParams(temperature=temperature, do_sample=do_sample).validate()
    assert p.sampling is sampling


@pytest.mark.parametrize(
    "other",
    [
        {"top_p": 0.5},
        {"top_k": 10},
        {"seed": 99},
        {"temperature": 0.9, "do_sample": False},
    ],
)
def test_key_ignores_sampling_knobs_when_greedy(other: dict[str, Any]) -> None:
    assert GenerationParams(**other).key() == GenerationParams().key()


@pytest.mark.parametrize(
    "other",
    [{"top_p": 0.5}, {"top_k": 10}, {"seed": 99}, {"temperature": 0.9}],
)
def test_key_counts_sampling_knobs_when_sampling(other: dict[str, Any]) -> None:
    base = GenerationParams(temperature=0.7)
    changed = GenerationParams(**{"temperature": 0.7, **other})
    assert changed.key() != base.key()


@pytest.mark.parametrize(
    "other",
    [
        {"max_new_tokens": 10},
        {"repetition_penalty": 1.3},
        {"frequency_penalty": 0.5},
        {"presence_penalty": -0.5},
        {"stop": ("END",)},
        {"temperature": 0.7},
    ],
)
def test_key_counts_what_changes_a_greedy_output(other: dict[str, Any]) -> None:
    assert GenerationParams(**other).key() != GenerationParams().key()


@pytest.mark.parametrize("params", [GenerationParams(), GenerationParams(temperature=0.7, seed=3)])
def test_zero_penalties_leave_the_cache_key_as_it_was(params: GenerationParams) -> None:
    zero = GenerationParams(
        **{**params.as_dict(), "frequency_penalty": 0.0, "presence_penalty": -0.0}
    )
    assert zero.key() == params.key()
    assert "penalty" not in params.key().replace("repetition_penalty", "")


def test_the_greedy_key_is_the_one_stored_before_penalties_existed() -> None:
    # Outputs cached before frequency/presence penalties were added keep being found.
    assert GenerationParams(max_new_tokens=8).key() == (
        '{"do_sample": false, "max_new_tokens": 8, "repetition_penalty": 1.0, "stop": []}'
    )
    assert GenerationParams(temperature=0.7, seed=3).key() == (
        '{"do_sample": true, "max_new_tokens": 256, "repetition_penalty": 1.0, "seed": 3, '
        '"stop": [], "temperature": 0.7, "top_k": 0, "top_p": 1.0}'
    )


def test_penalties_are_range_checked_at_the_edges() -> None:
    p = GenerationParams(frequency_penalty=2.0, presence_penalty=-2.0).validate()
    assert p.penalised and not GenerationParams().penalised


def test_as_dict_is_json_ready() -> None:
    d = GenerationParams(stop=("a",)).as_dict()
    assert d["stop"] == ["a"]
    assert set(d) == {
        "temperature",
        "top_p",
        "top_k",
        "max_new_tokens",
        "repetition_penalty",
        "frequency_penalty",
        "presence_penalty",
        "do_sample",
        "seed",
        "stop",
    }


# --- --param NAME=VALUE ----------------------------------------------------------------------


def test_parse_param_pairs_types_every_value() -> None:
    assert parse_param_pairs(
        ["temperature=0.5", "max-new-tokens=3", "stop=END", "stop=###", " top_p = 0.9"]
    ) == {"temperature": 0.5, "max_new_tokens": 3, "stop": ["END", "###"], "top_p": 0.9}


@pytest.mark.parametrize(
    ("values", "typed"),
    [
        ({"max_new_tokens": "16"}, {"max_new_tokens": 16}),
        ({"max_new_tokens": 16.0}, {"max_new_tokens": 16}),
        ({"seed": "7", "top_k": " 40 "}, {"seed": 7, "top_k": 40}),
        (
            {"temperature": "0", "repetition_penalty": 1},
            {"temperature": 0.0, "repetition_penalty": 1.0},
        ),
        ({"do_sample": "auto"}, {"do_sample": None}),
        ({"do_sample": "yes"}, {"do_sample": True}),
        ({"stop": "END"}, {"stop": ["END"]}),
        ({"stop": ("a", "b")}, {"stop": ["a", "b"]}),
        ({}, {}),
    ],
)
def test_typed_values_are_the_fields_types_and_json_ready(
    values: dict[str, Any], typed: dict[str, Any]
) -> None:
    """The same typed values from the CLI's text, the app's text and a prompt's options."""
    result = typed_values(values)
    assert result == typed
    assert {k: type(v) for k, v in result.items()} == {k: type(v) for k, v in typed.items()}
    assert json.loads(json.dumps(result)) == result
    assert typed_values(result) == result  # typing twice changes nothing


def test_typed_values_refuse_unknown_names_and_bad_values() -> None:
    with pytest.raises(ParameterError, match="unknown generation parameter 'colour'"):
        typed_values({"colour": "red"})
    with pytest.raises(ParameterError, match="max_new_tokens cannot be 'many'"):
        parse_param_pairs(["max_new_tokens=many"])


def test_parse_param_pairs_then_build() -> None:
    p = GenerationParams.build(None, parse_param_pairs(["max_new_tokens=3", "stop=\\n\\n"]))
    assert p.max_new_tokens == 3 and p.stop == ("\n\n",)


@pytest.mark.parametrize(
    ("raw", "stop"),
    [
        ("\\n", "\n"),
        ("\\n\\n", "\n\n"),
        ("\\t", "\t"),
        ("a\\nb", "a\nb"),
        ("x=y", "x=y"),  # only the first = separates name and value
        ("Text:", "Text:"),
    ],
)
def test_stop_escapes(raw: str, stop: str) -> None:
    assert parse_param_pairs([f"stop={raw}"]) == {"stop": [stop]}


@pytest.mark.parametrize("stop", ["Réponse:", "→", "答案:", "naïve\\n"])
def test_stop_keeps_non_ascii_text(stop: str) -> None:
    # A stop string in another language must reach the model as typed (escapes still work).
    expected = stop.replace("\\n", "\n")
    assert parse_param_pairs([f"stop={stop}"]) == {"stop": [expected]}


@pytest.mark.parametrize("pair", ["temperature", "=0.5", "", "  =1"])
def test_parse_param_pairs_rejects_malformed(pair: str) -> None:
    with pytest.raises(ParameterError, match="NAME=VALUE"):
        parse_param_pairs([pair])
