"""Evaluation: run prompt versions over a labelled dataset, score every output, report pass rates.

An evaluation is an ordinary run per version (cached, stored, visible in History) followed by
scoring. Every assertion is checked before anything is generated — an unknown scorer, a bad
regex or schema, a scorer that needs an `expected` column the dataset lacks — so a typo never
costs a model run. A bad *output* (not JSON, too long) is a failed score, never a crash.

Assertions come from the prompt file (`metadata.assert`, a list in promptfoo's vocabulary) and
from the caller (`--assert` on the command line); expected values from the dataset's
`expected` column, or `expected_<metric>` for one metric.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .backends.base import Backend, Cancel
from .choices import ChoiceRequest
from .constraints import SCHEMA_INPUT, Constraint, declared, violation
from .datasets import Dataset
from .errors import WorkbenchError
from .library import Library, VersionInfo
from .probability_scores import (
    DEFINITIONS,
    ChoiceRow,
    ChoiceScores,
    ScoredChoices,
    as_dict,
    choice_scores,
)
from .reports import csv_bytes, json_bytes, report_format, unsupported, write_file
from .runner import Progress, Runner, check_choices
from .runs import OutputRecord
from .scorers import (
    SCORERS,
    AssertionConfigError,
    Check,
    Context,
    Score,
    capability_problem,
    check_needs_expected,
    json_parse_rate,
    parse_checks,
    run_check,
    weighted_pass,
)
from .store import Output, Store, utcnow
from .store import Score as ScoreRow

CHOICE_CHECK = "exact-match"  # scored answer choices, with no assertion given: the label itself
ASSERT_KEY = "assert"  # metadata.assert in a prompt file, as in promptfoo's test cases
REPORT_FORMATS = (".json", ".csv", ".xml")
FREE = "free"


class EvaluationError(WorkbenchError):
    pass


@dataclass(frozen=True)
class RowResult:
    row_index: int
    output_id: int
    variables: dict[str, Any]
    output: str | None
    scores: list[Score]
    passed: bool
    score: float  # weighted share of assertions passed
    finish_reason: str | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None
    # Why the answer does not follow the prompt's declared output constraint, None when it
    # does; `declares` False when the prompt declares none for this row (nothing to follow).
    violation: str | None = None
    declares: bool = False

    @classmethod
    def of(
        cls,
        output: OutputRecord,
        scores: list[Score],
        passed: bool,
        score: float,
        constraint: Constraint | None = None,
    ) -> RowResult:
        """A scored output's row, with its finish, tokens, latency and — when its prompt
        declares a constraint — whether the answer follows it."""
        return cls(
            output.row_index,
            output.id,
            dict(output.variables),
            output.text,
            scores,
            passed,
            score,
            finish_reason=output.finish_reason,
            completion_tokens=output.completion_tokens,
            latency_s=output.latency_s,
            violation=(
                violation(constraint, output.text, output.finish_reason)
                if constraint is not None
                else None
            ),
            declares=constraint is not None,
        )


@dataclass(frozen=True)
class MetricSummary:
    metric: str
    n: int
    mean: float | None
    pass_rate: float


@dataclass(frozen=True)
class VersionReport:
    ref: str
    run_id: int
    model: str
    rows: list[RowResult]
    metrics: list[MetricSummary]
    expects_json: bool = False  # a json-format prompt, or JSON assertions
    # From the outputs' scored answer choices (None: a generated run, no choices to score).
    choice_scores: ChoiceScores | None = None
    # What the answers were decoded under: a constraint's label, "free" for a prompt that
    # declares one but ran without it, None when it declares none.
    decoding: str | None = None

    @property
    def label(self) -> str:
        """The ref, with how it was decoded when it declares a constraint (side by side, the
        same version appears twice)."""
        if self.decoding is None:
            return self.ref
        return f"{self.ref} ({'free' if self.decoding == FREE else 'constrained'})"

    @property
    def valid_rate(self) -> float | None:
        """Share of answers that follow the prompt's declared constraint (schema-valid JSON, a
        matching pattern, one of the choices); cut answers never count. None: none declared."""
        declaring = [r for r in self.rows if r.declares]
        if not declaring:
            return None
        return sum(r.violation is None for r in declaring) / len(declaring)

    @property
    def cut(self) -> int:
        """Answers that reached max_new_tokens (finish `length`)."""
        return sum(r.finish_reason == "length" for r in self.rows)

    @property
    def mean_tokens(self) -> float | None:
        counts = [r.completion_tokens for r in self.rows if r.completion_tokens is not None]
        return statistics.fmean(counts) if counts else None

    @property
    def mean_latency_s(self) -> float | None:
        times = [r.latency_s for r in self.rows if r.latency_s is not None]
        return statistics.fmean(times) if times else None

    @property
    def json_parse_rate(self) -> float:
        """Share of outputs that parse as JSON, whatever the assertions say — the first thing
        to know about a JSON prompt on a small model."""
        return json_parse_rate(r.output for r in self.rows)

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.rows)

    @property
    def pass_rate(self) -> float:
        return self.passed / len(self.rows) if self.rows else 0.0

    @property
    def mean_score(self) -> float:
        return statistics.fmean(r.score for r in self.rows) if self.rows else 0.0


@dataclass(frozen=True)
class EvalReport:
    dataset: str
    checks: dict[str, list[Check]]  # version ref → its assertions
    versions: list[VersionReport]

    def below(self, min_pass_rate: float | None) -> list[VersionReport]:
        if min_pass_rate is None:
            return []
        return [v for v in self.versions if v.pass_rate < min_pass_rate]


# --- planning -------------------------------------------------------------------------------------
def version_checks(version: VersionInfo) -> list[Check]:
    """The assertions written in a prompt version's front matter (`metadata.assert`)."""
    raw = version.file.metadata.get(ASSERT_KEY)
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise EvaluationError(f"{version.ref}: metadata.{ASSERT_KEY} must be a list of assertions")
    try:
        return parse_checks(raw)
    except AssertionConfigError as exc:
        raise EvaluationError(f"{version.ref}: {exc}") from None


JSON_SCORERS = frozenset({"is-json", "is-json-fenced", "json-schema", "json-field"})


def expects_json(version: VersionInfo, checks: Sequence[Check]) -> bool:
    """Whether a version's outputs should be JSON: its technique, or what it is checked with."""
    return "json" in version.technique or any(c.type in JSON_SCORERS for c in checks)


def expected_value(check: Check, variables: Mapping[str, Any]) -> str | None:
    """`expected_<metric>` for this check if the row has one, else `expected`."""
    for key in (f"expected_{check.name}", "expected"):
        value = variables.get(key)
        if value is not None and value != "":
            return str(value)
    return None


def plan(
    library: Library,
    refs: Sequence[str],
    dataset: Dataset,
    extra: Sequence[str | Mapping[str, Any] | Check] = (),
    model: Backend | None = None,
    *,
    choices: ChoiceRequest | None = None,
) -> list[tuple[VersionInfo, list[Check]]]:
    """Versions and their assertions, with every problem found before generation.

    With the `model` that will run them, an assertion it cannot serve (perplexity on a server)
    is refused too; the backend declares that in its capabilities, so nothing is loaded or
    contacted to find out."""
    if not refs:
        raise EvaluationError("name at least one prompt version to evaluate")
    if not dataset.rows:
        raise EvaluationError(f"{dataset.name} has no rows to evaluate")
    try:
        extra_checks = parse_checks(list(extra))
    except AssertionConfigError as exc:
        raise EvaluationError(f"--assert: {exc}") from None
    plans = []
    for ref in refs:
        version = library.get(ref)
        checks = version_checks(version) + extra_checks
        if check_choices([version], choices, 1) and not checks:  # a scored label: exact match
            checks = parse_checks([CHOICE_CHECK])
        if not checks:
            raise EvaluationError(
                f"{version.ref} has no assertions: add a list under metadata.{ASSERT_KEY} in "
                "the prompt file or pass --assert (for example --assert exact-match)"
            )
        for check in checks:
            problem = capability_problem(check, model) if model is not None else None
            if problem is not None:
                raise EvaluationError(f"{version.ref}: {problem}")
            if not check_needs_expected(check):
                continue
            columns = {"expected", f"expected_{check.name}"}
            if not columns & set(dataset.columns):
                raise EvaluationError(
                    f"{version.ref}: {check.name} compares with an expected answer, but "
                    f"{dataset.name} has no 'expected' column (or 'expected_{check.name}'); "
                    f"its columns: {', '.join(dataset.columns)}"
                )
        plans.append((version, checks))
    return plans


# --- running and scoring --------------------------------------------------------------------------
def answer_constraint(
    version: VersionInfo,
    output: OutputRecord,
    memo: dict[tuple[str, str], Constraint | None] | None = None,
) -> Constraint | None:
    """The constraint an answer was decoded under, or — for a free answer — the one its prompt
    declares for that row (what the free answer is measured against); None when none. `memo`
    keeps declared constraints by version and schema input, so a run of free answers checks
    each declaration once."""
    stored = output.params.get("constraint")
    if stored:
        return Constraint.from_dict(stored)
    if output.choices is not None:  # scored answer choices are one of them by construction
        return None
    file = version.file
    try:
        values = file.resolve_variables(output.variables)
    except WorkbenchError:  # a row the prompt cannot render was refused when it ran
        return None
    key = (version.ref, json.dumps(values.get(SCHEMA_INPUT), sort_keys=True, default=str))
    if memo is not None and key in memo:
        return memo[key]
    try:
        found = declared(file.metadata, file.techniques, values)
    except WorkbenchError:  # refused when it ran constrained; nothing to measure against
        found = None
    if memo is not None:
        memo[key] = found
    return found


def score_output(
    output: OutputRecord, checks: Sequence[Check], model: Backend | None = None
) -> list[Score]:
    if output.error is not None or output.text is None:
        reason = f"no output to score: {output.error or 'empty'}"
        return [Score(c.name, None, False, reason, c.weight) for c in checks]
    context = Context(
        output=output.text,
        variables=dict(output.variables),
        latency_s=output.latency_s,
        prompt_tokens=output.prompt_tokens,
        completion_tokens=output.completion_tokens,
        finish_reason=output.finish_reason,
        model=model,
    )
    return [
        run_check(check, replace(context, expected=expected_value(check, output.variables)))
        for check in checks
    ]


def evaluate(
    library: Library,
    runner: Runner,
    refs: Sequence[str],
    dataset: Dataset,
    extra: Sequence[str | Mapping[str, Any] | Check] = (),
    *,
    overrides: Mapping[str, Any] | None = None,
    use_cache: bool = True,
    progress: Callable[[str, Progress], None] | None = None,
    cancel: Cancel | None = None,
    choices: ChoiceRequest | None = None,
    vs_free: bool = False,
) -> EvalReport:
    """Run each version over the dataset (one sample per row) and score every output.

    With `vs_free`, a version whose answers were decoded under a constraint runs again free,
    and both are reported side by side (constraint-valid and JSON-parse rates, pass rate,
    tokens, latency): a constraint can fix the format and still hurt the answer.

    After `cancel` the report holds what was finished: the versions done, and the rows the
    cancelled version had generated (scored as usual); the versions after it are left out.
    """
    plans = plan(library, refs, dataset, extra, runner.backend, choices=choices)
    reports = []
    for version, checks in plans:
        if cancel is not None and cancel.is_set():
            break
        report = _evaluate_version(
            library,
            runner,
            version,
            checks,
            dataset,
            overrides,
            use_cache,
            progress,
            cancel,
            choices,
        )
        reports.append(report)
        if vs_free and report.decoding not in (None, FREE):
            if cancel is not None and cancel.is_set():
                break
            free = {**(overrides or {}), "constrain": False}
            reports.append(
                _evaluate_version(
                    library,
                    runner,
                    version,
                    checks,
                    dataset,
                    free,
                    use_cache,
                    progress,
                    cancel,
                    choices,
                )
            )
    return EvalReport(dataset.name, {v.ref: c for v, c in plans}, reports)


def _evaluate_version(
    library: Library,
    runner: Runner,
    version: VersionInfo,
    checks: Sequence[Check],
    dataset: Dataset,
    overrides: Mapping[str, Any] | None,
    use_cache: bool,
    progress: Callable[[str, Progress], None] | None,
    cancel: Cancel | None,
    choices: ChoiceRequest | None,
) -> VersionReport:
    summary = runner.run(
        [version],
        dataset,
        overrides=overrides,
        samples=1,
        use_cache=use_cache,
        progress=(lambda p: progress(version.ref, p)) if progress else None,
        cancel=cancel,
        choices=choices,
    )
    needs_model = any(SCORERS[c.type].needs_model for c in checks)
    model = runner.backend if needs_model else None
    rows = []
    decoded: set[str] = set()
    memo: dict[tuple[str, str], Constraint | None] = {}
    for output in summary.outputs:
        scores = score_output(output, checks, model)
        share, all_passed = weighted_pass(scores)
        constraint = answer_constraint(version, output, memo)
        if constraint is not None:
            decoded.add(constraint.label if output.params.get("constraint") else FREE)
        rows.append(RowResult.of(output, scores, all_passed, share, constraint))
    store_scores(library.store, [(r.output_id, r.scores) for r in rows], checks)
    return VersionReport(
        version.ref,
        summary.run.id,
        summary.run.model,
        rows,
        _metrics(rows),
        expects_json=expects_json(version, checks),
        choice_scores=score_choices(library.store, summary.outputs),
        decoding=" · ".join(sorted(decoded)) if decoded else None,
    )


def _metrics(rows: Sequence[RowResult]) -> list[MetricSummary]:
    return summarise_metrics(row.scores for row in rows)


def summarise_metrics(score_lists: Iterable[Sequence[Score]]) -> list[MetricSummary]:
    """Per metric over many outputs' scores: how many, the mean value, the share passed."""
    by_metric: dict[str, list[Score]] = {}
    for scores in score_lists:
        for score in scores:
            by_metric.setdefault(score.metric, []).append(score)
    out = []
    for metric, found in by_metric.items():
        values = [s.value for s in found if s.value is not None]
        out.append(
            MetricSummary(
                metric,
                len(found),
                statistics.fmean(values) if values else None,
                sum(s.passed for s in found) / len(found),
            )
        )
    return out


# --- answer choices -------------------------------------------------------------------------------
EXPECTED_COLUMN = "expected"


def stored_choices(store: Store, output_ids: Sequence[int]) -> dict[int, Any]:
    """The scored answer choices stored with these outputs (`output.choices`), by output id;
    outputs without any are absent."""
    found: dict[int, Any] = {}
    ids = sorted(set(output_ids))
    with store.read() as s:
        for start in range(0, len(ids), 500):
            for output_id, choices in s.execute(
                select(Output.id, Output.choices).where(
                    Output.id.in_(ids[start : start + 500]), Output.choices.is_not(None)
                )
            ):
                found[output_id] = choices
    return found


def choice_rows(outputs: Sequence[OutputRecord], stored: Mapping[int, Any]) -> list[ChoiceRow]:
    """Each output's scored choices beside its row's expected answer (the `expected` column).
    A value that cannot be read becomes a row's problem, not an error."""
    rows = []
    for output in outputs:
        expected = output.variables.get(EXPECTED_COLUMN)
        expected_text = None if expected is None else str(expected)
        scored: ScoredChoices | None = None
        problem = output.error
        data = stored.get(output.id)
        if data is not None:
            try:
                scored = ScoredChoices.from_json(data)
            except ValueError as exc:
                problem = f"output {output.id}: {exc}"
        rows.append(ChoiceRow(output.row_index, scored, expected_text, problem))
    return rows


def score_choices(store: Store, outputs: Sequence[OutputRecord]) -> ChoiceScores | None:
    """Probability scores of a version's outputs (None when none has scored choices)."""
    return choice_scores(choice_rows(outputs, stored_choices(store, [o.id for o in outputs])))


PROBABILITY_HEADERS = ["version", "probabilities", "rows", "accuracy", "log-loss", "brier", "ece"]


def probability_table(report: EvalReport) -> list[list[Any]]:
    """One line per version and distribution (raw, then calibrated right under it), in the
    order of PROBABILITY_HEADERS; empty when no version has scored choices."""
    return [
        [v.ref, kind, s.rows, s.accuracy, s.log_loss, s.brier, s.ece]
        for v in report.versions
        if v.choice_scores is not None
        for kind, s in v.choice_scores.by_kind()
    ]


def constraint_costs(report: EvalReport) -> list[str]:
    """One line per version whose constrained answers pass fewer rows than its free ones, side
    by side (`vs_free`): a constraint can fix the format and still hurt the answer, and that
    should be said, not left to be read off a table."""
    lines = []
    for constrained, free in zip(report.versions, report.versions[1:], strict=False):
        if free.decoding != FREE or constrained.ref != free.ref or constrained.decoding is None:
            continue
        if constrained.pass_rate < free.pass_rate:
            lines.append(
                f"{constrained.ref}: constrained decoding passes fewer rows than free "
                f"({constrained.pass_rate:.0%} against {free.pass_rate:.0%}), although "
                f"{_share(constrained.valid_rate)} of its answers follow the constraint "
                f"against {_share(free.valid_rate)} free"
            )
    return lines


def _share(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:.0%}"


def probability_lines(report: EvalReport) -> list[str]:
    """What the terminal prints under the pass rates: the definitions, then one line per row
    that could not be scored (up to a few per version)."""
    if all(v.choice_scores is None for v in report.versions):
        return []
    return [f"Scored from the answer choices' probabilities: {DEFINITIONS}.", *_problems(report)]


def probability_problems(report: EvalReport) -> list[str]:
    """One line per row left out of the probability scores (up to a few per version)."""
    return _problems(report)


def _problems(report: EvalReport) -> list[str]:
    lines = []
    for v in report.versions:
        problems = v.choice_scores.problems if v.choice_scores is not None else ()
        lines += [f"{v.ref}: {p}" for p in problems[:PROBLEMS_SHOWN]]
        if len(problems) > PROBLEMS_SHOWN:
            lines.append(f"{v.ref}: … and {len(problems) - PROBLEMS_SHOWN} more rows left out")
    return lines


PROBLEMS_SHOWN = 5


def _choices_dict(scores: ChoiceScores | None) -> dict[str, Any] | None:
    if scores is None:
        return None
    return {
        "definitions": DEFINITIONS,
        "raw": as_dict(scores.raw) if scores.raw is not None else None,
        "calibrated": as_dict(scores.calibrated) if scores.calibrated is not None else None,
        "problems": list(scores.problems),
    }


def expected_probabilities(version: VersionReport, row_index: int) -> tuple[Any, Any]:
    """(raw, calibrated) probability of a row's expected answer, None where there is none."""
    found = version.choice_scores.row(row_index) if version.choice_scores is not None else None
    return (found.raw, found.calibrated) if found is not None else (None, None)


# --- storing --------------------------------------------------------------------------------------
def store_scores(
    store: Store, items: Sequence[tuple[int, Sequence[Score]]], checks: Sequence[Check]
) -> None:
    """Write the scores of many outputs in one transaction, replacing earlier ones."""
    types = {c.name: ("not-" if c.negate else "") + c.type for c in checks}
    ids = [output_id for output_id, _ in items]

    def write(s: Session) -> None:
        for start in range(0, len(ids), 500):
            s.execute(
                delete(ScoreRow).where(
                    ScoreRow.output_id.in_(ids[start : start + 500]),
                    ScoreRow.metric.in_(list(types)),
                )
            )
        now = utcnow()
        s.add_all(
            ScoreRow(
                output_id=output_id,
                metric=score.metric,
                type=types.get(score.metric, score.metric),
                value=score.value,
                passed=score.passed,
                weight=score.weight,
                detail=score.detail,
                created_at=now,
            )
            for output_id, scores in items
            for score in scores
        )

    # Two scorings of the same outputs at once: the loser of the insert race runs again, and
    # replaces the winner's scores like any later scoring would.
    store.transaction(write)


def stored_scores(store: Store, output_ids: Sequence[int]) -> dict[int, list[Score]]:
    """The scores stored for these outputs (for Compare and History)."""
    found: dict[int, list[Score]] = {}
    ids = list(dict.fromkeys(output_ids))
    with store.read() as s:
        for start in range(0, len(ids), 500):
            for row in s.scalars(
                select(ScoreRow)
                .where(ScoreRow.output_id.in_(ids[start : start + 500]))
                .order_by(ScoreRow.id)
            ):
                found.setdefault(row.output_id, []).append(
                    Score(row.metric, row.value, row.passed, row.detail, row.weight)
                )
    return found


# --- reports --------------------------------------------------------------------------------------
def report_dict(report: EvalReport) -> dict[str, Any]:
    return {
        "dataset": report.dataset,
        "versions": [
            {
                "ref": v.ref,
                "run_id": v.run_id,
                "model": v.model,
                "rows": len(v.rows),
                "passed": v.passed,
                "pass_rate": v.pass_rate,
                "mean_score": v.mean_score,
                "json_parse_rate": v.json_parse_rate,
                "decoding": v.decoding,
                "constraint_valid_rate": v.valid_rate,
                "cut": v.cut,
                "mean_completion_tokens": v.mean_tokens,
                "mean_latency_s": v.mean_latency_s,
                "assertions": [asdict(c) for c in report.checks.get(v.ref, [])],
                "metrics": [asdict(m) for m in v.metrics],
                "probability_scores": _choices_dict(v.choice_scores),
                "results": [
                    {
                        "row": r.row_index + 1,
                        "output_id": r.output_id,
                        "variables": r.variables,
                        "output": r.output,
                        "passed": r.passed,
                        "score": r.score,
                        "scores": [asdict(s) for s in r.scores],
                        "finish_reason": r.finish_reason,
                        "constraint_violation": r.violation if r.declares else None,
                        "p_expected": expected_probabilities(v, r.row_index)[0],
                        "p_expected_calibrated": expected_probabilities(v, r.row_index)[1],
                    }
                    for r in v.rows
                ],
            }
            for v in report.versions
        ],
    }


def render_report(report: EvalReport, fmt: str) -> bytes:
    """The report as JSON, CSV (one line per row and metric) or JUnit XML (`.xml`)."""
    if fmt == ".json":
        return json_bytes(report_dict(report))
    if fmt == ".csv":
        return csv_bytes(
            [
                "version",
                "decoding",
                "run",
                "row",
                "metric",
                "value",
                "passed",
                "detail",
                "output",
                "p_expected",
                "p_expected_calibrated",
            ],
            (
                [
                    v.ref,
                    v.decoding or "",
                    v.run_id,
                    r.row_index + 1,
                    s.metric,
                    s.value,
                    s.passed,
                    s.detail,
                    r.output,
                    *expected_probabilities(v, r.row_index),
                ]
                for v in report.versions
                for r in v.rows
                for s in r.scores
            ),
        )
    if fmt == ".xml":
        suites = ElementTree.Element("testsuites", name=f"workbench eval · {report.dataset}")
        for v in report.versions:
            suite = ElementTree.SubElement(
                suites,
                "testsuite",
                name=v.label,
                tests=str(len(v.rows)),
                failures=str(len(v.rows) - v.passed),
            )
            _xml_properties(suite, v)
            for r in v.rows:
                case = ElementTree.SubElement(
                    suite, "testcase", classname=v.label, name=f"row {r.row_index + 1}"
                )
                failed = [f"{s.metric}: {s.detail}" for s in r.scores if not s.passed]
                if failed:
                    message = "; ".join(failed)
                    failure = ElementTree.SubElement(case, "failure", message=_xml_text(message))
                    failure.text = _xml_text(r.output or "")
        ElementTree.indent(suites)
        data: bytes = ElementTree.tostring(suites, encoding="utf-8", xml_declaration=True)
        return data + b"\n"
    raise unsupported(fmt, REPORT_FORMATS)


def _xml_properties(suite: ElementTree.Element, version: VersionReport) -> None:
    """A test suite's probability scores as JUnit properties (e.g. `log_loss_calibrated`)."""
    if version.choice_scores is None:
        return
    found = version.choice_scores.by_kind()
    if not found:
        return
    properties = ElementTree.SubElement(suite, "properties")
    for kind, scores in found:
        for name in ("accuracy", "log_loss", "brier", "ece"):
            ElementTree.SubElement(
                properties, "property", name=f"{name}_{kind}", value=f"{getattr(scores, name):.6g}"
            )


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_text(text: str) -> str:
    """Model output may hold control characters XML 1.0 cannot carry: write them as \\xNN."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def write_report(report: EvalReport, path: Path) -> None:
    write_file(path, render_report(report, report_format(path, REPORT_FORMATS)))
