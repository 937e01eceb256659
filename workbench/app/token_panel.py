"""The Playground's token view and its "continue from here with this token" form.

Drawn under an answer (a fresh one or a stored one reopened from the address): the answer's
tokens shaded by probability (see token_html), a table of the same steps, and a form that
branches the answer at a chosen token in a background job (see workbench.branching). A branch
is shown beside its parent, with links from each to the other.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from workbench import branching, jobs, token_view
from workbench.app import state, ui
from workbench.app.token_html import token_html
from workbench.errors import NotFoundError, WorkbenchError
from workbench.library import Library
from workbench.runs import OutputRecord, token_logprobs
from workbench.token_view import TokenStep, visible
from workbench.wording import probability

BRANCH_JOB = "play_branch_job"
PAGE = "pages/2_Playground.py"
TYPED = -1  # the radio's choice "a token I type"
SHOWN_BRANCHES = 5  # links to the newest branches of an output


def steps_of(lib: Library, output: OutputRecord, choice: state.ModelChoice) -> list[TokenStep]:
    """The output's token steps, or [] with a caption saying why there are none."""
    record = token_logprobs(lib.store, [output.id]).get(output.id)
    if record is None:
        st.caption("No token probabilities are stored with this output.")
        return []
    pieces = token_view.stored_pieces(record)
    if pieces is None:
        if output.backend != "transformers":
            st.caption("The server gave no token texts with its probabilities.")
            return []
        try:
            backend = state.backend(choice)
            info = backend.info
        except WorkbenchError as exc:  # a server that does not answer, a model that is gone
            st.caption(ui.escape_markdown(f"No token view: {exc}"))
            return []
        if (info.name, info.revision) != (output.model, output.revision):
            st.caption(
                ui.escape_markdown(
                    f"The token view decodes with the model that wrote this output "
                    f"({output.model}); choose it in the sidebar to see it."
                )
            )
            return []
        try:
            pieces = token_view.decoded_pieces(record, backend)
        except WorkbenchError as exc:
            st.caption(ui.escape_markdown(f"No token view: {exc}"))
            return []
    steps = token_view.token_steps(record, pieces)
    st.caption(ui.escape_markdown("Token probabilities: " + token_view.distribution_text(record)))
    return steps


def show_tokens(
    lib: Library,
    output: OutputRecord,
    choice: state.ModelChoice,
    *,
    branch_form: bool = True,
    table: bool = True,
) -> None:
    """The token view of one output, the links to its parent or branches, and the form."""
    fork = show_relatives(lib, output)
    steps = steps_of(lib, output, choice)
    if not steps:
        return
    st.html(token_html(steps, forced=fork.point.position if fork else None))
    if table:
        with st.expander("Token table"):
            st.dataframe(steps_frame(steps), hide_index=True, width="stretch")
    if branch_form and output.backend != "transformers":
        st.caption(
            "Continuing from a token needs a local model's token ids; a server names its tokens "
            "by their text only."
        )
    elif branch_form:
        with st.expander("Continue from here with this token"):
            branch_form_for(lib, output, steps, choice)


def show_row_tokens(lib: Library, outputs: list[OutputRecord], choice: state.ModelChoice) -> None:
    """The token view of one row of a dataset run, picked from a list (no branch form: a
    branch is made from an answer shown on its own; the run's tables stay the only ones)."""
    done = [o for o in outputs if o.error is None and o.text is not None]
    if not done:
        return
    with st.expander("Token view of one row"):
        picked = st.selectbox(
            "Row",
            range(len(done)),
            format_func=lambda i: (
                f"row {done[i].row_index + 1}"
                + (f", sample {done[i].sample_index + 1}" if done[i].sample_index else "")
            ),
            key="play_row_tokens",
        )
        ui.show_text(done[picked].text)
        show_tokens(lib, done[picked], choice, branch_form=False, table=False)


def steps_frame(steps: list[TokenStep]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "position": s.position,
                "token": visible(s.text),
                "id": s.token_id,
                "probability": probability(s.prob),
                "alternatives": "  ".join(
                    f"{visible(a.text)} {probability(a.prob)}" for a in s.alternatives
                ),
            }
            for s in steps
        ]
    )


def branch_form_for(
    lib: Library, output: OutputRecord, steps: list[TokenStep], choice: state.ModelChoice
) -> None:
    st.caption(
        "A new stored output: this answer's tokens up to the position, then the token chosen, "
        "then the model's continuation with the same parameters and seed."
    )
    position = st.selectbox(
        "Position",
        [s.position for s in steps],
        format_func=lambda p: f"{p}: {visible(steps[p].text)!r} ({probability(steps[p].prob)})",
        key=f"play_branch_pos:{output.id}",
    )
    step = steps[position]
    options = [a.token_id for a in step.alternatives if a.token_id != step.token_id] + [TYPED]
    texts = {a.token_id: a for a in step.alternatives}
    token = st.radio(
        "Token to put there",
        options,
        format_func=lambda t: (  # a radio's options are Markdown: the model's text escaped
            "Type a token…"
            if t == TYPED
            else ui.escape_markdown(
                f"{visible(texts[t].text)!r} ({probability(texts[t].prob)}, id {t})"
            )
        ),
        key=f"play_branch_token:{output.id}",
    )
    typed = ""
    if token == TYPED:
        typed = st.text_input(
            "Token text (exactly one token)", key=f"play_branch_typed:{output.id}"
        )
    chosen: int | str = typed if token == TYPED else int(token)

    def start() -> jobs.Job:
        if chosen == "":
            raise WorkbenchError("type the token to continue with")

        def work(job: jobs.Job) -> OutputRecord:
            return branching.branch_output(
                lib, state.backend(choice), output.id, position, chosen, cancel=job.cancel
            )

        return jobs.start_job(f"branch of output {output.id} at token {position}", work)

    ui.run_button(
        "Continue from here with this token",
        key=f"play_branch_run:{output.id}",
        state_key=BRANCH_JOB,
        start=start,
        action="Branching",
        in_fragment=True,  # drawn in the answer's view, which `watch_job` draws in a fragment
    )


def show_relatives(lib: Library, output: OutputRecord) -> branching.Branch | None:
    """Where this output came from (a branch: its parent, the token forced) and its newest
    branches, as links; returns the branch point when it is a branch."""
    found = branching.branches(lib, [output.id]).get(output.id)
    kids = branching.children(lib, output.id)
    runs = branching.output_runs(lib, [*kids, *([found.parent_output_id] if found else [])])
    if found is not None:
        point = found.point
        kept = f"its first {point.position} tokens, then " if point.position else ""
        st.info(
            ui.escape_markdown(
                f"A branch of output {found.parent_output_id}: {kept}{visible(point.token)!r} "
                f"(id {point.token_id}) chosen at token {point.position}, then the model's "
                "continuation with the same parameters and seed."
            )
        )
        link(f"Open the parent, output {found.parent_output_id}", runs[found.parent_output_id])
    if kids:
        st.caption(f"Branches made from this output: {len(kids)}")
    for kid in kids[-SHOWN_BRANCHES:]:
        link(f"Open branch output {kid}", runs[kid])
    return found


def link(label: str, run_id: int) -> None:
    """A link that reopens a stored run on this page (the address names the run)."""
    try:
        st.page_link(PAGE, label=label, query_params={"run": str(run_id)})
    except StreamlitAPIException:  # a page run on its own (as a test runs it) has no pages
        st.markdown(f"[{ui.escape_markdown(label)}](?{urlencode({'run': run_id})})")


def show_branch(lib: Library, job: jobs.Job, choice: state.ModelChoice) -> None:
    """The branch job: while it works a line; then the branch beside its parent, or why not."""
    if not job.done:
        st.caption("Generating the branch…")
        return
    if job.error:
        st.error(ui.escape_markdown(f"No branch: {job.error}"))
        return
    branch: OutputRecord | None = job.result
    if branch is None:
        return
    parent_id = branching.branches(lib, [branch.id])[branch.id].parent_output_id
    try:
        parent: OutputRecord | None = branching.get_output(lib, parent_id)
    except NotFoundError:
        parent = None
    left, right = st.columns(2)
    with left:
        st.markdown(f"**Parent: output {parent_id}**")
        if parent is not None:
            ui.show_text(parent.text)
            show_tokens(lib, parent, choice, branch_form=False)
    with right:
        st.markdown(f"**Branch: output {branch.id}**")
        ui.show_text(branch.text)
        show_tokens(lib, branch, choice, branch_form=False)
