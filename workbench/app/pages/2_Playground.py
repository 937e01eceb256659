"""Playground: run a prompt version on the local model, one input streamed or a whole dataset."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from workbench import jobs, wording
from workbench.app import state, ui
from workbench.datasets import Dataset
from workbench.exchange import export_outputs
from workbench.library import VersionInfo
from workbench.runner import Runner, RunSummary
from workbench.runs import OutputRecord

ui.page("Playground", "Run a prompt version on the model on this machine: one input, or a dataset.")
lib = ui.load_library()
choice = ui.model_sidebar()
version = ui.version_picker(lib, "play_prompt", default=st.session_state.get("compose_prompt"))
if version is None:
    st.stop()
    raise SystemExit  # unreachable: st.stop raises; tells the type checker version is set
overrides = ui.params_sidebar(version.file.options, version.ref)
if overrides:
    st.sidebar.caption("Changed from the prompt's options: " + ", ".join(sorted(overrides)))

variables = list(version.file.template_variables())
defaults = {n: spec.default for n, spec in version.file.inputs.items() if spec.has_default}


def show_output(output: OutputRecord, cached: bool) -> None:
    ui.show_text(output.text)
    tokens = output.completion_tokens or 0
    cols = st.columns(5)
    cols[0].metric("Tokens", f"{output.prompt_tokens} → {tokens}")
    cols[1].metric("Tokens/s", wording.tokens_per_s_text(output))  # none for a cached answer
    cols[2].metric("First token", f"{output.ttft_s:.2f} s" if output.ttft_s is not None else "–")
    cols[3].metric("Finish", output.finish_reason or "–")
    cols[4].metric("Latency", wording.latency_text(output))
    st.caption(  # the model may carry an id a server reported
        ui.escape_markdown(
            f"Run {output.run_id} · {output.model} · seed {output.seed}"
            + (" · answered from the cache (same request seen before)" if cached else "")
        )
    )
    with st.expander("Exact model input"):
        ui.show_text(output.model_input)
    with st.expander("Add this input to a test set"):
        ui.add_to_test_set(
            [output.variables],
            f"play_testset:{output.id}",
            f"from the Playground, output {output.id}",
            expected=output.text or "",
        )


single_tab, dataset_tab = st.tabs(["One input", "Dataset"])

with single_tab:
    values = ui.variables_form(variables, defaults, key=f"play_var:{version.ref}")
    use_cache = st.checkbox(
        "Reuse a stored answer for an identical request",
        value=True,
        key="play_use_cache",
        help="Same model, revision, exact input, parameters and seed: answered at once.",
    )
    last_key = f"play_last:{version.ref}"
    if st.button("Run", type="primary", key="play_run"):
        with ui.guard("Running"):
            streamed = state.runner(choice).stream(
                version, values, overrides=overrides, use_cache=use_cache
            )
            box, answer = st.empty(), ""
            for piece in streamed:  # drawn as a code block, like the finished answer
                answer += piece
                box.code(answer, language=None, wrap_lines=True)
            box.empty()
            if streamed.output is not None:
                st.session_state[last_key] = (streamed.output, streamed.cached)
    if last_key in st.session_state:
        show_output(*st.session_state[last_key])


def start_dataset_job(runner: Runner, version: VersionInfo, rows: Dataset) -> jobs.Job:
    """Check and record the run here (so mistakes show at once), generate in the background."""
    run_id = runner.start([version], rows, overrides=overrides)

    def work(job: jobs.Job) -> RunSummary:
        return runner.execute(
            run_id, progress=job.report, cancel=job.cancel, on_output=job.add_output
        )

    return jobs.start_job(f"run {run_id}: {version.ref} over {len(rows.rows)} rows", work)


def outputs_frame(outputs: list[OutputRecord]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "row": o.row_index + 1,
                **{k: str(v) for k, v in o.variables.items() if k in variables},
                "output": o.text,
                "tokens": o.completion_tokens,
                "latency": wording.latency_text(o),  # cached and batched rows say so
                "finish": o.finish_reason,
            }
            for o in sorted(outputs, key=lambda o: (o.row_index, o.sample_index))
        ]
    )


def show_job(job: jobs.Job) -> None:
    progress = job.progress
    done, total = (progress.done, progress.total) if progress else (0, 0)
    text = f"{done}/{total} rows" if total else "Starting…"
    if progress and progress.tokens_per_s:
        text += f" · {progress.tokens_per_s:.1f} tokens/s"
    if progress and progress.eta_s is not None and not job.done:
        text += f" · about {progress.eta_s:.0f} s left"
    st.progress(done / total if total else 0.0, text=text)
    outputs = job.outputs_so_far()
    if outputs:
        st.dataframe(outputs_frame(outputs), hide_index=True, width="stretch")
    if not job.done:
        return
    summary: RunSummary | None = job.result
    if job.error:
        st.error(
            ui.escape_markdown(f"The run stopped: {job.error}. Rows already finished are stored.")
        )
    elif summary is not None and summary.run.status == "cancelled":
        st.warning(
            f"Cancelled after {summary.run.done} of {summary.run.total} rows. Finished rows are "
            f"stored; resume run {summary.run.id} from History to finish it."
        )
    elif summary is not None:
        st.success(
            f"Run {summary.run.id}: {summary.run.total} rows in {summary.wall_s:.1f} s "
            f"({summary.run.cached} from the cache, {summary.tokens_per_s:.1f} tokens/s)."
        )
    if summary is not None and summary.votes:
        st.markdown("**Self-consistency votes** (majority answer per row)")
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "row": v.row_index + 1,
                        "answer": v.answer,
                        "agreement": v.agreement,
                        "samples": v.samples,
                        "counts": ", ".join(f"{a}: {n}" for a, n in v.counts.items()),
                    }
                    for v in summary.votes
                ]
            ),
            hide_index=True,
            width="stretch",
        )
    if summary is not None and summary.outputs:
        left, right = st.columns(2)
        left.download_button(
            "Download CSV",
            export_outputs(summary.outputs, "csv"),
            file_name=f"run-{summary.run.id}.csv",
            mime="text/csv",
            key="play_download_csv",
        )
        right.download_button(
            "Download JSON Lines",
            export_outputs(summary.outputs, "jsonl"),
            file_name=f"run-{summary.run.id}.jsonl",
            mime="application/jsonl",
            key="play_download_jsonl",
        )


with dataset_tab, ui.guard("Reading the rows"):
    dataset = ui.rows_input(variables, defaults, key=f"play_ds:{version.ref}")
    if dataset is not None:
        dataset = ui.map_columns(
            dataset, ui.text_variables(variables, defaults), key=f"play_ds:{version.ref}"
        )
        st.caption(ui.escape_markdown(f"{len(dataset.rows)} rows from {dataset.name}"))
        job_key = f"play_job:{version.ref}"
        running = jobs.get_job(st.session_state.get(job_key))
        busy = running is not None and not running.done
        if st.button("Run dataset", type="primary", key="play_run_dataset", disabled=busy):
            with ui.guard("Starting the run"):
                runner = Runner(lib, state.backend(choice))  # loaded here, not in the job
                st.session_state[job_key] = start_dataset_job(runner, version, dataset).id
        ui.watch_job(job_key, "play_cancel", show_job)
