"""Compose: edit a prompt through its technique blocks, see exactly what the model will read,
save it as a version, and compare, label or restore versions."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from workbench import compose, editor
from workbench.app import constrain_panel, links, state, ui
from workbench.backends import Backend
from workbench.techniques import TECHNIQUES
from workbench.templates import MODES, PromptFile, Rendered, parse_prompt

SAVED, NEW = "A saved prompt", "A technique starter"
PICKER = "compose_prompt"
SC_DEFAULT = compose.SelfConsistencyBlock(5, r"The answer is (-?\d+)")


def records(frame: pd.DataFrame) -> list[dict[str, str]]:
    """Rows of an edited table as text (a new row's untouched cells are empty, not NaN)."""
    return [
        {
            str(c): "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v)
            for c, v in row.items()
        }
        for row in frame.to_dict("records")
    ]


def finish(message: str, kind: str = "success", goto: tuple[str, int] | None = None) -> None:
    """End an action: rerun so the pickers show the new state, and say what happened after it.

    `goto` opens the version just saved, in the pickers and in the URL (`?prompt=&v=`, the
    scheme every page reads), so the page stays on it and a reload or a link reopens it."""
    st.session_state["compose_flash"] = (kind, message)
    if goto:
        st.session_state["compose_goto"] = goto
        st.query_params.update(prompt=goto[0], v=str(goto[1]))
    st.rerun()


def show_findings(checked: editor.Checked, box: str) -> None:
    """Problems under the template box, each naming its line in the box; the box's text
    numbered beside them, the lines they name marked."""
    for finding in checked.findings:
        show = {"error": st.error, "warning": st.warning, "info": st.info}[finding.severity]
        show(ui.escape_markdown(finding))
    if any(f.line is not None for f in checked.findings):
        st.caption("The template, numbered: `<--` marks the lines named above.")
        st.code(editor.numbered(box, checked.findings), language=None, line_numbers=True)
    elif box.strip():
        with st.expander("Template with line numbers"):
            st.code(editor.numbered(box, ()), language=None, line_numbers=True)


def show_model_view(rendered: Rendered, choice: state.ModelChoice) -> None:
    backend: Backend = state.backend(choice)
    model_input = backend.model_input(rendered)
    tokens = backend.count_tokens(model_input)
    window = backend.info.context_window
    about = "about " if backend.count_is_estimate(model_input) else ""
    st.caption(  # the name carries the model id a server reported
        ui.escape_markdown(
            f"{about}{tokens} tokens of {backend.info.name}'s {window}-token context window "
            f"({tokens / window:.1%}), after its chat template"
            + (" (an estimate: the server does not count them for us)" if about else "")
        )
    )
    if tokens >= window:
        st.error("The prompt alone fills the context window: there is no room for an answer.")
    ui.show_text(model_input.text)


ui.page(
    "Compose",
    "Build a prompt from technique blocks, see exactly what the model will read, save versions.",
)
lib = ui.load_library()
choice = ui.model_sidebar()

goto = st.session_state.pop("compose_goto", None)
if goto:  # set before the pickers exist, so they open on what was just saved
    st.session_state["compose_source"] = SAVED
    st.session_state[PICKER] = goto[0]
    st.session_state[f"{PICKER}:version:{goto[0]}"] = goto[1]
flash = st.session_state.pop("compose_flash", None)
if flash:
    (st.success if flash[0] == "success" else st.info)(ui.escape_markdown(flash[1]))

source = st.radio("Start from", (SAVED, NEW), key="compose_source", horizontal=True)
info = None
name_problem = False
if source == SAVED:
    info = ui.version_picker(lib, PICKER)
    if info is None:
        st.stop()
    base: PromptFile = info.file
    name = info.prompt
    scope = info.ref
    if info.note:
        st.caption(f"v{info.number} note: " + ui.escape_markdown(info.note))
else:
    technique = st.selectbox(
        "Technique",
        list(TECHNIQUES),
        format_func=lambda t: f"{t} — {TECHNIQUES[t]}",
        key="compose_technique",
    )
    name = (
        st.text_input(
            "Name of the new prompt", key="compose_new_name", placeholder=f"my-{technique}"
        ).strip()
        or f"my-{technique}"
    )
    base = parse_prompt(compose.new_prompt(technique, f"new-{technique}"), technique)
    scope = f"new:{technique}"
    try:
        compose.check_name(name, (p.name for p in lib.list_prompts()))
    except compose.ComposeError as exc:
        st.error(ui.escape_markdown(exc))
        name_problem = True

start = compose.read_draft(base)
k = f"compose:{scope}:"  # widgets of one version: switching versions starts from its content
edit, preview = st.columns([3, 2], gap="large")

with edit:
    description = st.text_input("Description", start.description, key=k + "description")
    known = list(TECHNIQUES) + [t for t in start.techniques if t not in TECHNIQUES]
    techniques = st.multiselect(
        "Techniques", known, default=list(start.techniques), key=k + "techniques"
    )
    mode = st.radio(
        "Mode",
        MODES,
        index=MODES.index(start.mode),
        key=k + "mode",
        horizontal=True,
        help="chat: messages through the model's chat template; completion: raw text it continues",
    )
    body = st.text_area(
        "Template",
        start.body,
        key=k + "body",
        height=260,
        help="Jinja. Lines `system:`, `user:`, `assistant:` start messages; {{ name }} inserts "
        "a variable. Problems name their line in this box (line 1 is its first line).",
    )
    findings_here = st.container()  # filled once the whole draft is checked, below

    examples = None
    if start.examples is not None:
        st.markdown("**Few-shot examples**")
        columns = list(start.examples.columns)
        frame = pd.DataFrame([dict(r) for r in start.examples.rows], columns=columns).fillna("")
        edited = st.data_editor(
            frame.astype(str),
            num_rows="dynamic",
            hide_index=True,
            width="stretch",
            column_config={c: st.column_config.TextColumn(c, width="medium") for c in columns},
            key=k + "examples",
        )
        examples = compose.Examples(start.examples.input, tuple(columns), tuple(records(edited)))

    persona = None
    if st.toggle("Role: a system persona", start.persona is not None, key=k + "persona_on"):
        persona = st.text_area(
            "Persona",
            start.persona or "You are an expert who answers precisely and briefly.",
            key=k + "persona",
            height=90,
        )

    constraints = None
    if start.constraints is not None:
        # an input's name in a file is any YAML key, so it is escaped, not put in `code`
        st.markdown(
            f"**Constraints** ({ui.escape_markdown(start.constraints.input)}, one rule a row)"
        )
        rules = st.data_editor(
            pd.DataFrame({"rule": list(start.constraints.items)}, dtype=str),
            num_rows="dynamic",
            hide_index=True,
            width="stretch",
            column_config={"rule": st.column_config.TextColumn("Rule", width="large")},
            key=k + "constraints",
        )
        constraints = compose.Constraints(
            start.constraints.input, tuple(r["rule"] for r in records(rules))
        )

    schema = None
    if start.schema is not None:
        schema_text = st.text_area(
            "JSON schema",
            start.schema.text,
            key=k + "schema",
            height=220,
            help="Must be a JSON object; it is checked before the prompt can be saved.",
        )
        schema = compose.Schema(schema_text, start.schema.as_object)

    trigger = None
    if st.toggle(
        "Chain-of-thought trigger line",
        start.trigger is not None,
        key=k + "cot",
        help="A {{ trigger }} line at the end of the template that asks for reasoning first.",
    ):
        trigger = st.text_input(
            "Trigger line", start.trigger or compose.DEFAULT_TRIGGER, key=k + "trigger"
        )

    self_consistency = None
    if st.toggle(
        "Self-consistency: sample several answers, keep the majority",
        start.self_consistency is not None,
        key=k + "sc",
    ):
        sc = start.self_consistency or SC_DEFAULT
        samples = st.number_input(
            "Samples",
            min_value=1,
            max_value=64,
            value=max(1, sc.samples),
            step=1,
            key=k + "samples",
        )
        pattern = st.text_input(
            "Answer pattern (a regex; its first group is the answer)",
            sc.answer_pattern,
            key=k + "answer_pattern",
        )
        self_consistency = compose.SelfConsistencyBlock(int(samples), pattern)

    # Classification prompts: the prompt declares choices, or its examples' outputs are labels.
    choices = None
    suggested = compose.suggested_choices(start)
    if st.toggle(
        "Answer choices: score these labels instead of generating",
        start.choices is not None,
        key=k + "choices_on",
        help="Saved as metadata.choices. A run then scores each label's probability after the "
        "prompt and answers the most likely one (local models).",
    ):
        choices = compose.choices_from_text(
            st.text_input(
                "Choices (comma-separated)",
                ", ".join(start.choices or suggested),
                key=k + "choices",
            )
        )
    elif suggested:
        st.caption(
            "Its examples answer with labels ("
            + ui.escape_markdown(", ".join(suggested))
            + "): answer choices would score them instead of generating."
        )

    draft = compose.Draft(
        name=name,
        description=description,
        mode=mode,
        techniques=tuple(techniques),
        body=body,
        examples=examples,
        persona=persona,
        constraints=constraints,
        schema=schema,
        trigger=trigger,
        self_consistency=self_consistency,
        choices=choices,
    )
    names = [n for n in compose.template_variables(body) if n not in draft.block_inputs]
    values: dict[str, Any] = {}
    if names:
        st.markdown("**Sample inputs** (saved as the inputs' defaults)")
        values = ui.variables_form(names, start.values, key=k + "var", warn_missing=False)
    draft = draft.edit(values=values)
    checked = editor.check(base, draft)
    with findings_here:
        show_findings(checked, body)

pf: PromptFile | None = checked.file
with preview:
    st.subheader("Preview")
    rendered: Rendered | None = checked.rendered
    if rendered is None:
        st.caption("Nothing to preview until the problem named under the template is fixed.")
    else:
        ui.show_messages(rendered)
        if pf is not None:  # the output constraint runs will decode under (none: nothing)
            constrain_panel.declared_note(pf)
        st.markdown("**What the model reads**")
        if state.is_loaded(choice) or st.button(
            "Count tokens (loads the model)", key="compose_count"
        ):
            with ui.guard("Counting tokens"):
                show_model_view(rendered, choice)
        else:
            st.caption(
                "The exact text and its token count come from the model's chat template; "
                "counting loads the model once for this server."
            )
    if pf is not None:
        with st.expander("Prompt file"):
            st.code(pf.canonical_text(), language="yaml", line_numbers=True)

st.divider()
st.subheader("Save")
if info is not None and pf is not None:
    unsaved = compose.changes(base, pf)
    if unsaved:
        with st.expander(f"Changes since v{info.number}"):
            st.code(unsaved, language="diff")
    else:
        st.caption(f"No changes since v{info.number}.")
note = st.text_input("Note", key=k + "note", placeholder="what changed and why")
cannot_save = pf is None or name_problem
if st.button("Save version", key="compose_save", type="primary", disabled=cannot_save):
    with ui.guard("Saving"):
        assert pf is not None
        result = lib.save(pf, note)
        number = result.version.number
        if result.created:
            finish(f"Saved as v{number}", goto=(pf.name, number))
        else:
            finish(f"Unchanged — same as v{number}", "info", goto=(pf.name, number))
if info is not None:
    links.compare_previous_button(info.prompt, info.number)

if info is not None:
    st.divider()
    st.subheader("History")
    diff_col, label_col, restore_col = st.columns(3, gap="large")
    others = [v.number for v in reversed(lib.versions(info.prompt)) if v.number != info.number]
    with diff_col:
        if others:
            against = st.selectbox(
                f"Compare v{info.number} with",
                others,
                format_func=lambda n: f"v{n}",
                key=f"compose:{info.ref}:diff_against",
            )
            with ui.guard("Diff"):
                diff = lib.diff(f"{info.prompt}@{against}", info.ref)
                if diff:
                    st.code(diff, language="diff")
                else:
                    st.caption(f"v{against} and v{info.number} have the same content.")
        else:
            st.caption("Only one version so far: nothing to compare.")
    with label_col:
        if info.labels:
            st.caption("Labels on this version: " + ui.escape_markdown(", ".join(info.labels)))
        label = st.text_input("Label", key="compose_label", placeholder="e.g. production")
        if st.button(f"Set label on v{info.number}", key="compose_set_label"):
            with ui.guard("Setting the label"):
                move = lib.set_label(info.ref, label.strip())
                was = f" (was v{move.from_version})" if move.from_version else ""
                finish(f"Label {move.label!r} now points to v{move.to_version}{was}")
    with restore_col:
        latest = max([info.number, *others])
        if info.number == latest:
            st.caption("This is the latest version: pick an earlier one to restore it.")
        elif st.button(f"Restore v{info.number} as a new version", key="compose_restore"):
            with ui.guard("Restoring"):
                result = lib.restore(info.ref)
                number = result.version.number
                if result.created:
                    finish(f"Restored v{info.number} as v{number}", goto=(info.prompt, number))
                else:
                    finish(
                        f"Unchanged — v{number} already has this content",
                        "info",
                        goto=(info.prompt, number),
                    )
