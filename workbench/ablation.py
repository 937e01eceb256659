"""Technique ablation: what each technique block is worth on this model and this task.

`ablate` makes the prompt's variants (workbench.variants), stores each as a trial version
(`Library.save_trial`: hidden from the Library, shown in History), evaluates each on the same
rows (workbench.evaluate: an ordinary stored run, so a repeat comes from the cache), and
reports every variant's mean score with a bootstrap 95% interval and its difference from the
original *paired over rows* (workbench.bootstrap), so a person can see which differences are
noise. `save_best` keeps the winner as the next version of the original prompt.

Everything that could stop the ablation is checked before the first generation: the
assertions (the prompt's, `extra`, or — when neither exists and the dataset has an `expected`
column — exact match with it), the dataset, the resamples. A variant that fails to build, or
whose run fails, is reported as failed with its error; the others go on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .backends.base import Cancel
from .bootstrap import Interval, bootstrap_mean, bootstrap_paired_difference, check_resamples
from .choices import declared_calibration
from .datasets import Dataset
from .errors import WorkbenchError
from .evaluate import (
    EXPECTED_COLUMN,
    evaluate,
    plan,
    score_output,
    version_checks,
)
from .library import TRIALS_SUFFIX, Library, SaveResult, VersionInfo
from .runner import Progress, Runner, samples_for
from .runs import OutputRecord
from .scorers import Check, weighted_pass
from .templates import dump_prompt, parse_prompt, strip_volatile
from .variants import ORIGINAL, Variant, make_variants

DEFAULT_CHECK = "exact-match"  # no assertions anywhere, an expected column: compare with it


class AblationError(WorkbenchError):
    """An ablation that cannot start or a best variant that cannot be saved, in one line."""


@dataclass(frozen=True)
class VariantResult:
    """One variant's outcome. `scores` are per-row scores in dataset order (row index → score);
    `mean` with its interval `ci`; `difference` is mean(variant) − mean(original) over the rows
    both scored, paired. `status`: done, failed (`error` says why) or cancelled."""

    variant: Variant
    status: str
    ref: str | None = None
    run_id: int | None = None
    scores: Mapping[int, float] | None = None
    ci: Interval | None = None
    difference: Interval | None = None
    error: str | None = None

    @property
    def key(self) -> str:
        return self.variant.key

    @property
    def n(self) -> int:
        return len(self.scores) if self.scores is not None else 0

    @property
    def mean(self) -> float | None:
        return self.ci.estimate if self.ci is not None else None


@dataclass(frozen=True)
class AblationReport:
    prompt: str  # the original's ref, NAME@V
    dataset: str
    checks: tuple[str, ...]  # the assertions every variant was scored with, as names
    resamples: int
    seed: int
    results: tuple[VariantResult, ...]
    notes: tuple[str, ...]

    @property
    def original(self) -> VariantResult:
        return self.results[0]

    def best(self) -> VariantResult | None:
        """The finished variant with the highest mean (the original wins ties), or None."""
        done = [r for r in self.results if r.status == "done" and r.mean is not None]
        if not done:
            return None
        return max(done, key=lambda r: (r.mean or 0.0, r.key == ORIGINAL))


ProgressCallback = Callable[[str, Progress], None]


def scoring_checks(
    version: VersionInfo, dataset: Dataset, extra: Sequence[str | Mapping[str, Any] | Check]
) -> list[str | Mapping[str, Any] | Check]:
    """The assertions beside the prompt's own: `extra`, or exact match with the dataset's
    expected column when neither the prompt nor `extra` has any (the issue's "score with the
    prompt's assertions or the expected column")."""
    if extra or version_checks(version):
        return list(extra)
    if EXPECTED_COLUMN in dataset.columns:
        return [DEFAULT_CHECK]
    raise AblationError(
        f"{version.ref} has no assertions and {dataset.name} has no '{EXPECTED_COLUMN}' column "
        f"(its columns: {', '.join(dataset.columns)}): add an '{EXPECTED_COLUMN}' column, a "
        "list under metadata.assert in the prompt, or --assert"
    )


def check_ablation(
    library: Library,
    ref: str,
    dataset: Dataset,
    extra: Sequence[str | Mapping[str, Any] | Check] = (),
    *,
    resamples: int,
) -> tuple[VersionInfo, list[str | Mapping[str, Any] | Check]]:
    """Every mistake the caller can fix, found before a model loads: the version, the
    resamples, the assertions and the dataset's columns. Returns the version and the
    assertions to score with."""
    try:
        check_resamples(resamples)
    except WorkbenchError as exc:
        raise AblationError(f"--resamples: {exc}") from None
    version = library.get(ref)
    if version.prompt.endswith(TRIALS_SUFFIX):
        raise AblationError(f"{version.ref} is a trial: ablate the prompt it was made from")
    if not dataset.rows:
        raise AblationError(f"{dataset.name} has no rows to evaluate")
    checks = scoring_checks(version, dataset, extra)
    plan(library, [version.ref], dataset, checks)
    return version, checks


def ablate(
    library: Library,
    runner: Runner,
    ref: str,
    dataset: Dataset,
    extra_asserts: Sequence[str | Mapping[str, Any] | Check] = (),
    *,
    resamples: int,
    seed: int,
    progress: ProgressCallback | None = None,
    cancel: Cancel | None = None,
) -> AblationReport:
    """Evaluate every variant of `ref` on `dataset` and compare each with the original.

    `progress(label, Progress)` is called during each variant's run, with its label. After
    `cancel` the variants not finished are reported as cancelled.
    """
    version, checks = check_ablation(library, ref, dataset, extra_asserts, resamples=resamples)
    found = make_variants(version.file, dataset.rows[0])
    results: list[VariantResult] = []
    for variant in found.variants:
        if cancel is not None and cancel.is_set():
            results.append(VariantResult(variant, "cancelled"))
            continue
        results.append(
            _run_variant(library, runner, version, variant, dataset, checks, progress, cancel)
        )
    compared = _compare(results, resamples, seed)
    names = tuple(c.name for c in plan(library, [version.ref], dataset, checks)[0][1])
    return AblationReport(
        version.ref, dataset.name, names, resamples, seed, tuple(compared), found.notes
    )


def _run_variant(
    library: Library,
    runner: Runner,
    original: VersionInfo,
    variant: Variant,
    dataset: Dataset,
    checks: Sequence[str | Mapping[str, Any] | Check],
    progress: ProgressCallback | None,
    cancel: Cancel | None,
) -> VariantResult:
    if variant.file is None:
        return VariantResult(variant, "failed", error=variant.error)
    label = variant.label
    report = (lambda p: progress(label, p)) if progress is not None else None
    try:
        if variant.key == ORIGINAL:
            trial = original  # the original's own version: its runs stay under its name
        else:
            trial = library.save_trial(variant.file, original.prompt, f"ablation: {label}")
        if samples_for(trial) > 1:
            ref, run_id, scores = _vote_scores(
                library, runner, trial, dataset, checks, report, cancel
            )
        else:
            evaluated = evaluate(
                library,
                runner,
                [trial.ref],
                dataset,
                checks,
                progress=(lambda _ref, p: report(p)) if report is not None else None,
                cancel=cancel,
            )
            if not evaluated.versions:
                return VariantResult(variant, "cancelled", trial.ref)
            done = evaluated.versions[0]
            ref, run_id = done.ref, done.run_id
            scores = {row.row_index: row.score for row in done.rows}
    except WorkbenchError as exc:
        return VariantResult(variant, "failed", error=str(exc))
    status = "cancelled" if cancel is not None and cancel.is_set() else "done"
    if not scores:
        return VariantResult(variant, status, ref, run_id, error="no rows were scored")
    return VariantResult(variant, status, ref, run_id, scores)


def _vote_scores(
    library: Library,
    runner: Runner,
    trial: VersionInfo,
    dataset: Dataset,
    checks: Sequence[str | Mapping[str, Any] | Check],
    report: Callable[[Progress], None] | None,
    cancel: Cancel | None,
) -> tuple[str, int, dict[int, float]]:
    """A self-consistency variant: evaluate() scores one sample per row, so its samples are run
    here and each row's *majority answer* is scored (a row without one fails)."""
    parsed = plan(library, [trial.ref], dataset, checks)[0][1]
    summary = runner.run([trial], dataset, progress=report, cancel=cancel)
    first: dict[int, OutputRecord] = {}
    for output in summary.outputs:
        first.setdefault(output.row_index, output)
    scores = {}
    for vote in summary.votes:
        if vote.row_index not in first:
            continue
        voted = replace(
            first[vote.row_index],
            text=vote.answer,
            error=None if vote.answer is not None else "no majority answer",
        )
        scores[vote.row_index] = weighted_pass(score_output(voted, parsed))[0]
    return trial.ref, summary.run.id, scores


def _compare(results: list[VariantResult], resamples: int, seed: int) -> list[VariantResult]:
    """Each finished variant's interval, and its paired difference from the original."""
    original = results[0].scores if results and results[0].status == "done" else None
    out = []
    for result in results:
        if result.scores is None or not result.scores:
            out.append(result)
            continue
        rows = sorted(result.scores)
        ci = bootstrap_mean([result.scores[i] for i in rows], resamples=resamples, seed=seed)
        difference = None
        if original is not None and result.key != ORIGINAL:
            both = [i for i in rows if i in original]
            if both:
                difference = bootstrap_paired_difference(
                    [original[i] for i in both],
                    [result.scores[i] for i in both],
                    resamples=resamples,
                    seed=seed,
                )
        out.append(replace(result, ci=ci, difference=difference))
    return out


# --- saving the winner ------------------------------------------------------------------------


@dataclass(frozen=True)
class SavedBest:
    """What `save_best` did: the saved version (None when nothing was saved) and why."""

    saved: SaveResult | None
    message: str


def save_best(library: Library, report: AblationReport, key: str | None = None) -> SavedBest:
    """Save the best variant (or the one named by `key`) as the next version of the original
    prompt, with a note listing what changed and the scores. Nothing is saved when the original
    is best."""
    if key is None:
        chosen = report.best()
        if chosen is None:
            raise AblationError("no variant finished: nothing to save")
    else:
        matching = [r for r in report.results if r.key == key]
        if not matching:
            known = ", ".join(r.key for r in report.results)
            raise AblationError(f"no variant {key!r} in this ablation; its variants: {known}")
        chosen = matching[0]
        if chosen.status != "done":
            raise AblationError(f"variant {key!r} did not finish ({chosen.status}): not saved")
    if chosen.key == ORIGINAL:
        return SavedBest(None, f"the original {report.prompt} scores best: nothing saved")
    original = library.get(report.prompt)
    assert chosen.variant.file is not None  # a finished variant has a file
    pf = chosen.variant.file
    if pf.name != original.prompt:  # variants are built from the original file, so keep its name
        front = dict(strip_volatile(pf.front))
        front["name"] = original.prompt
        pf = parse_prompt(dump_prompt(front, pf.body), original.prompt)
    note = best_note(report, chosen)
    saved = library.save(pf, note)
    if not saved.created:
        return SavedBest(
            saved,
            f"{chosen.variant.label} changes only how the prompt is run ({chosen.variant.change})"
            f": the prompt file is unchanged, {saved.version.ref} stays the latest",
        )
    return SavedBest(saved, f"saved {saved.version.ref}: {note}")


def best_note(report: AblationReport, result: VariantResult) -> str:
    """The saved version's note: what changed, the scores and the data they come from."""
    original = report.original
    parts = [
        f"ablation of {report.prompt} on {report.dataset}: {result.variant.label}"
        f" ({result.variant.change})",
        f"score {format_score(result.mean)} vs original {format_score(original.mean)}",
    ]
    if result.difference is not None:
        parts.append(f"difference {format_difference(result.difference)} (paired, 95% CI)")
    return "; ".join(parts) + f"; {result.n} rows, run {result.run_id}"


# --- rendering (the CLI and the page) -------------------------------------------------------

HEADERS = ("VARIANT", "CHANGE", "ROWS", "SCORE", "95% CI", "DIFF", "DIFF 95% CI", "RUN", "STATUS")
SIGNIFICANT = "*"


def format_score(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def format_interval(interval: Interval | None) -> str:
    return "—" if interval is None else f"[{interval.low:.0%}, {interval.high:.0%}]"


def format_difference(interval: Interval) -> str:
    return (
        f"{interval.estimate * 100:+.0f} pts [{interval.low * 100:+.0f}, "
        f"{interval.high * 100:+.0f}]"
    )


def table_rows(report: AblationReport) -> list[list[str]]:
    """One row per variant in HEADERS' order, as text; a difference whose interval excludes 0
    is marked with SIGNIFICANT."""
    rows = []
    for r in report.results:
        diff = r.difference
        mark = SIGNIFICANT if diff is not None and diff.excludes_zero else ""
        rows.append(
            [
                r.variant.label,
                r.variant.change,
                str(r.n),
                format_score(r.mean),
                format_interval(r.ci),
                "—" if diff is None else f"{diff.estimate * 100:+.0f} pts{mark}",
                "—" if diff is None else f"[{diff.low * 100:+.0f}, {diff.high * 100:+.0f}]",
                "—" if r.run_id is None else str(r.run_id),
                r.status if r.error is None else f"{r.status}: {r.error}",
            ]
        )
    return rows


def report_lines(report: AblationReport) -> list[str]:
    """The text under the table: what the scores are and what the mark means, then notes."""
    lines = [
        f"{report.prompt} on {report.dataset}: mean score ({', '.join(report.checks)}) per "
        f"variant; 95% CIs from {report.resamples} bootstrap resamples (seed {report.seed}); "
        f"DIFF = variant − original over the same rows (paired); {SIGNIFICANT} = its CI "
        "excludes 0.",
    ]
    for result in report.results:
        lines += [f"{result.variant.label}: lint {issue}" for issue in result.variant.lint]
    lines += [f"note: {note}" for note in report.notes]
    return lines


def _interval_dict(interval: Interval | None) -> dict[str, float] | None:
    if interval is None:
        return None
    return {"estimate": interval.estimate, "low": interval.low, "high": interval.high}


def report_dict(report: AblationReport) -> dict[str, Any]:
    return {
        "prompt": report.prompt,
        "dataset": report.dataset,
        "assertions": list(report.checks),
        "resamples": report.resamples,
        "seed": report.seed,
        "confidence": 0.95,
        "notes": list(report.notes),
        "variants": [
            {
                "key": r.key,
                "label": r.variant.label,
                "change": r.variant.change,
                "status": r.status,
                "error": r.error,
                "ref": r.ref,
                "run_id": r.run_id,
                "rows": r.n,
                "mean": r.mean,
                "ci": _interval_dict(r.ci),
                "difference": _interval_dict(r.difference),
                "significant": r.difference is not None and r.difference.excludes_zero,
                "calibrated": r.variant.file is not None
                and declared_calibration(r.variant.file.metadata),
                "lint": list(r.variant.lint),
            }
            for r in report.results
        ],
    }
