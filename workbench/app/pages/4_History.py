"""History: every run and output, newest first; open a run to read it, run it again, resume it
or download it.

The queries live in `workbench.history` (keyset pages, capped counts), so the page stays quick
with 100,000 stored outputs; this file only lays out widgets and calls services.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pandas as pd
import streamlit as st

from workbench import branching, exchange, history, jobs
from workbench.app import links, memory, state, ui
from workbench.history import HistoryFilter, HistoryPage
from workbench.runs import get_run, run_outputs, run_votes
from workbench.wording import latency_text, plural, short_revision

ANY = "(any)"
SHOWN_OUTPUTS = 20  # outputs of an opened run shown in full; the rest are in the table

ui.page(
    "History",
    "Every run and output, newest first. Filter them, open a run, run it again with the "
    "model in the sidebar, resume it, or download it.",
)
lib = ui.load_library()
choice = ui.model_sidebar()
store = lib.store

choices: history.FilterChoices | None = None
with ui.guard("Reading the history"):
    choices = history.filter_choices(store)
if choices is None:
    st.stop()
assert choices is not None


# --- filters ----------------------------------------------------------------------------------
def parse_version(value: str) -> tuple[int | None, str | None]:
    if value.startswith("v"):
        return int(value[1:]), None
    if value.startswith("@"):
        return None, value[1:]
    return None, None


cols = st.columns(4)
prompt = cols[0].selectbox("Prompt", [ANY, *choices.prompts], key="history:prompt")
prompt_name = None if prompt == ANY else prompt
version_options = [ANY]
if prompt_name:
    version_options += [f"v{n}" for n in choices.versions.get(prompt_name, [])]
    version_options += [f"@{label}" for label in choices.labels.get(prompt_name, [])]
else:
    version_options += [f"@{label}" for label in choices.all_labels]
version_value = cols[1].selectbox(
    "Version or label",
    version_options,
    key=f"history:version:{prompt_name}",
    help="A label is looked up now: @production shows the version it points at today.",
)
number, label = parse_version(version_value)
model = cols[2].selectbox("Model", [ANY, *choices.models], key="history:model")
status = cols[3].selectbox("Outputs", history.STATUSES, key="history:status")

search_cols = st.columns([3, 1, 1, 1])
text = search_cols[0].text_input(
    "Search", key="history:text", help="Finds this text (case-insensitive for a–z)."
)
search_in = search_cols[1].selectbox("Search in", history.SEARCH_IN, key="history:search_in")
date_from: date | None = search_cols[2].date_input("From (UTC)", value=None, key="history:from")
date_to: date | None = search_cols[3].date_input("To (UTC)", value=None, key="history:to")

flt = HistoryFilter(
    prompt=prompt_name,
    version=number,
    label=label,
    model=None if model == ANY else model,
    date_from=date_from,
    date_to=date_to,
    text=text,
    search_in=search_in,
    status=status,
)


def pager(name: str, signature: object) -> int | None:
    """The cursor of the page being shown; a new filter starts again at the newest page."""
    if st.session_state.get(f"history:{name}:signature") != signature:
        st.session_state[f"history:{name}:signature"] = signature
        st.session_state[f"history:{name}:cursors"] = [None]
    cursors: list[int | None] = st.session_state[f"history:{name}:cursors"]
    return cursors[-1]


def page_buttons(name: str, page: HistoryPage[Any]) -> None:
    cursors: list[int | None] = st.session_state[f"history:{name}:cursors"]

    def newer() -> None:
        cursors.pop()

    left, middle, right = st.columns([1, 3, 1])
    left.button(
        "← Newer",
        key=f"history:{name}:newer",
        disabled=len(cursors) == 1,
        on_click=newer,
    )
    middle.caption(f"Page {len(cursors)} · {page.total_text} in all")
    right.button(
        "Older →",
        key=f"history:{name}:older",
        disabled=page.next_before_id is None,
        on_click=cursors.append,
        args=(page.next_before_id,),
    )


def short(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value


def show_table(rows: list[dict[str, Any]]) -> None:
    """Rows as a full-width table without pandas' index column."""
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


# --- outputs and runs -------------------------------------------------------------------------
outputs_tab, runs_tab = st.tabs(["Outputs", "Runs"])
runs_page: HistoryPage[history.HistoryRun] | None = None

with outputs_tab, ui.guard("Searching the outputs"):
    page_size = st.selectbox(
        "Rows per page", history.PAGE_SIZES, index=1, key="history:outputs:size"
    )
    before = pager("outputs", (flt, page_size))
    outputs_page = history.search_outputs(store, flt, page_size=page_size, before_id=before)
    if not outputs_page.rows:
        st.info("No outputs match these filters." if before is None else "No older outputs.")
    else:
        forks = branching.branches(lib, [r.id for r in outputs_page.rows])
        show_table(
            [
                {
                    "id": r.id,
                    "run": r.run_id,
                    "created (UTC)": r.created_at,
                    "prompt": r.ref,
                    "model": r.model,
                    "row": r.row_index + 1,
                    "sample": r.sample_index,
                    "variables": short(r.variables),
                    "text": (r.text or "") + ("…" if r.truncated else ""),
                    "finish": r.finish_reason,
                    "tokens": r.completion_tokens,
                    "latency": latency_text(r),
                    "error": r.error,
                    "rating": {1: "👍", -1: "👎"}.get(r.verdict or 0, "")
                    + ("★" * r.stars if r.stars else ""),
                    "branch of": forks[r.id].parent_output_id if r.id in forks else None,
                }
                for r in outputs_page.rows
            ]
        )
    page_buttons("outputs", outputs_page)

with runs_tab, ui.guard("Listing the runs"):
    run_status = st.selectbox("Run status", history.RUN_STATUSES, key="history:runs:status")
    before = pager("runs", (flt, run_status))
    runs_page = history.search_runs(store, flt, status=run_status, before_id=before)
    if not runs_page.rows:
        st.info("No runs match these filters." if before is None else "No older runs.")
    else:
        show_table(
            [
                {
                    "run": r.id,
                    "status": r.status,
                    "created (UTC)": r.created_at,
                    "versions": ", ".join(r.versions),
                    "model": r.model,
                    "done": f"{r.done}/{r.total}",
                    "errors": r.errors,
                    "parameters": short(r.params) if r.params else "",
                    "dataset": r.dataset or "",
                }
                for r in runs_page.rows
            ]
        )
    page_buttons("runs", runs_page)


# --- one run ----------------------------------------------------------------------------------
st.subheader("Open a run")
run_ids = [r.id for r in runs_page.rows] if runs_page else []
pending = st.session_state.pop("history:open_next", ui.url_run("history:open"))
if pending is not None:
    if pending not in run_ids:
        run_ids.insert(0, pending)
    st.session_state["history:open"] = pending
if not run_ids:
    st.info("No run to open: run a prompt on the Playground or Compare page first.")
    st.stop()
if st.session_state.get("history:open") not in run_ids:
    st.session_state.pop("history:open", None)
run_id = st.selectbox("Run", run_ids, key="history:open", format_func=lambda i: f"Run {i}")
memory.show_in_url("history:open", run=run_id)  # a reload or a link reopens this run
for message in st.session_state.pop("history:flash", []):
    st.success(message)

runner = state.runner(choice)  # the model loads only if this run is re-run or resumed


JOB = "history:job"  # the run again / resume job of this session


def show_job(job: jobs.Job) -> None:
    """When the job has ended: its error as one line, or the run it made, opened once."""
    p = job.progress
    if not job.done:
        st.progress(min(1.0, p.done / p.total) if p and p.total else 0.0)
        return
    if job.error:
        st.error(ui.escape_markdown(f"The run stopped: {job.error}"))
    elif job.result is not None and st.session_state.get(f"{JOB}:opened") != job.id:
        st.session_state[f"{JOB}:opened"] = job.id
        new_run_id, message = job.result
        open_run(new_run_id, message)


def job_stopped(job: jobs.Job) -> str:
    p = job.progress
    kept = f"{p.done} of {plural(p.total, 'output')}" if p and p.total else "what was finished"
    return f"Stopped: {kept} kept in run {job.run_id}; resume it to finish."


def open_run(new_run_id: int, message: str) -> None:
    st.session_state["history:open_next"] = new_run_id
    st.session_state["history:flash"] = [message]
    st.session_state["history:runs:cursors"] = [None]  # the new run is on the newest page
    st.rerun()


with ui.guard(f"Opening run {run_id}"):
    record = get_run(runner.store, run_id)
    request = history.rerun_request(store, run_id)
    outputs = run_outputs(runner.store, run_id)

    status_col, done_col, cached_col, errors_col = st.columns(4)
    status_col.metric("Status", record.status)
    done_col.metric("Outputs", f"{record.done}/{record.total}")
    cached_col.metric("From the cache", record.cached)
    errors_col.metric("Errors", record.errors)
    # A model id from a server may hold a backtick, which would end a `code` span early.
    st.markdown(
        "**Model** "
        + ui.escape_markdown(
            f"{record.model} · revision {short_revision(record.revision)} · "
            f"{record.dtype} · started {record.created_at:%Y-%m-%d %H:%M:%S} UTC"
            + (f" · finished {record.finished_at:%H:%M:%S}" if record.finished_at else "")
        ),
        help=ui.escape_markdown(f"Full revision: {record.revision}"),
    )
    st.markdown("**Versions** " + ui.escape_markdown(", ".join(record.versions)))
    if record.versions:
        links.compare_previous_of(record.versions[0], run=run_id)
    st.markdown("**Parameter overrides**" + ("" if record.params else " none"))
    if record.params:
        st.json(record.params)
    if record.error:
        st.error("The run stopped with this error:")
        ui.show_text(record.error)

    with st.expander(f"Input rows ({len(request.rows)})"):
        st.dataframe(
            pd.DataFrame([{k: short(v) for k, v in row.items()} for row in request.rows]),
            width="stretch",
        )
        ui.add_to_test_set(request.rows, "history:testset", f"from run {run_id}")

    if outputs:
        show_table(
            [
                {
                    "prompt": f"{o.prompt}@{o.version}",
                    "row": o.row_index + 1,
                    "sample": o.sample_index,
                    "text": o.text,
                    "finish": o.finish_reason,
                    "tokens": o.completion_tokens,
                    "latency": latency_text(o),
                    "error": o.error,
                }
                for o in outputs
            ]
        )
        forks = branching.branches(lib, [o.id for o in outputs[:SHOWN_OUTPUTS]])
        for o in outputs[:SHOWN_OUTPUTS]:
            fork = forks.get(o.id)
            st.caption(
                ui.escape_markdown(
                    f"{o.prompt}@{o.version} · row {o.row_index + 1}"
                    + (f" · {branching.describe(fork)}" if fork else "")
                    + (f" · sample {o.sample_index + 1}" if record.samples > 1 else "")
                    + (f" · {latency_text(o)}" if o.latency_s is not None else "")
                )
            )
            if o.error:
                st.error(ui.escape_markdown(f"This output failed: {o.error}"))
            else:
                ui.show_text(o.text)
        if len(outputs) > SHOWN_OUTPUTS:
            st.caption(f"{plural(len(outputs) - SHOWN_OUTPUTS, 'more output')} in the table above.")
    else:
        st.info("This run has no outputs yet.")

    votes = run_votes(runner.store, run_id)
    if votes:
        st.markdown("**Self-consistency votes**")
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "prompt": f"{v.prompt}@{v.version}",
                        "row": v.row_index + 1,
                        "answer": v.answer,
                        "agreement": v.agreement,
                        "samples": v.samples,
                        "counts": short(v.counts),
                    }
                    for v in votes
                ]
            ),
            hide_index=True,
        )

    csv_col, jsonl_col = st.columns(2)
    csv_col.download_button(
        "Download CSV",
        exchange.export_outputs(outputs, "csv"),
        file_name=f"run-{run_id}.csv",
        mime="text/csv",
        key="history:download:csv",
        disabled=not outputs,
    )
    jsonl_col.download_button(
        "Download JSON Lines",
        exchange.export_outputs(outputs, "jsonl"),
        file_name=f"run-{run_id}.jsonl",
        mime="application/jsonl",
        key="history:download:jsonl",
        disabled=not outputs,
    )

    st.markdown("**Run it again**")
    st.caption(
        f"Same versions, {plural(len(request.rows), 'row')} and parameter overrides, on "
        f"the model in the sidebar ({ui.escape_markdown(choice.spec)}). A new run is stored; "
        "this one is kept as it is."
    )
    use_cache = st.checkbox(
        "Answer from stored outputs when the request is identical",
        value=request.use_cache,
        key=f"history:rerun:cache:{run_id}",
    )

    def run_again() -> jobs.Job:
        """A new run of the same request, generated in the background (the model loads there)."""
        versions = [lib.get(ref) for ref in request.versions]

        def work(job: jobs.Job) -> tuple[int, str]:
            job.run_id = runner.start(
                versions,
                request.rows,
                overrides=request.overrides,
                samples=request.samples,
                use_cache=use_cache,
            )
            run = runner.execute(job.run_id, progress=job.report, cancel=job.cancel).run
            return run.id, (
                f"Run {run.id} ({run.status}): {run.done}/{plural(run.total, 'output')}, "
                f"{run.cached} from the cache."
            )

        return jobs.start_job(f"run {run_id} again", work)

    ui.run_button("Run again", key="history:rerun", state_key=JOB, start=run_again)

    if record.done < record.total:
        missing = record.total - record.done
        st.markdown("**Resume**")
        st.caption(
            f"{plural(missing, 'output is', 'outputs are')} missing. Resuming generates "
            "only those, with the run's "
            f"own model ({ui.escape_markdown(record.model)}), which must be the one chosen in "
            "the sidebar."
            + (
                " If it is still running somewhere else, wait for it."
                if record.status == "running"
                else ""
            )
        )

        def resume() -> jobs.Job:
            def work(job: jobs.Job) -> tuple[int, str]:
                job.run_id = run_id
                run = runner.resume(run_id, progress=job.report, cancel=job.cancel).run
                return run_id, (
                    f"Run {run_id} resumed ({run.status}): "
                    f"{run.done}/{plural(run.total, 'output')}."
                )

            return jobs.start_job(f"resuming run {run_id}", work)

        ui.run_button(f"Resume run {run_id}", key="history:resume", state_key=JOB, start=resume)
    ui.watch_job(JOB, "history:stop", show_job, stopped=job_stopped)
