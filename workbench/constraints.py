"""Output constraints: what a prompt declares its answer must be, checked before any model loads.

A prompt declares at most one: a JSON Schema (`metadata.json_schema`, or the json-format
technique's `schema` input), a regular expression (`metadata.output_pattern`), or a list of
allowed answers (`metadata.choices`, shared with answer-choice scoring). A local model then
decodes under it — a grammar engine masks every token that would leave the language at each
step (see backends.processors.GrammarMask) — so the answer is schema-valid, matches the pattern
or is one of the answers by construction, unless it runs out of `max_new_tokens`.

The engine is llguidance (the grammar engine inside llama.cpp, also used by vLLM and SGLang),
chosen over xgrammar on this kind of CPU (2 cores, default model, json-answer's schema,
measured replaying 16 valid answers): a step's masks took 0.46 ms at batch 1 and 0.44 ms at
batch 16 (its thread pool fills the rows in parallel) against xgrammar's 0.20 and 2.13 ms, both
far below a model step (tens to hundreds of ms); compiling the schema took 1 ms against 58 ms.
Both accepted every valid answer. llguidance is one self-contained wheel with no dependencies;
xgrammar needs apache-tvm-ffi and declares torch, transformers, pydantic and triton (the README
has the end-to-end figures).

A constraint is a plain frozen record, part of the generation parameters (`params.constraint`),
so it is in the cache key, groups rows into batches and is stored with every output's
parameters: whether an output was constrained, and by what, is read back from there.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .choices import ChoicesError, parse_choices
from .errors import WorkbenchError

if TYPE_CHECKING:
    from llguidance._lib import JsonCompileOptions

Kind = Literal["json_schema", "regex", "choices"]
SCHEMA_INPUT = "schema"  # the json-format technique's input (compose.SCHEMA_INPUT)
JSON_FORMAT = "json-format"
# JSON is laid out as json.dumps writes it, with no free whitespace: a small model given the
# choice of whitespace can spend every remaining token on it (the tiny test model did).
JSON_LAYOUT: JsonCompileOptions = {
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
}


class ConstraintError(WorkbenchError):
    """A declared constraint that cannot be decoded under, said in one line with where it is."""


@dataclass(frozen=True)
class Constraint:
    """One output constraint: its kind, its text (canonical JSON for a schema or a list of
    choices, the pattern itself for a regex) and where the prompt declared it."""

    kind: Kind
    spec: str
    source: str  # "metadata.json_schema", "input schema", "metadata.output_pattern", …

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "spec": self.spec, "source": self.source}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Constraint:
        kind = data.get("kind")
        if kind not in ("json_schema", "regex", "choices"):
            raise ConstraintError(f"unknown constraint kind {kind!r}")
        return cls(kind, str(data.get("spec", "")), str(data.get("source", "")))

    @property
    def label(self) -> str:
        """A short description for tables and captions: `json_schema (metadata.json_schema)`."""
        return f"{self.kind} ({self.source})"

    def grammar(self) -> str:
        """The constraint as an llguidance grammar (what the engine compiles)."""
        from llguidance import LLMatcher

        if self.kind == "json_schema":
            return str(LLMatcher.grammar_from_json_schema(self.spec, overrides=JSON_LAYOUT))
        if self.kind == "regex":
            return str(LLMatcher.grammar_from_regex(self.spec))
        alternatives = " | ".join(json.dumps(c) for c in json.loads(self.spec))
        return str(LLMatcher.grammar_from_lark(f"start: {alternatives}"))

    def check(self) -> Constraint:
        """Refuse, with one line, what the engine cannot decode under: an invalid schema, a
        schema feature it does not support, an invalid, empty or unsatisfiable pattern. Needs
        no model or tokenizer, so it runs before anything loads."""
        problem = _problem(self)
        if problem is not None:
            raise ConstraintError(problem)
        return self


@functools.lru_cache(maxsize=256)
def _problem(constraint: Constraint) -> str | None:
    """Why `constraint` cannot be decoded under, or None. Kept per constraint: the runner
    checks every row's, and a json-format prompt's schema input is the same on every row
    (building and validating its grammar took about 2 ms a row)."""
    from llguidance import LLMatcher

    where = constraint.source
    if constraint.kind == "regex" and not constraint.spec:
        return f"{where}: the pattern is empty; an answer must match something"
    if constraint.kind == "json_schema":
        try:
            _check_schema(constraint.spec, where)
        except ConstraintError as exc:
            return str(exc)
    try:
        problem = LLMatcher.validate_grammar(constraint.grammar())
    except ValueError as exc:
        problem = str(exc)
    if problem:
        what = {"json_schema": "JSON Schema", "regex": "pattern", "choices": "choices"}
        return (
            f"{where}: the grammar engine cannot decode under this {what[constraint.kind]}: "
            f"{_first_line(problem)}"
        )
    return None


def json_schema(value: Any, source: str) -> Constraint:
    """A JSON Schema given as a mapping (YAML front matter) or as JSON text (an input)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ConstraintError(f"{source}: the JSON Schema is not valid JSON: {exc}") from None
    if not isinstance(value, Mapping):
        raise ConstraintError(
            f"{source}: a JSON Schema must be an object, not {type(value).__name__}"
        )
    return Constraint("json_schema", json.dumps(value, sort_keys=True, ensure_ascii=False), source)


def regex(value: Any, source: str) -> Constraint:
    if not isinstance(value, str):
        raise ConstraintError(f"{source}: a pattern must be text, not {type(value).__name__}")
    return Constraint("regex", value, source)


def choices(value: Sequence[str] | Any, source: str) -> Constraint:
    try:
        parsed = parse_choices(value)
    except ChoicesError as exc:
        raise ConstraintError(f"{source}: {exc}") from None
    return Constraint("choices", json.dumps(list(parsed), ensure_ascii=False), source)


def declared(
    metadata: Mapping[str, Any],
    techniques: Sequence[str],
    variables: Mapping[str, Any],
) -> Constraint | None:
    """The constraint a prompt declares for one row, or None; raises ConstraintError when bad.

    A schema comes first (`metadata.json_schema`, else a json-format prompt's `schema` input
    as the row fills it), then `metadata.output_pattern`, then `metadata.choices`. Declaring
    two of these is refused: which one the answer follows must not depend on an order."""
    found: list[Constraint] = []
    if metadata.get("json_schema") is not None:
        found.append(json_schema(metadata["json_schema"], "metadata.json_schema"))
    elif JSON_FORMAT in techniques and variables.get(SCHEMA_INPUT) not in (None, ""):
        found.append(json_schema(variables[SCHEMA_INPUT], f"input {SCHEMA_INPUT}"))
    if metadata.get("output_pattern") is not None:
        found.append(regex(metadata["output_pattern"], "metadata.output_pattern"))
    if metadata.get("choices") is not None:
        found.append(choices(metadata["choices"], "metadata.choices"))
    if len(found) > 1:
        raise ConstraintError(
            "a prompt declares one output constraint, not "
            + " and ".join(c.source for c in found)
            + ": keep one"
        )
    return found[0].check() if found else None


def violation(
    constraint: Constraint, text: str | None, finish_reason: str | None = None
) -> str | None:
    """Why an answer does not follow `constraint`, in one line, or None when it does.

    Every answer is checked, constrained or not: a free answer's validity is what constraining
    is measured against, and a server may ignore a constraint it was sent. An answer cut by
    `max_new_tokens` (`finish_reason` "length") is incomplete whatever its text, never valid.
    A JSON answer must be one JSON value (surrounding whitespace allowed) valid against the
    schema; a pattern must match the whole answer; a choice must be one of them (surrounding
    whitespace allowed)."""
    if text is None:
        return "no answer"
    if finish_reason == "length":
        return "incomplete: the answer reached max_new_tokens before the constraint was complete"
    if constraint.kind == "json_schema":
        import jsonschema
        from jsonschema.exceptions import best_match

        from .json_text import loads

        try:
            value = loads(text.strip())
        except ValueError:
            return "not JSON"
        schema = json.loads(constraint.spec)
        validator = jsonschema.validators.validator_for(
            schema, default=jsonschema.Draft202012Validator
        )(schema)
        error = best_match(validator.iter_errors(value))
        if error is None:
            return None
        at = "/".join(str(p) for p in error.absolute_path)
        return f"not valid against the schema{' at ' + at if at else ''}: {error.message}"
    if constraint.kind == "regex":
        import re

        try:
            matched = re.fullmatch(constraint.spec, text) is not None
        except re.error:  # a pattern the engine reads and Python's re does not: no verdict
            return None
        return None if matched else "does not match the pattern"
    allowed = json.loads(constraint.spec)
    return None if text.strip() in allowed else "not one of the choices"


def _check_schema(spec: str, where: str) -> None:
    import jsonschema

    schema = json.loads(spec)
    try:
        validator = jsonschema.validators.validator_for(
            schema, default=jsonschema.Draft202012Validator
        )
        validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        path = "/".join(str(p) for p in exc.path)
        at = f" at {path}" if path else ""
        raise ConstraintError(f"{where}: invalid JSON Schema{at}: {exc.message}") from None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text
