"""Stability: how often a prompt version gives the same answer when only the seed changes.

A stability check is an ordinary run with `samples = n` (every row drawn under seeds
`seed … seed + n - 1`, at the prompt's temperature or the self-consistency default), so its
outputs are stored, cached and visible in History like any other. This module only reads those
outputs back: answers are grouped after SQuAD-style normalisation (case, punctuation, articles,
spacing), so "Positive." and "positive" count as one answer, and each (version, row) gets its
majority answer and agreement rate — the same grouping the self-consistency vote uses.

When the rows carry an `expected` column, the report also says how often a single sample was
right and how often the majority was right: the gain self-consistency promises, measured.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .answers import AnswerGroup, answer_key, counts, extract_answer, group_answers
from .errors import WorkbenchError
from .reports import csv_bytes, json_bytes, report_format, unsupported, write_file
from .runs import get_run, run_outputs

if TYPE_CHECKING:
    from .backends.base import Cancel
    from .datasets import Dataset
    from .library import VersionInfo
    from .runner import Progress, Runner
    from .runs import OutputRecord
    from .store import Store

REPORT_FORMATS = (".json", ".csv")


@dataclass(frozen=True)
class RowStability:
    row_index: int
    variables: dict[str, Any]
    samples: int
    groups: list[AnswerGroup]
    unanswered: int  # samples with no extractable answer (or an error)
    expected: str | None = None

    @property
    def majority(self) -> str | None:
        return self.groups[0].answer if self.groups else None

    @property
    def agreement(self) -> float:
        """Share of all samples that gave the majority answer."""
        return self.groups[0].count / self.samples if self.groups and self.samples else 0.0

    @property
    def distinct(self) -> int:
        return len(self.groups)

    @property
    def unanimous(self) -> bool:
        return self.samples > 0 and self.agreement == 1.0

    @property
    def majority_correct(self) -> bool | None:
        if self.expected is None:
            return None
        return self.majority is not None and answer_key(self.majority) == answer_key(self.expected)

    @property
    def sample_accuracy(self) -> float | None:
        """Share of single samples equal to the expected answer (what one run would score)."""
        if self.expected is None or not self.samples:
            return None
        want = answer_key(self.expected)
        right = sum(g.count for g in self.groups if g.key == want)
        return right / self.samples


@dataclass(frozen=True)
class VersionStability:
    ref: str
    run_id: int
    model: str
    rows: list[RowStability]

    @property
    def samples(self) -> int:
        return max((r.samples for r in self.rows), default=0)

    @property
    def mean_agreement(self) -> float:
        return statistics.fmean(r.agreement for r in self.rows) if self.rows else 0.0

    @property
    def unanimous_rate(self) -> float:
        return sum(r.unanimous for r in self.rows) / len(self.rows) if self.rows else 0.0

    @property
    def mean_distinct(self) -> float:
        return statistics.fmean(r.distinct for r in self.rows) if self.rows else 0.0

    @property
    def majority_accuracy(self) -> float | None:
        marks = [r.majority_correct for r in self.rows if r.majority_correct is not None]
        return sum(marks) / len(marks) if marks else None

    @property
    def sample_accuracy(self) -> float | None:
        values = [r.sample_accuracy for r in self.rows if r.sample_accuracy is not None]
        return statistics.fmean(values) if values else None


@dataclass(frozen=True)
class StabilityReport:
    dataset: str
    versions: list[VersionStability]
    answer_pattern: str | None = None

    @property
    def seeds(self) -> int:
        return max((v.samples for v in self.versions), default=0)

    def majority_matrix(self) -> list[dict[str, Any]]:
        """One line per input row: its variables and each version's majority and agreement —
        where versions disagree with each other, or one of them wavers, shows at a glance."""
        lines: dict[int, dict[str, Any]] = {}
        for v in self.versions:
            for r in v.rows:
                line = lines.setdefault(r.row_index, {"row": r.row_index + 1, **r.variables})
                line[v.ref] = f"{r.majority if r.majority is not None else '∅'} ({r.agreement:.0%})"
        return [lines[k] for k in sorted(lines)]


def version_stability(
    ref: str,
    run_id: int,
    model: str,
    outputs: Sequence[OutputRecord],
    answer_pattern: str | None = None,
) -> VersionStability:
    """Stability of one version's outputs (all samples of every row of one run)."""
    by_row: dict[int, list[OutputRecord]] = {}
    for o in outputs:
        by_row.setdefault(o.row_index, []).append(o)
    rows = []
    for row_index in sorted(by_row):
        samples = sorted(by_row[row_index], key=lambda o: o.sample_index)
        answers = [sample_answer(o, answer_pattern) for o in samples]
        variables = dict(samples[0].variables)
        expected = variables.get("expected")
        rows.append(
            RowStability(
                row_index,
                variables,
                len(samples),
                group_answers(answers),
                sum(a is None for a in answers),
                None if expected in (None, "") else str(expected),
            )
        )
    return VersionStability(ref, run_id, model, rows)


def sample_answer(output: OutputRecord, answer_pattern: str | None = None) -> str | None:
    """The answer a sample gives: what `answer_pattern` (a regex; its first group, or the whole
    match; the last match counts) finds in the text when one is given, else the answer the run
    extracted (the prompt's own self-consistency pattern), else the whole text. An error or an
    empty text is no answer.

    The pattern is applied when the report is made, so a stored run can be looked at again
    with a better pattern without generating anything."""
    if output.error is not None:
        return None
    if answer_pattern is not None:
        text = extract_answer(output.text or "", answer_pattern)
    else:
        text = output.answer if output.answer is not None else output.text
    return text.strip() if text and text.strip() else None


def stability_report(
    dataset: str,
    runs: Sequence[tuple[str, int, str, Sequence[OutputRecord]]],
    answer_pattern: str | None = None,
) -> StabilityReport:
    """The report over several versions' outputs: (ref, run id, model, outputs) each."""
    check_pattern(answer_pattern)
    return StabilityReport(
        dataset,
        [
            version_stability(ref, rid, model, outs, answer_pattern)
            for ref, rid, model, outs in runs
        ],
        answer_pattern,
    )


def check_pattern(answer_pattern: str | None) -> None:
    if answer_pattern is None:
        return
    try:
        re.compile(answer_pattern)
    except re.error as exc:
        raise WorkbenchError(
            f"answer pattern {answer_pattern!r} is not a valid regex: {exc}"
        ) from None


def check_seeds(seeds: int) -> None:
    if isinstance(seeds, bool) or seeds < 2:
        raise WorkbenchError(f"stability needs at least 2 seeds to compare answers, got {seeds}")


def measure(
    runner: Runner,
    versions: Sequence[VersionInfo],
    rows: Dataset | Sequence[Mapping[str, Any]],
    seeds: int,
    *,
    overrides: Mapping[str, Any] | None = None,
    use_cache: bool = True,
    progress: Callable[[Progress], None] | None = None,
    cancel: Cancel | None = None,
    answer_pattern: str | None = None,
) -> StabilityReport:
    """Run every version over the rows under `seeds` seeds — one run, so everything is checked
    before anything is generated and History shows it as one line — and report agreement."""
    check_seeds(seeds)
    check_pattern(answer_pattern)
    summary = runner.run(
        list(versions),
        rows,
        overrides=overrides,
        samples=seeds,
        use_cache=use_cache,
        progress=progress,
        cancel=cancel,
    )
    return run_stability(runner.store, summary.run.id, answer_pattern)


def run_stability(store: Store, run_id: int, answer_pattern: str | None = None) -> StabilityReport:
    """The stability report of a stored run (any run whose rows were drawn more than once)."""
    record = get_run(store, run_id)
    by_version: dict[str, list[OutputRecord]] = {ref: [] for ref in record.versions}
    for output in run_outputs(store, run_id):
        by_version.setdefault(f"{output.prompt}@{output.version}", []).append(output)
    return stability_report(
        record.dataset or "input",
        [(ref, run_id, record.model, outputs) for ref, outputs in by_version.items()],
        answer_pattern,
    )


# --- reports --------------------------------------------------------------------------------------
def report_dict(report: StabilityReport) -> dict[str, Any]:
    return {
        "dataset": report.dataset,
        "seeds": report.seeds,
        "answer_pattern": report.answer_pattern,
        "versions": [
            {
                "ref": v.ref,
                "run_id": v.run_id,
                "model": v.model,
                "rows": len(v.rows),
                "mean_agreement": v.mean_agreement,
                "unanimous_rate": v.unanimous_rate,
                "mean_distinct_answers": v.mean_distinct,
                "majority_accuracy": v.majority_accuracy,
                "sample_accuracy": v.sample_accuracy,
                "results": [
                    {
                        "row": r.row_index + 1,
                        "variables": r.variables,
                        "samples": r.samples,
                        "majority": r.majority,
                        "agreement": r.agreement,
                        "unanswered": r.unanswered,
                        "answers": counts(r.groups),
                        "majority_correct": r.majority_correct,
                    }
                    for r in v.rows
                ],
            }
            for v in report.versions
        ],
    }


def render_report(report: StabilityReport, fmt: str) -> bytes:
    """JSON (everything) or CSV (one line per version and row)."""
    if fmt == ".json":
        return json_bytes(report_dict(report))
    if fmt == ".csv":
        return csv_bytes(
            ["version", "run", "row", "samples", "majority", "agreement", "distinct", "answers"],
            (
                [
                    v.ref,
                    v.run_id,
                    r.row_index + 1,
                    r.samples,
                    r.majority,
                    f"{r.agreement:.4f}",
                    r.distinct,
                    json.dumps(counts(r.groups), ensure_ascii=False),
                ]
                for v in report.versions
                for r in v.rows
            ),
        )
    raise unsupported(fmt, REPORT_FORMATS)


def write_report(report: StabilityReport, path: Path) -> None:
    write_file(path, render_report(report, report_format(path, REPORT_FORMATS)))


def summary_rows(report: StabilityReport) -> list[dict[str, Any]]:
    """The per-version table the CLI prints and the page shows."""
    out = []
    for v in report.versions:
        line: dict[str, Any] = {
            "version": v.ref,
            "run": v.run_id,
            "rows": len(v.rows),
            "seeds": v.samples,
            "agreement": v.mean_agreement,
            "unanimous": v.unanimous_rate,
            "distinct answers": v.mean_distinct,
        }
        if v.majority_accuracy is not None:
            line["one-sample accuracy"] = v.sample_accuracy
            line["majority accuracy"] = v.majority_accuracy
        out.append(line)
    return out
