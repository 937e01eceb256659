"""Side-by-side comparison: columns of (prompt version, model, parameters) over the same rows.

A comparison is only a view on stored outputs. Running one starts a normal run per column, so
every cell is an ordinary output (cached, reproducible, in History); comparing stored runs
generates nothing. Rows are matched by their variables, so two runs over the same dataset line
up even when they were made on different days.
"""

from __future__ import annotations

import difflib
import html
import json
import re
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import evaluate, wording
from .answers import answer_key
from .backends.base import Cancel
from .choices import declared_choices
from .constraints import Constraint, declared, violation
from .datasets import Dataset
from .datasets import check_columns as check_dataset_columns
from .errors import WorkbenchError
from .library import Library, VersionInfo
from .params import GenerationParams
from .ratings import RatingRecord
from .reports import csv_bytes
from .runner import Progress, Runner, required_variables
from .runs import OutputRecord, get_run, list_runs, run_outputs
from .scorers import (
    SCORERS,
    Check,
    Score,
    check_needs_expected,
    parse_json_output,
    weighted_pass,
)
from .store import Store
from .templates import PromptFile

MAX_COLUMNS = 4
CONSTRAIN = "constrain"  # the override that turns a declared output constraint on or off


@dataclass(frozen=True)
class ColumnSpec:
    """One column to run: a version, a model and the parameters that differ from the prompt's."""

    ref: str
    model: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    dtype: str = "float32"

    @property
    def label(self) -> str:
        return column_label(self.ref, self.model, self.overrides)


@dataclass(frozen=True)
class Column:
    label: str
    ref: str
    model: str
    params: dict[str, Any]
    run_id: int | None


@dataclass(frozen=True)
class Comparison:
    columns: list[Column]
    rows: list[dict[str, Any]]
    cells: list[list[OutputRecord | None]]  # [row][column]

    def column(self, index: int) -> list[OutputRecord]:
        return [row[index] for row in self.cells if row[index] is not None]  # type: ignore[misc]

    @property
    def output_ids(self) -> list[int]:
        return [o.id for row in self.cells for o in row if o is not None]


@dataclass(frozen=True)
class ColumnStats:
    label: str
    outputs: int
    errors: int
    mean_latency_s: float | None
    median_latency_s: float | None
    mean_completion_tokens: float | None
    tokens_per_s: float | None
    agreement: float | None  # share of rows whose answer equals the baseline column's
    thumbs_up: int
    thumbs_down: int
    mean_stars: float | None


MetricScores = evaluate.MetricSummary  # per metric: n, mean value, pass rate


@dataclass(frozen=True)
class ColumnScores:
    """A column's stored scores: how many outputs pass every assertion, and per metric."""

    label: str
    scored: int  # outputs with at least one stored score
    passed: int  # of those, outputs whose weighted assertions all passed
    mean_score: float | None  # mean weighted share of assertions passed
    metrics: list[MetricScores]

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.scored if self.scored else None

    def metric(self, name: str) -> MetricScores | None:
        return next((m for m in self.metrics if m.metric == name), None)


def column_label(ref: str, model: str, overrides: Mapping[str, Any]) -> str:
    if model.startswith("openai:") and "@" in model:  # a server: its model, not its URL
        short_model = model.rsplit("@", 1)[0]
    else:
        short_model = model.rstrip("/").rsplit("/", 1)[-1]
    knobs = ", ".join(
        _knob(k, v) for k, v in sorted(overrides.items()) if k != CONSTRAIN or v is not None
    )
    return f"{ref} · {short_model}" + (f" · {knobs}" if knobs else "")


def _knob(name: str, value: Any) -> str:
    """One override in a column's label; the constrain switch as "constrained" or "free"."""
    if name == CONSTRAIN and isinstance(value, bool):
        return "constrained" if value else evaluate.FREE
    return f"{name}={value}"


# --- running columns ----------------------------------------------------------------------------
def check_columns(
    library: Library,
    specs: Sequence[ColumnSpec],
    rows: Dataset | Sequence[Mapping[str, Any]],
) -> list[VersionInfo]:
    """Everything that can be wrong with a comparison, found before the first token.

    Rows given as a Dataset (a file, a test set, a run's rows) must fit every column's
    variables, as a dataset run must: a file whose columns fill none of them would otherwise
    render the defaults on every row."""
    if not 1 <= len(specs) <= MAX_COLUMNS:
        raise WorkbenchError(f"compare 1 to {MAX_COLUMNS} columns, got {len(specs)}")
    dataset = rows if isinstance(rows, Dataset) else None
    row_list: Sequence[Mapping[str, Any]] = dataset.rows if dataset is not None else rows  # type: ignore[assignment]
    if not row_list:
        raise WorkbenchError("nothing to compare: add at least one input row")
    if dataset is not None:
        check_fit(library, specs, dataset)
    versions = []
    for number, spec in enumerate(specs, 1):
        where = f"column {number} ({spec.label})"
        try:
            version = library.get(spec.ref)
            GenerationParams.build(version.file.options, spec.overrides)
            missing = [v for v in required_variables(version) if any(v not in r for r in row_list)]
            if missing:
                raise WorkbenchError(
                    "the input has no value for " + ", ".join(repr(m) for m in missing)
                )
            for index, row in enumerate(row_list):
                try:
                    version.file.render(row)
                except WorkbenchError as exc:
                    raise WorkbenchError(f"row {index + 1}: {exc}") from None
        except WorkbenchError as exc:
            raise WorkbenchError(f"{where}: {exc}") from None
        versions.append(version)
    return versions


def check_fit(library: Library, specs: Sequence[ColumnSpec], dataset: Dataset) -> None:
    """The dataset's columns against each column's variables (no row is rendered: quick
    enough to run on every redraw of a page)."""
    refs = list(dict.fromkeys(spec.ref for spec in specs))
    versions = [library.get(ref) for ref in refs]
    check_dataset_columns(
        dataset,
        {v.ref: required_variables(v) for v in versions},
        {v.ref: list(v.file.template_variables()) for v in versions},
    )


def run_columns(
    library: Library,
    specs: Sequence[ColumnSpec],
    rows: Dataset | Sequence[Mapping[str, Any]],
    runner_for: Callable[[ColumnSpec], Runner],
    *,
    use_cache: bool = True,
    progress: Callable[[int, Progress], None] | None = None,
    cancel: Cancel | None = None,
    on_output: Callable[[OutputRecord], None] | None = None,
) -> Comparison:
    """Run each column over the rows (answers already stored come from the cache at once).
    A Dataset's name is recorded with each column's run, as a dataset run records it."""
    versions = check_columns(library, specs, rows)
    row_list = [dict(r) for r in (rows.rows if isinstance(rows, Dataset) else rows)]
    given: Dataset | list[dict[str, Any]] = (
        Dataset(rows.name, rows.columns, tuple(row_list)) if isinstance(rows, Dataset) else row_list
    )
    columns: list[Column] = []
    outputs: list[list[OutputRecord]] = []
    for index, (spec, version) in enumerate(zip(specs, versions, strict=True)):
        if cancel is not None and cancel.is_set():
            break
        summary = runner_for(spec).run(
            [version],
            given,
            overrides=spec.overrides,
            samples=1,
            use_cache=use_cache,
            progress=(lambda p, i=index: progress(i, p)) if progress else None,  # type: ignore[misc]
            cancel=cancel,
            on_output=on_output,
        )
        columns.append(
            Column(spec.label, version.ref, spec.model, dict(spec.overrides), summary.run.id)
        )
        outputs.append(summary.outputs)
    return _align(columns, outputs, row_list)


# --- stored runs ----------------------------------------------------------------------------------
def stored_columns(store: Store, run_ids: Sequence[int]) -> list[tuple[int, str]]:
    """(run id, version ref) pairs: a run over several versions gives a column per version."""
    pairs: list[tuple[int, str]] = []
    for record in list_runs(store, limit=len(run_ids) or 1, run_ids=list(run_ids)):
        pairs.extend((record.id, ref) for ref in record.versions)
    order = {rid: i for i, rid in enumerate(run_ids)}
    return sorted(pairs, key=lambda p: (order.get(p[0], 0), p[1]))


def compare_runs(store: Store, selections: Sequence[tuple[int, str]]) -> Comparison:
    """Line up stored outputs of (run, version) pairs; nothing is generated."""
    if not 1 <= len(selections) <= MAX_COLUMNS:
        raise WorkbenchError(f"compare 1 to {MAX_COLUMNS} stored runs, got {len(selections)}")
    columns, outputs = [], []
    for run_id, ref in selections:
        run = get_run(store, run_id)
        found = [
            o
            for o in run_outputs(store, run_id)
            if f"{o.prompt}@{o.version}" == ref and o.sample_index == 0
        ]
        if not found:
            raise WorkbenchError(f"run {run_id} has no outputs for {ref}")
        label = f"run {run_id} · " + column_label(ref, run.model, run.params)
        columns.append(Column(label, ref, run.model, dict(run.params), run_id))
        outputs.append(found)
    return _align(columns, outputs, [])


def _row_key(variables: Mapping[str, Any]) -> str:
    return json.dumps(variables, sort_keys=True, ensure_ascii=False, default=str)


def _align(
    columns: list[Column], outputs: list[list[OutputRecord]], rows: list[dict[str, Any]]
) -> Comparison:
    """Rows in the order given (or first seen); each column's output placed by its variables."""
    order: dict[str, int] = {}
    row_values: list[dict[str, Any]] = []
    for row in rows:
        key = _row_key(row)
        if key not in order:
            order[key] = len(row_values)
            row_values.append(row)
    for column_outputs in outputs:
        for o in sorted(column_outputs, key=lambda o: o.row_index):
            key = _row_key(o.variables)
            if key not in order:
                order[key] = len(row_values)
                row_values.append(dict(o.variables))
    cells: list[list[OutputRecord | None]] = [[None] * len(columns) for _ in row_values]
    for c, column_outputs in enumerate(outputs):
        for o in column_outputs:
            if o.sample_index == 0:
                cells[order[_row_key(o.variables)]][c] = o
    return Comparison(columns, row_values, cells)


# --- reading a comparison -----------------------------------------------------------------
def comparison_csv(comparison: Comparison) -> bytes:
    """The comparison as CSV, as the page's download: each row's variables, then one column of
    answers per column (headed by its label), through the one spreadsheet-safe CSV encoding."""
    labels = [c.label for c in comparison.columns]
    records = [
        {**row, **{labels[c]: (o.text if o else None) for c, o in enumerate(cells)}}
        for row, cells in zip(comparison.rows, comparison.cells, strict=True)
    ]
    header = list(dict.fromkeys([k for r in records for k in r] or labels))
    return csv_bytes(header, ([r.get(k) for k in header] for r in records))


def normalise_answer(output: OutputRecord) -> str:
    """What counts as "the same answer" in a comparison: the extracted answer if the prompt
    defines one, otherwise the text, compared as `answers.answer_key` compares them (the rule
    Stability and the self-consistency vote use too)."""
    return answer_key(output.answer if output.answer is not None else (output.text or ""))


def agreement(comparison: Comparison, baseline: int) -> list[float | None]:
    """Per column, the share of rows where its answer equals the baseline column's."""
    result: list[float | None] = []
    for c in range(len(comparison.columns)):
        pairs = [
            (row[baseline], row[c])
            for row in comparison.cells
            if row[baseline] is not None and row[c] is not None
        ]
        same = sum(normalise_answer(a) == normalise_answer(b) for a, b in pairs)  # type: ignore[arg-type]
        result.append(same / len(pairs) if pairs else None)
    return result


def row_agreement(comparison: Comparison) -> list[float | None]:
    """Per row, the share of columns that give the row's most common answer."""
    out: list[float | None] = []
    for row in comparison.cells:
        answers = [normalise_answer(o) for o in row if o is not None]
        if len(answers) < 2:
            out.append(None)
            continue
        out.append(Counter(answers).most_common(1)[0][1] / len(answers))
    return out


def column_stats(
    comparison: Comparison, baseline: int, ratings: Mapping[int, RatingRecord] | None = None
) -> list[ColumnStats]:
    ratings = ratings or {}
    agree = agreement(comparison, baseline)
    stats = []
    for c, column in enumerate(comparison.columns):
        outs = comparison.column(c)
        ok = [o for o in outs if o.error is None]
        # Cached answers carry their original generation's time: not this run's (wording).
        timed = wording.generated(ok)
        latencies = wording.timed_latencies(timed)
        tokens = [o.completion_tokens for o in ok if o.completion_tokens is not None]
        timed_tokens = sum(o.completion_tokens or 0 for o in timed)
        rated = [ratings[o.id] for o in outs if o.id in ratings]
        stars = [r.stars for r in rated if r.stars is not None]
        stats.append(
            ColumnStats(
                label=column.label,
                outputs=len(outs),
                errors=len(outs) - len(ok),
                mean_latency_s=statistics.fmean(latencies) if latencies else None,
                median_latency_s=statistics.median(latencies) if latencies else None,
                mean_completion_tokens=statistics.fmean(tokens) if tokens else None,
                tokens_per_s=(
                    timed_tokens / sum(latencies) if latencies and sum(latencies) > 0 else None
                ),
                agreement=agree[c],
                thumbs_up=sum(r.verdict == 1 for r in rated),
                thumbs_down=sum(r.verdict == -1 for r in rated),
                mean_stars=statistics.fmean(stars) if stars else None,
            )
        )
    return stats


# --- scores -------------------------------------------------------------------------------------
def column_scores(
    comparison: Comparison, scores_by_output: Mapping[int, Sequence[Score]]
) -> list[ColumnScores]:
    """Per column, totals over the stored scores of its outputs (outputs without any are left
    out): the share passing every weighted assertion, and each metric's mean and pass rate."""
    out = []
    for c, column in enumerate(comparison.columns):
        scored = [
            scores_by_output[o.id] for o in comparison.column(c) if scores_by_output.get(o.id)
        ]
        verdicts = [weighted_pass(scores) for scores in scored]
        metrics = evaluate.summarise_metrics(scored)
        out.append(
            ColumnScores(
                label=column.label,
                scored=len(scored),
                passed=sum(all_passed for _, all_passed in verdicts),
                mean_score=statistics.fmean(share for share, _ in verdicts) if verdicts else None,
                metrics=metrics,
            )
        )
    return out


def score_metrics(totals: Sequence[ColumnScores]) -> list[str]:
    """Every metric scored in any column, in the order first met."""
    return list(dict.fromkeys(m.metric for t in totals for m in t.metrics))


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def score_badges(scores: Sequence[Score], detail_chars: int = 48) -> str:
    """One line of plain text per output: `✓ exact-match 1.00 · ✗ is-json 0.00 (not JSON: …)`
    (the reason is given for failures only)."""
    parts = []
    for score in scores:
        part = f"{'✓' if score.passed else '✗'} {score.metric}"
        if score.value is not None:
            part += f" {score.value:.2f}"
        if not score.passed and score.detail:
            part += f" ({_short(score.detail, detail_chars)})"
        parts.append(part)
    return " · ".join(parts)


@dataclass(frozen=True)
class ScoringResult:
    outputs: int  # outputs scored
    passed: int  # of those, outputs passing every weighted assertion
    checks: list[list[Check]]  # per column, the assertions used for it


def plan_scoring(
    library: Library, comparison: Comparison, extra: Sequence[Check]
) -> list[list[Check]]:
    """Per column, the prompt file's assertions followed by `extra`; every problem (no
    assertion at all, an expected answer no row has) is found before anything is scored."""
    plans = []
    for column in comparison.columns:
        checks = evaluate.version_checks(library.get(column.ref)) + list(extra)
        if not checks:
            raise WorkbenchError(
                f"{column.label}: no assertions to score with: write one per line, or add a "
                f"list under metadata.{evaluate.ASSERT_KEY} in the prompt file"
            )
        for check in checks:
            if not check_needs_expected(check):
                continue
            keys = ("expected", f"expected_{check.name}")
            if not any(row.get(k) not in (None, "") for row in comparison.rows for k in keys):
                raise WorkbenchError(
                    f"{check.name} compares with an expected answer, but no row has an "
                    f"'expected' (or 'expected_{check.name}') value; give the reference as the "
                    "value instead"
                )
        plans.append(checks)
    return plans


def score_comparison(
    library: Library,
    comparison: Comparison,
    extra: Sequence[Check] = (),
    model_for: Callable[[str], Any] | None = None,
) -> ScoringResult:
    """Score every output of the comparison and store the scores (replacing earlier scores of
    the same metrics). `model_for(model spec)` gives a loaded model for the scorers that need
    one (perplexity, model-graded); it is only called for those."""
    plans = plan_scoring(library, comparison, extra)
    scored: list[list[tuple[int, list[Score]]]] = []
    for c, (column, checks) in enumerate(zip(comparison.columns, plans, strict=True)):
        needs_model = any(SCORERS[check.type].needs_model for check in checks)
        model = model_for(column.model) if needs_model and model_for is not None else None
        scored.append(
            [(o.id, evaluate.score_output(o, checks, model)) for o in comparison.column(c)]
        )
    for items, checks in zip(scored, plans, strict=True):  # stored once everything is scored
        evaluate.store_scores(library.store, items, checks)
    outputs = [scores for items in scored for _, scores in items]
    passed = sum(weighted_pass(scores)[1] for scores in outputs)
    return ScoringResult(len(outputs), passed, plans)


# --- output constraints: constrained and free side by side -----------------------------------
KIND_NAMES = {"json_schema": "JSON Schema", "regex": "pattern", "choices": "choices"}


def describe(constraint: Constraint) -> str:
    """What a constraint is, for a switch or a caption: `JSON Schema from input schema`."""
    return f"{KIND_NAMES[constraint.kind]} from {constraint.source}"


def declared_constraint(
    version: VersionInfo | PromptFile, values: Mapping[str, Any] | None = None
) -> Constraint | None:
    """The output constraint a version's (or a draft's) answers decode under by default for a
    row (`values` over its inputs' defaults), as the runner resolves it
    (`runner.output_constraint`): None when it declares none, or when its answers are scored
    as answer choices rather than generated. Raises ConstraintError for a declaration that
    cannot be decoded under (ChoicesError for bad choices)."""
    file = version.file if isinstance(version, VersionInfo) else version
    if declared_choices(file.metadata) is not None:
        return None
    given: dict[str, Any] = {n: s.default for n, s in file.inputs.items() if s.has_default}
    given.update(values or {})
    return declared(file.metadata, file.techniques, given)


def constrained_and_free(
    library: Library,
    specs: Sequence[ColumnSpec],
    rows: Dataset | Sequence[Mapping[str, Any]],
) -> list[ColumnSpec]:
    """The columns with each one that decodes under its version's declared constraint (for
    the first row) followed by the same column free: the constrained column says so
    (`constrain` True), its twin runs with `constrain` False. Columns already free or whose
    prompt declares nothing stay as given; identical columns are kept once. Raises when that
    makes more than MAX_COLUMNS columns, or (naming the column) when a declared constraint
    cannot be decoded under."""
    row_list = rows.rows if isinstance(rows, Dataset) else rows
    first = dict(row_list[0]) if row_list else {}
    out: list[ColumnSpec] = []
    for number, spec in enumerate(specs, 1):
        switch = spec.overrides.get(CONSTRAIN)
        twins = [spec]
        if switch is not False:
            try:
                constraint = declared_constraint(library.get(spec.ref), first)
            except WorkbenchError as exc:
                raise WorkbenchError(f"column {number} ({spec.label}): {exc}") from None
            if constraint is not None:
                twins = [_switched(spec, True), _switched(spec, False)]
        out.extend(t for t in twins if t not in out)
    if len(out) > MAX_COLUMNS:
        raise WorkbenchError(
            f"constrained and free side by side makes {len(out)} columns, and a comparison "
            f"has at most {MAX_COLUMNS}: compare fewer columns"
        )
    return out


def _switched(spec: ColumnSpec, on: bool) -> ColumnSpec:
    return ColumnSpec(spec.ref, spec.model, {**spec.overrides, CONSTRAIN: on}, spec.dtype)


@dataclass(frozen=True)
class AnswerCheck:
    """An answer against the output constraint its prompt declares."""

    decoded: Constraint | None  # what it was decoded under; None: free
    against: Constraint  # what it is measured against: that, else the declared one
    problem: str | None  # why it does not follow it (`constraints.violation`); None: it does

    @property
    def line(self) -> str:
        """One plain line for under an answer: what it was decoded under and whether it
        follows the constraint (a cut answer is incomplete, never valid)."""
        if self.decoded is not None:
            verdict = "follows it" if self.problem is None else f"does not: {self.problem}"
            return f"under {describe(self.decoded)} · {verdict}"
        what = describe(self.against)
        if self.problem is None:
            return f"{evaluate.FREE} · follows {what}"
        return f"{evaluate.FREE} · does not follow {what}: {self.problem}"


def check_answer(
    version: VersionInfo,
    output: OutputRecord,
    memo: dict[tuple[str, str], Constraint | None] | None = None,
) -> AnswerCheck | None:
    """`output` against its constraint: the one it was decoded under, else (a free answer)
    the one its prompt declares for its row, as `evaluate.answer_constraint` reads it. None:
    an error, a scored choice, or nothing declared. `memo` keeps declared constraints by
    version and schema input, so a column of free answers compiles each one once. A server's
    answer that ignored its constraint is stored with the reason as its error, and checked
    like any other; an error without an answer is not."""
    if output.error is not None and output.text is None:
        return None
    against = evaluate.answer_constraint(version, output, memo)
    if against is None:
        return None
    stored = output.params.get("constraint")
    decoded = Constraint.from_dict(stored) if stored else None
    return AnswerCheck(decoded, against, violation(against, output.text, output.finish_reason))


def check_answers(
    library: Library, outputs: Comparison | Iterable[OutputRecord]
) -> dict[int, AnswerCheck]:
    """By output id, every answer (of a comparison, or any outputs) whose prompt declares a
    constraint, checked against it (see `check_answer`); each version is read once."""
    pairs = (  # each answer with the version it answers: a column's, else its own
        [(col.ref, o) for c, col in enumerate(outputs.columns) for o in outputs.column(c)]
        if isinstance(outputs, Comparison)
        else [(f"{o.prompt}@{o.version}", o) for o in outputs]
    )
    memo: dict[tuple[str, str], Constraint | None] = {}
    versions: dict[str, VersionInfo | None] = {}
    checks: dict[int, AnswerCheck] = {}
    for ref, output in pairs:
        if ref not in versions:
            try:
                versions[ref] = library.get(ref)
            except WorkbenchError:  # a version deleted since: nothing to check against
                versions[ref] = None
        version = versions[ref]
        found = check_answer(version, output, memo) if version is not None else None
        if found is not None:
            checks[output.id] = found
    return checks


@dataclass(frozen=True)
class ConstraintFigures:
    """A column's answers against their declared output constraint, and what it costs."""

    label: str
    decoding: str | None  # `describe` of what it decoded under, "free"; None: none declared
    answers: int  # outputs with an answer (no error, or one that broke its constraint)
    checked: int  # of those, answers whose prompt declares a constraint
    valid: int  # of those, answers that follow it (a cut answer never does)
    json_checked: int  # answers measured against a JSON Schema
    json_parsed: int  # of those, answers that parse as JSON (is-json's rules)
    cut: int  # answers that reached max_new_tokens (finish "length")
    mean_tokens: float | None  # completion tokens, over every answer
    mean_latency_s: float | None  # over the answers generated by this comparison's runs
    generated: int

    @property
    def valid_rate(self) -> float | None:
        return self.valid / self.checked if self.checked else None

    @property
    def json_parse_rate(self) -> float | None:
        return self.json_parsed / self.json_checked if self.json_checked else None


def constraint_figures(
    comparison: Comparison, checks: Mapping[int, AnswerCheck]
) -> list[ConstraintFigures]:
    """Per column: what it was decoded under, the constraint-valid and (for a JSON Schema)
    JSON-parse rates, the answers cut at max_new_tokens, mean tokens and mean latency (of the
    answers generated now: a cached answer's time is its original run's)."""
    out = []
    for c, column in enumerate(comparison.columns):
        # a server's answer that ignored its constraint is an error with an answer: checked
        answers = [o for o in comparison.column(c) if o.error is None or o.id in checks]
        checked = [checks[o.id] for o in answers if o.id in checks]
        json_texts = [
            o.text for o in answers if o.id in checks and checks[o.id].against.kind == "json_schema"
        ]
        decodings = sorted({describe(k.decoded) if k.decoded else evaluate.FREE for k in checked})
        tokens = [o.completion_tokens for o in answers if o.completion_tokens is not None]
        latencies = wording.timed_latencies(answers)
        out.append(
            ConstraintFigures(
                label=column.label,
                decoding=" · ".join(decodings) if decodings else None,
                answers=len(answers),
                checked=len(checked),
                valid=sum(k.problem is None for k in checked),
                json_checked=len(json_texts),
                json_parsed=sum(_parses(t) for t in json_texts),
                cut=sum(o.finish_reason == "length" for o in answers),
                mean_tokens=statistics.fmean(tokens) if tokens else None,
                mean_latency_s=statistics.fmean(latencies) if latencies else None,
                generated=len(latencies),
            )
        )
    return out


def _parses(text: str | None) -> bool:
    if text is None:
        return False
    try:
        parse_json_output(text)
    except ValueError:
        return False
    return True


# --- word-level diff ------------------------------------------------------------------------------
_TOKENS = re.compile(r"\s+|\w+|[^\w\s]")


def word_diff(base: str, other: str) -> list[tuple[str, str]]:
    """`other` against `base` as (op, text) pieces: equal, insert (only in other), delete."""
    a, b = _TOKENS.findall(base), _TOKENS.findall(other)
    pieces: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            pieces.append(("equal", "".join(a[i1:i2])))
            continue
        if op in ("delete", "replace"):
            pieces.append(("delete", "".join(a[i1:i2])))
        if op in ("insert", "replace"):
            pieces.append(("insert", "".join(b[j1:j2])))
    return pieces


DIFF_STYLE = {
    "insert": "background:#d4f7dc;text-decoration:none",
    "delete": "background:#fde0e0;text-decoration:line-through;color:#8a1f1f",
}


def diff_html(pieces: Sequence[tuple[str, str]]) -> str:
    """The diff as HTML in which every piece of model text is escaped: highlighted, never run."""
    parts = []
    for op, text in pieces:
        escaped = html.escape(text)
        if op == "equal":
            parts.append(escaped)
        else:
            tag = "ins" if op == "insert" else "del"
            parts.append(f'<{tag} style="{DIFF_STYLE[op]}">{escaped}</{tag}>')
    return (
        '<div class="wb-diff" style="white-space:pre-wrap;font-family:monospace;'
        'font-size:0.85rem;line-height:1.4">' + "".join(parts) + "</div>"
    )
