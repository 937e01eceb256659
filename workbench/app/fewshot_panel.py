"""The Improve page's few-shot search: train, dev and test rows in, a search run as a job, the
original's and the winner's dev and test scores side by side, and the winner saved.

The search itself is `workbench.improve` (the same as `workbench improve`); this module only
draws its inputs and its report.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from workbench import improve, jobs, testsets, wording
from workbench.app import state, ui
from workbench.datasets import Dataset, parse_dataset
from workbench.improve import ImproveReport
from workbench.library import Library, VersionInfo

UPLOAD = "(upload a file)"
NONE = "(none)"


def dataset_input(lib: Library, label: str, key: str, *, optional: bool = False) -> Dataset | None:
    """Labelled rows for one split: a stored test set, or a CSV / JSON Lines file."""
    stored = [s.ref for s in testsets.list_test_sets(lib.store)]
    options = ([NONE] if optional else []) + stored + [UPLOAD]
    chosen = st.selectbox(label, options, key=key)
    if chosen == NONE:
        return None
    if chosen == UPLOAD:
        upload = st.file_uploader(
            f"{label}: CSV or JSON Lines", type=["csv", "jsonl", "json"], key=f"{key}:file"
        )
        return parse_dataset(upload.getvalue(), upload.name) if upload is not None else None
    return testsets.get_test_set(lib.store, chosen)


def draw(lib: Library, choice: state.ModelChoice, version: VersionInfo) -> None:
    st.caption(
        "Chooses which labelled train rows go into the prompt as examples (and how it asks: "
        "mode, generated or scored labels) by their dev score; the test rows only score the "
        "original and the winner, so overfitting to dev shows."
    )
    with ui.guard("Reading the rows"):
        left, middle, right = st.columns(3)
        with left:
            train = dataset_input(lib, "Train rows", "improve_train")
        with middle:
            dev = dataset_input(lib, "Dev rows", "improve_dev")
        with right:
            test = dataset_input(lib, "Test rows", "improve_test", optional=True)
    left, middle, right, far = st.columns(4)
    budget = int(
        left.number_input(
            "Budget (trials)", min_value=1, max_value=500, value=improve.DEFAULT_BUDGET,
            key="improve_budget",
        )
    )  # fmt: skip
    strategy = middle.radio(
        "Strategy", ["greedy", "random"], horizontal=True, key="improve_strategy"
    )
    seed = int(right.number_input("Seed", min_value=0, value=0, key="improve_search_seed"))
    instructions = int(
        far.number_input(
            "Instruction rewrites",
            min_value=0,
            max_value=improve.MAX_INSTRUCTIONS,
            value=0,
            key="improve_instructions",
            help="The model writes this many rewrites of the prompt's instruction; each is "
            "tried (they count against the budget). The 135M default writes weak ones.",
        )
    )

    def start() -> jobs.Job:
        """Every refusal here, before the model loads; the search runs in the job."""
        assert train is not None and dev is not None
        ref = version.ref
        improve.check_request(
            lib,
            ref,
            train,
            dev,
            test,
            budget=budget,
            strategy=strategy,
            max_examples=improve.DEFAULT_MAX_EXAMPLES,
            instructions=instructions,
        )
        runner = state.runner(choice)
        st.session_state.pop("improve_search_report", None)

        def work(job: jobs.Job) -> ImproveReport:
            return improve.improve(
                lib,
                runner,
                ref,
                train,
                dev,
                test,
                budget=budget,
                strategy=strategy,
                seed=seed,
                instructions=instructions,
                progress=lambda p: job.report(p.overall()),
                cancel=job.cancel,
            )

        return jobs.start_job(f"few-shot search for {ref} ({budget} trials)", work)

    ui.run_button(
        "Search",
        key="improve_search_run",
        state_key="improve_search_job",
        start=start,
        action="Starting the search",
        disabled=train is None or dev is None,
    )
    ui.watch_job(
        "improve_search_job",
        "improve_search_cancel",
        ui.keep_result("improve_search_report", "search"),
    )
    report: ImproveReport | None = st.session_state.get("improve_search_report")
    if report is not None:
        show(lib, report)


def show(lib: Library, report: ImproveReport) -> None:
    st.divider()
    st.subheader("Search · " + ui.escape_markdown(report.prompt))
    outcomes = [("original", report.original), ("winner", report.winner)]
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "": role,
                    "variant": o.config.describe(),
                    "dev": o.dev.accuracy,
                    "test": o.test.accuracy if o.test is not None else None,
                    "trial": o.ref,
                }
                for role, o in outcomes
            ]
        ),
        hide_index=True,
        width="stretch",
        column_config=ui.share_columns("dev", "test"),
    )
    for change in report.changes():
        st.text("• " + change)
    cached = sum(1 for t in report.trials if t.generated == 0)
    st.caption(
        ui.escape_markdown(
            f"{wording.plural(len(report.trials), 'trial')} ({cached} from the cache), "
            f"{report.wall_s:.0f} s" + (" — stopped" if report.cancelled else "")
        )
    )
    with st.expander("Every trial"):
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "trial": t.number,
                        "phase": t.phase,
                        "variant": t.config.describe(),
                        "dev": t.dev.accuracy,
                        "generated": t.generated,
                    }
                    for t in report.trials
                ]
            ),
            hide_index=True,
            width="stretch",
            column_config=ui.share_columns("dev"),
        )
    if report.improved and st.button(
        "Save the winner as the next version", key="improve_search_save"
    ):
        with ui.guard("Saving the winner"):
            saved = improve.save_winner(lib, report)
            if saved is not None:
                st.success(ui.escape_markdown(f"Saved {saved.version.ref}."))
