"""Improve: what each technique block of a prompt is worth on a labelled dataset (ablation with
bootstrap intervals), or which few-shot examples to give it (a search on dev rows, checked on
test rows) — and saving the best as the prompt's next version."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from workbench import ablation, jobs, scorers, wording
from workbench.ablation import AblationReport
from workbench.app import charts, fewshot_panel, state, ui
from workbench.datasets import Dataset
from workbench.variants import ORIGINAL

ASSERT_HELP = (
    "One per line, as on the Evaluate page (for example `icontains:{{ expected }}`). Empty: the "
    "prompt's own assertions, else exact match with the `expected` column."
)

ui.page(
    "Improve",
    "Try the prompt without each technique block, in the other mode, with fewer examples, with "
    "scored answer choices — and see which differences are more than noise.",
)
lib = ui.load_library()
choice = ui.model_sidebar()
version = ui.version_picker(lib, "improve_version")
if version is None:
    st.stop()

ABLATION, SEARCH = "Technique ablation", "Few-shot search"
method = st.radio(
    "Method",
    [ABLATION, SEARCH],
    horizontal=True,
    key="improve_method",
    help="Ablation: what each technique block is worth. Few-shot search: which labelled "
    "examples to put in the prompt, chosen on dev rows and checked on test rows.",
)
if method == SEARCH:
    fewshot_panel.draw(lib, choice, version)
    st.stop()

assertions_text = st.text_area(
    "Assertions", key="improve_asserts", height=80, help=ASSERT_HELP, placeholder="exact-match"
)
left, right = st.columns(2)
resamples = int(
    left.number_input(
        "Bootstrap resamples", min_value=100, max_value=100000, value=2000, key="improve_resamples"
    )
)
seed = int(right.number_input("Seed", min_value=0, value=0, key="improve_seed"))

dataset: Dataset | None = None
with ui.guard("Reading the rows"):
    dataset, _ = ui.labelled_rows(lib, list(version.file.template_variables()), {}, "improve")
    if dataset is not None:
        st.caption(
            ui.escape_markdown(f"{dataset.name}: {wording.plural(len(dataset.rows), 'row')}")
        )


def start() -> jobs.Job:
    """Check everything here (a missing expected column shows at once); run in the job."""
    assert dataset is not None and version is not None
    rows, ref = dataset, version.ref
    extra = scorers.parse_assertion_lines(assertions_text)
    ablation.check_ablation(lib, ref, rows, extra, resamples=resamples)
    runner = state.runner(choice)
    st.session_state.pop("improve_report", None)

    def work(job: jobs.Job) -> AblationReport:
        return ablation.ablate(
            lib,
            runner,
            ref,
            rows,
            extra,
            resamples=resamples,
            seed=seed,
            progress=lambda label, p: job.report(p),
            cancel=job.cancel,
        )

    return jobs.start_job(f"ablation of {ref} on {wording.plural(len(rows.rows), 'row')}", work)


ui.run_button(
    "Run the ablation",
    key="improve_run",
    state_key="improve_job",
    start=start,
    action="Starting the ablation",
    disabled=dataset is None,
)


ui.watch_job("improve_job", "improve_cancel", ui.keep_result("improve_report", "ablation"))

report: AblationReport | None = st.session_state.get("improve_report")
if report is not None:
    st.divider()
    st.subheader("Variants · " + ui.escape_markdown(report.prompt))
    for note in report.notes:
        st.info(ui.escape_markdown(note))
    table = pd.DataFrame(ablation.table_rows(report), columns=list(ablation.HEADERS))
    # The figures first, the long description of the change after them, so a narrow window
    # still shows every score, interval and difference — and why a variant has none (STATUS).
    shown = ["VARIANT", "SCORE", "95% CI", "DIFF", "DIFF 95% CI", "ROWS", "STATUS", "CHANGE", "RUN"]
    st.dataframe(
        table[shown],
        hide_index=True,
        width="stretch",
        column_config={"CHANGE": st.column_config.TextColumn(width="large")},
    )
    st.caption(
        "DIFF is the variant's score minus the original's on the same rows, with its bootstrap "
        "95% interval; * marks an interval that excludes 0 (unlikely to be noise)."
    )
    st.plotly_chart(charts.ablation_chart(report), key="improve_chart")
    best = report.best()
    if (
        best is not None
        and best.key != ORIGINAL
        and st.button(f"Save “{best.variant.label}” as the next version", key="improve_save_best")
    ):
        with ui.guard("Saving the best variant"):
            saved = ablation.save_best(lib, report)
            st.success(ui.escape_markdown(saved.message))
