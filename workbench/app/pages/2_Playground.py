"""Playground: run a prompt version on the local model, one input streamed or a whole dataset."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from workbench import compare, jobs, wording
from workbench.app import constrain_panel, memory, state, token_panel, ui
from workbench.compare import AnswerCheck
from workbench.datasets import Dataset, check_columns
from workbench.errors import NotFoundError
from workbench.exchange import export_outputs
from workbench.library import VersionInfo
from workbench.params import GenerationParams
from workbench.runner import Runner, RunSummary, required_variables
from workbench.runs import OutputRecord, get_run, run_outputs

ui.page("Playground", "Run a prompt version on the model on this machine: one input, or a dataset.")
lib = ui.load_library()
choice = ui.model_sidebar()
version = ui.version_picker(lib, "play_prompt")
if version is None:
    st.stop()
    raise SystemExit  # unreachable: st.stop raises; tells the type checker version is set
picked: VersionInfo = version  # set, also inside the functions below
overrides = ui.params_sidebar(version.file.options, version.ref)
if overrides:
    st.sidebar.caption("Changed from the prompt's options: " + ", ".join(sorted(overrides)))

variables = list(version.file.template_variables())
defaults = {n: spec.default for n, spec in version.file.inputs.items() if spec.has_default}
# Shown only when the prompt declares an output constraint: `constrain` as the CLI passes it.
overrides = {
    **overrides,
    **constrain_panel.switch(version, defaults, choice.spec, f"play_constrain:{version.ref}"),
}


def show_output(output: OutputRecord, cached: bool) -> None:
    ui.show_text(output.text)
    # under what it was decoded, and whether it follows it (cut: incomplete, never valid)
    constrain_panel.show_check(compare.check_answers(lib, [output]).get(output.id))
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
    token_panel.show_tokens(lib, output, choice)
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

SINGLE_JOB, DATASET_JOB = "play_single_job", "play_dataset_job"
OPENED = "play_opened_run"  # a stored run named in the address, shown when no job is


def open_from_address() -> None:
    """`?run=42`: watch that run's job if it still works in this server (a reload during a
    run), else show its stored outputs."""
    asked = memory.requested(OPENED, "run")
    if asked is None or asked["run"] is None:
        return
    value = asked["run"]
    job = jobs.find_run_job(int(value)) if value.isdigit() else None
    if job is not None:
        st.session_state[SINGLE_JOB if job.kind == "answer" else DATASET_JOB] = job.id
        st.session_state.pop(OPENED, None)
        return
    try:
        st.session_state[OPENED] = get_run(lib.store, int(value)).id if value.isdigit() else 0
    except NotFoundError:
        st.session_state[OPENED] = 0
    if not st.session_state[OPENED]:
        st.session_state.pop(OPENED)
        st.warning(ui.escape_markdown(f"The address names run {value!r}, which is not stored."))


def address_follows_the_newest_run() -> None:
    """Put the newest run this page started in the address, so a reload or a link reopens it."""
    started = [
        j for j in (jobs.get_job(st.session_state.get(k)) for k in (SINGLE_JOB, DATASET_JOB))
    ]
    newest = max((j for j in started if j and j.run_id), key=lambda j: j.started_at, default=None)
    if newest is not None and newest.run_id is not None:
        if st.session_state.get(OPENED) not in (None, newest.run_id):
            st.session_state.pop(OPENED)
        memory.show_in_url(OPENED, run=newest.run_id)


def opened_outputs(single: bool) -> list[OutputRecord]:
    """The outputs of the run opened from the address, for the tab that shows its kind."""
    run_id = st.session_state.get(OPENED)
    if run_id is None:
        return []
    outputs = run_outputs(lib.store, run_id)
    return outputs if (len(outputs) == 1) == single else []


open_from_address()
address_follows_the_newest_run()


def start_answer() -> jobs.Job:
    """Check the request here (a template or parameter mistake shows at once), then answer in
    the background: the model loads inside the job."""
    picked.file.render(values)
    GenerationParams.build(picked.file.options, overrides)
    st.session_state.pop(token_panel.BRANCH_JOB, None)  # a branch of the previous answer
    return jobs.stream_answer(
        state.runner(choice), picked, values, overrides=overrides, use_cache=use_cache
    )


def show_answer(job: jobs.Job) -> None:
    if not job.done:
        ui.show_text(job.text, empty="(waiting for the first words…)")
        return
    answer: jobs.Answer | None = job.result
    if job.error:
        st.error(ui.escape_markdown(f"The run stopped: {job.error}"))
    if answer is not None and answer.output is not None:
        show_output(answer.output, answer.cached)
    if answer is not None and answer.notice:
        st.info(ui.escape_markdown(answer.notice))


def answer_stopped(job: jobs.Job) -> str:
    kept = len(job.text.split())
    return f"Stopped: the answer so far ({kept} words) was kept in run {job.run_id}."


with single_tab:
    values = ui.variables_form(variables, defaults, key=f"play_var:{version.ref}")
    use_cache = st.checkbox(
        "Reuse a stored answer for an identical request",
        value=True,
        key="play_use_cache",
        help="Same model, revision, exact input, parameters and seed: answered at once.",
    )
    ui.run_button("Run", key="play_run", state_key=SINGLE_JOB, start=start_answer, action="Running")
    ui.watch_job(SINGLE_JOB, "play_stop", show_answer, stopped=answer_stopped)
    if jobs.get_job(st.session_state.get(SINGLE_JOB)) is None:
        for opened in opened_outputs(single=True):
            show_output(opened, opened.cached)
    ui.watch_job(
        token_panel.BRANCH_JOB,
        "play_branch_stop",
        lambda job: token_panel.show_branch(lib, job, choice),
    )


def start_dataset_job(runner: Runner, version: VersionInfo, rows: Dataset) -> jobs.Job:
    """Check the rows here (a missing column shows at once); record the run and generate in the
    background, where the model loads, so the running state shows at once."""
    check_columns(rows, {version.ref: required_variables(version)}, {version.ref: variables})
    GenerationParams.build(version.file.options, overrides)
    if rows.rows:  # the other rows render in the job; a mistake there stops it with its row
        version.file.render(rows.rows[0])

    def work(job: jobs.Job) -> RunSummary:
        run_id = runner.start([version], rows, overrides=overrides)
        job.run_id = run_id
        return runner.execute(
            run_id, progress=job.report, cancel=job.cancel, on_output=job.add_output
        )

    return jobs.start_job(f"{version.ref} over {wording.plural(len(rows.rows), 'row')}", work)


def dataset_stopped(job: jobs.Job) -> str:
    summary: RunSummary | None = job.result
    if summary is None:
        return "Stopped before the first row."
    return (
        f"Stopped: {summary.run.done} of {wording.plural(summary.run.total, 'row')} kept. "
        f"Resume run "
        f"{summary.run.id} from History to finish it."
    )


def outputs_frame(
    outputs: list[OutputRecord], checks: dict[int, AnswerCheck] | None = None
) -> pd.DataFrame:
    """The rows' answers; with `checks` (a finished run whose prompt declares an output
    constraint), what each was decoded under and whether it follows it."""
    return pd.DataFrame(
        [
            {
                "row": o.row_index + 1,
                **{k: str(v) for k, v in o.variables.items() if k in variables},
                "output": o.text,
                "tokens": o.completion_tokens,
                "latency": wording.latency_text(o),  # cached and batched rows say so
                "finish": o.finish_reason,
                **({"constraint": checks[o.id].line if o.id in checks else ""} if checks else {}),
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
    if outputs:  # checked against the constraint once finished, not on every redraw
        checks = compare.check_answers(lib, outputs) if job.done else None
        st.dataframe(outputs_frame(outputs, checks), hide_index=True, width="stretch")
    if not job.done:
        return
    summary: RunSummary | None = job.result
    if job.error:
        st.error(
            ui.escape_markdown(f"The run stopped: {job.error}. Rows already finished are stored.")
        )
    elif summary is not None and summary.run.status != "cancelled":
        st.success(
            f"Run {summary.run.id}: {summary.run.total} rows in {summary.wall_s:.1f} s "
            f"({summary.run.cached} from the cache, {summary.tokens_per_s:.1f} tokens/s)."
        )
    for notice in summary.notices if summary is not None else ():
        st.info(ui.escape_markdown(notice))  # once per run: a server without logprobs
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
        token_panel.show_row_tokens(lib, summary.outputs, choice)
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
        n = len(dataset.rows)
        st.caption(ui.escape_markdown(f"{wording.plural(n, 'row')} from {dataset.name}"))
        rows = dataset
        ui.run_button(
            "Run dataset",
            key="play_run_dataset",
            state_key=DATASET_JOB,
            start=lambda: start_dataset_job(state.runner(choice), picked, rows),
        )
    ui.watch_job(DATASET_JOB, "play_cancel", show_job, stopped=dataset_stopped)
    if jobs.get_job(st.session_state.get(DATASET_JOB)) is None:
        outputs = opened_outputs(single=False)
        if outputs:
            st.caption(f"Run {outputs[0].run_id}, opened from the address")
            checks = compare.check_answers(lib, outputs)
            st.dataframe(outputs_frame(outputs, checks), hide_index=True, width="stretch")
            token_panel.show_row_tokens(lib, outputs, choice)
