"""Evaluate: prompt versions × a labelled dataset × assertions → pass rates and a report; or
the same versions under several seeds → how stable their answers are."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from workbench import evaluate, jobs, probability_scores, scorers, stability, testsets, wording
from workbench.app import charts, constrain_panel, state, ui
from workbench.choices import ChoiceRequest
from workbench.constraints import Constraint
from workbench.datasets import Dataset
from workbench.evaluate import EvalReport
from workbench.library import VersionInfo
from workbench.params import parse_param_pairs
from workbench.stability import StabilityReport

MAX_VERSIONS = 4
ASSERT_HELP = (
    "One per line: a shorthand such as `exact-match`, `icontains:{{ expected }}`, "
    "`not-contains:sorry`, `is-json`, `rouge-l>=0.5`, `latency<=2000` (milliseconds), or a "
    'JSON object `{"type": "json-schema", "value": {...}}`. Added to the assertions in each '
    "prompt file."
)

ui.page(
    "Evaluate",
    "Score prompt versions on a labelled dataset — pass rates, metrics, a report — or measure "
    "how stable their answers are across seeds.",
)
lib = ui.load_library()
choice = ui.model_sidebar()

refs_available = [f"{p.name}@{n}" for p in lib.list_prompts() for n in range(p.latest, 0, -1)]
refs = st.multiselect(
    "Versions to evaluate",
    refs_available,
    key="eval_refs",
    max_selections=MAX_VERSIONS,
    help="Each version runs over every row (one sample per row; stored answers are reused).",
)
if not refs:
    st.info("Choose one or more prompt versions.")
    st.stop()

variables: list[str] = []
defaults: dict[str, Any] = {}
chosen: dict[str, VersionInfo] = {}  # read once: every section below asks about them
with ui.guard("Reading the versions"):
    for ref in refs:
        version = chosen[ref] = lib.get(ref)
        for name in version.file.template_variables():
            if name not in variables:
                variables.append(name)
        for name, spec in version.file.inputs.items():
            if spec.has_default:
                defaults.setdefault(name, spec.default)
        written = evaluate.version_checks(version)
        if written:
            st.caption(ui.escape_markdown(f"{ref} asserts: " + ", ".join(c.name for c in written)))
if len(chosen) < len(refs):  # the guard has said which could not be read
    st.stop()

PASS_RATE, STABILITY = "Pass rate (assertions)", "Stability across seeds"
measure = st.radio(
    "Measure",
    [PASS_RATE, STABILITY],
    horizontal=True,
    key="eval_measure",
    help="Stability draws every row under several seeds and groups equal answers (after "
    "normalising case, punctuation and spacing): agreement with the majority answer, per version.",
)
assertions_text = choices_text = ""
score_choices = calibrate = False
seeds = 0
answer_pattern: str | None = None
if measure == PASS_RATE:
    assertions_text = st.text_area(
        "Assertions",
        key="eval_asserts",
        height=110,
        help=ASSERT_HELP,
        placeholder="exact-match\nnot-contains:I cannot",
    )
    declared = [c for v in chosen.values() if (c := v.file.metadata.get("choices"))]
    score_choices = st.toggle(
        "Score answer choices",
        bool(declared),
        key="eval_choices_on",
        help="Score each label's probability after the prompt and answer the most likely one, "
        "instead of generating (local models). Versions without assertions are scored by exact "
        "match with `expected`.",
    )
    if score_choices:
        choices_text = st.text_input(
            "Choices (comma-separated; empty: each version's own metadata.choices)",
            ", ".join(str(c) for c in declared[0]) if declared else "",
            key="eval_choices",
            placeholder="Positive, Negative, Neutral",
        )
        calibrate = st.toggle(
            "Calibrate",
            key="eval_calibrate",
            help="Contextual calibration: divide by the probabilities the prompt gives "
            "content-free inputs (N/A, empty, [MASK]); the calibrated answer is scored.",
        )
else:
    seeds = int(
        st.number_input(
            "Seeds per row",
            min_value=2,
            max_value=50,
            value=5,
            key="eval_seeds",
            help="Each row is drawn this many times, each under its own seed; a greedy prompt "
            "samples at temperature 0.7. An `expected` column adds majority-vote accuracy.",
        )
    )
    answer_pattern = (
        st.text_input(
            "Answer pattern (optional)",
            key="eval_answer_pattern",
            placeholder="(Positive|Negative|Neutral)",
            help="A regex that picks the answer out of each output (its first group, else the "
            "whole match; the last match counts). Empty: the prompt's own self-consistency "
            "pattern, else the whole output.",
        ).strip()
        or None
    )
constrain: bool | None = None
vs_free = False
if measure == PASS_RATE and not score_choices:
    constrained = {
        ref: found
        for ref in refs
        if isinstance(found := constrain_panel.declared(chosen[ref], {}), Constraint)
    }
    if constrained:
        what = ", ".join(f"{ref}: {c.label}" for ref, c in constrained.items())
        constrain = st.toggle(
            "Constrain the output",
            True,
            key="eval_constrain",
            help=constrain_panel.SWITCH_HELP + f" Declared: {what}.",
        )
        vs_free = constrain and st.checkbox(
            "Constrained and free side by side",
            key="eval_vs_free",
            help="Each version that declares a constraint runs twice, constrained and free: "
            "constraint-valid and JSON-parse rates, pass rate, answers cut at max_new_tokens, "
            "tokens and latency, side by side (`workbench eval --vs-free`). A constraint can "
            "fix the format and still hurt the answer.",
        )
params_text = st.text_input(
    "Parameters",
    key="eval_params",
    placeholder="max_new_tokens=16",
    help="What differs from each prompt's own options: NAME=VALUE, comma-separated.",
)
st.markdown(
    "**Rows** — the variables, and an `expected` column with the answer scorers compare with "
    "(or `expected_<metric>` for one metric)."
)
dataset: Dataset | None = None
with ui.guard("Reading the rows"):
    dataset, typed = ui.labelled_rows(
        lib,
        variables,
        defaults,
        "eval",
        help="Test sets are saved below or with `workbench testsets save`.",
    )
    if dataset is not None and typed:
        left, right = st.columns([3, 1], vertical_alignment="bottom")
        set_name = left.text_input(
            "Save these rows as a test set", key="eval_save_name", placeholder="sentiment"
        )
        if right.button("Save test set", key="eval_save_set", disabled=not set_name.strip()):
            info, created = testsets.save_test_set(lib.store, set_name.strip(), dataset)
            if created:
                st.success(
                    ui.escape_markdown(f"Saved as {info.ref} ({wording.plural(info.rows, 'row')}).")
                )
            else:
                st.info(ui.escape_markdown(f"Unchanged: same rows as {info.ref}."))


def start(rows: Dataset) -> jobs.Job:
    """Check the request here (a bad assertion or parameter shows at once, before anything
    runs); the model loads and the rows run in the job, so the running state shows at once."""
    overrides = parse_param_pairs([p.strip() for p in params_text.split(",") if p.strip()])
    if constrain is not None:
        overrides.setdefault("constrain", constrain)
    runner = state.runner(choice)
    if measure == STABILITY:
        versions = list(chosen.values())
        stability.check_seeds(seeds)
        stability.check_pattern(answer_pattern)

        def measure_stability(job: jobs.Job) -> StabilityReport:
            return stability.measure(
                runner,
                versions,
                rows,
                seeds,
                overrides=overrides,
                progress=job.report,
                cancel=job.cancel,
                answer_pattern=answer_pattern,
            )

        title = (
            f"stability of {', '.join(refs)} on {wording.plural(len(rows.rows), 'row')} × "
            f"{seeds} seeds"
        )
        return jobs.start_job(title, measure_stability)
    extra = scorers.parse_assertion_lines(assertions_text)
    # Every mistake before a row runs. A server's backend says what it cannot score without
    # contacting it; a local model scores everything, and loads in the job.
    remote = choice.spec.startswith("openai:")
    request = ChoiceRequest.from_form(score_choices, choices_text, calibrate)
    evaluate.plan(
        lib, refs, rows, extra, state.backend(choice) if remote else None, choices=request
    )

    def work(job: jobs.Job) -> EvalReport:
        return evaluate.evaluate(
            lib,
            runner,
            refs,
            rows,
            extra,
            overrides=overrides,
            progress=lambda ref, p: job.report(p),
            cancel=job.cancel,
            choices=request,
            vs_free=vs_free,
        )

    return jobs.start_job(
        f"evaluate {', '.join(refs)} on {wording.plural(len(rows.rows), 'row')}", work
    )


def start_evaluation() -> jobs.Job:
    assert dataset is not None
    job = start(dataset)
    st.session_state.pop("eval_report", None)
    st.session_state["eval_total"] = (len(refs) + vs_free * len(refs)) * len(dataset.rows)
    return job


ui.run_button(
    "Evaluate",
    key="eval_run",
    state_key="eval_job",
    start=start_evaluation,
    action="Starting the evaluation",
    disabled=dataset is None,
)


def stopped(job: jobs.Job) -> str:
    """What a stopped evaluation or stability measure kept: its rows, scored and stored."""
    result = job.result
    if isinstance(result, EvalReport):
        kept = sum(len(v.rows) for v in result.versions)
        total = st.session_state.get("eval_total", kept)
        return f"Stopped: {kept} of {wording.plural(total, 'row')} kept and scored."
    p = job.progress
    if p is not None and p.total:
        return f"Stopped: {p.done} of {wording.plural(p.total, 'answer')} kept."
    return "Stopped before the first answer."


ui.watch_job(
    "eval_job", "eval_cancel", ui.keep_result("eval_report", "evaluation"), stopped=stopped
)


def _follows(row: evaluate.RowResult) -> str:
    """Whether a row's answer follows its prompt's declared constraint, in plain words."""
    if not row.declares:
        return ""
    return "follows it" if row.violation is None else row.violation


def show(report: EvalReport) -> None:
    st.divider()
    st.subheader("Report · " + ui.escape_markdown(report.dataset))
    metrics = sorted({m.metric for v in report.versions for m in v.metrics})
    json_column = any(v.expects_json for v in report.versions)
    declared = any(v.decoding is not None for v in report.versions)
    summary = pd.DataFrame(
        [
            {
                "version": v.label,
                "run": v.run_id,
                "rows": len(v.rows),
                "passed": v.passed,
                "pass rate": v.pass_rate,
                "mean score": v.mean_score,
                **({"JSON parsed": v.json_parse_rate} if json_column else {}),
                **(
                    {
                        "decoded under": v.decoding,
                        "constraint-valid": v.valid_rate,
                        "cut (length)": v.cut,
                        "mean tokens": v.mean_tokens,
                        "mean latency (s)": v.mean_latency_s,
                    }
                    if declared
                    else {}
                ),
                **{
                    f"{m.metric} (mean · pass)": (
                        f"{m.mean:.2f} · {m.pass_rate:.0%}"
                        if m.mean is not None
                        else f"{m.pass_rate:.0%}"
                    )
                    for m in v.metrics
                },
            }
            for v in report.versions
        ]
    )
    st.dataframe(
        summary,
        hide_index=True,
        width="stretch",
        column_config=ui.share_columns("pass rate", "JSON parsed", "constraint-valid"),
    )
    for line in evaluate.constraint_costs(report):
        st.warning(ui.escape_markdown(line))
    st.plotly_chart(
        charts.rate_chart(
            [v.label for v in report.versions],
            [v.pass_rate for v in report.versions],
            "Rows passing every assertion",
        ),
        key="eval_pass_rate_chart",
    )
    scored = [v.choice_scores for v in report.versions if v.choice_scores is not None]
    if scored:
        show_probabilities(report)
    # p(expected) per row, and calibrated when a version was calibrated.
    p_columns = (
        EXPECTED_COLUMNS[: 1 + any(s.calibrated is not None for s in scored)] if scored else ()
    )
    detail = pd.DataFrame(
        [
            {
                "version": v.label,
                "row": r.row_index + 1,
                **{k: str(val) for k, val in r.variables.items()},
                "output": r.output,
                "passed": r.passed,
                "failed": "; ".join(f"{s.metric}: {s.detail}" for s in r.scores if not s.passed),
                **({"constraint": _follows(r)} if declared else {}),
                **dict(
                    zip(p_columns, evaluate.expected_probabilities(v, r.row_index), strict=False)
                ),
            }
            for v in report.versions
            for r in v.rows
        ]
    )
    st.dataframe(
        detail,
        hide_index=True,
        width="stretch",
        column_config=ui.share_columns(*p_columns),
    )
    st.caption(
        f"Metrics: {ui.escape_markdown(', '.join(metrics))}. Scores are stored with the outputs "
        "(History)."
    )
    cols = st.columns(3)
    for col, (label, fmt, mime) in zip(
        cols,
        [
            ("JSON", ".json", "application/json"),
            ("CSV", ".csv", "text/csv"),
            ("JUnit XML", ".xml", "application/xml"),
        ],
        strict=True,
    ):
        col.download_button(
            f"Download {label}",
            evaluate.render_report(report, fmt),
            file_name=f"evaluation{fmt}",
            mime=mime,
            key=f"eval_download{fmt}",
        )


EXPECTED_COLUMNS = ("p(expected)", "p(expected) calibrated")


def show_probabilities(report: EvalReport) -> None:
    """Scores from the answer choices' probabilities: raw and calibrated, one line each per
    version, and the reliability diagram of both."""
    st.markdown("**Answer-choice probabilities** — how close the model came, not only its pick")
    table = evaluate.probability_table(report)
    if table:
        st.dataframe(
            pd.DataFrame(table, columns=evaluate.PROBABILITY_HEADERS),
            hide_index=True,
            width="stretch",
            column_config={
                **ui.share_columns("accuracy"),
                **{
                    name: st.column_config.NumberColumn(name, format="%.3f")
                    for name in ("log-loss", "brier", "ece")
                },
            },
            key="eval_probabilities",
        )
        st.plotly_chart(
            charts.reliability_chart(
                [
                    (f"{v.ref} · {kind}", scores.bins)
                    for v in report.versions
                    if v.choice_scores is not None
                    for kind, scores in v.choice_scores.by_kind()
                ]
            ),
            key="eval_reliability_chart",
        )
    st.caption(ui.escape_markdown(f"Definitions: {probability_scores.DEFINITIONS}."))
    problems = evaluate.probability_problems(report)
    if problems:
        st.warning(ui.escape_markdown("Left out of these figures:\n\n" + "\n\n".join(problems)))


def show_stability(report: StabilityReport) -> None:
    st.divider()
    st.subheader(f"Stability · {ui.escape_markdown(report.dataset)} · {report.seeds} seeds")
    if report.answer_pattern:
        st.caption(
            "Answers picked out by the pattern " + ui.escape_markdown(report.answer_pattern) + "."
        )
    summary = pd.DataFrame(stability.summary_rows(report))
    percent = ui.share_columns("agreement", "unanimous", "one-sample accuracy", "majority accuracy")
    st.dataframe(summary, hide_index=True, width="stretch", column_config=percent)
    st.plotly_chart(charts.stability_chart(report), key="stability_chart")
    if any(v.majority_accuracy is not None for v in report.versions):
        st.plotly_chart(charts.vote_gain_chart(report), key="vote_gain_chart")
    st.markdown("**Majority answer per row** (share of seeds that gave it)")
    st.dataframe(pd.DataFrame(report.majority_matrix()), hide_index=True, width="stretch")
    detail = pd.DataFrame(
        [
            {
                "version": v.ref,
                "row": r.row_index + 1,
                "majority": r.majority,
                "agreement": r.agreement,
                "answers": " · ".join(f"{g.answer} ×{g.count}" for g in r.groups),
                "no answer": r.unanswered,
            }
            for v in report.versions
            for r in v.rows
        ]
    )
    st.dataframe(detail, hide_index=True, width="stretch", column_config=percent)
    cols = st.columns(2)
    for col, (label, fmt, mime) in zip(
        cols, [("JSON", ".json", "application/json"), ("CSV", ".csv", "text/csv")], strict=True
    ):
        col.download_button(
            f"Download {label}",
            stability.render_report(report, fmt),
            file_name=f"stability{fmt}",
            mime=mime,
            key=f"stability_download{fmt}",
        )


report = st.session_state.get("eval_report")
if isinstance(report, StabilityReport):
    with ui.guard("Showing the stability report"):
        show_stability(report)
elif report is not None:
    with ui.guard("Showing the report"):
        show(report)
