"""The "Constrain the output" switch and what an answer was decoded under, for the pages that
run prompts (Playground, Compare) and the one that writes them (Compose).

A prompt declares at most one output constraint (see workbench.constraints); a local model
decodes under it by default. The switch is drawn only when the prompt declares one, and gives
the run's `constrain` override exactly as the CLI's `--constrain`/`--no-constrain` does. What an
answer was decoded under, and whether it follows the constraint (`constraints.violation`: an
answer cut at max_new_tokens is incomplete, never valid), is said in plain text: the reason can
quote the model's answer, so it goes through `ui.escape_markdown`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st

from workbench import compare
from workbench.app import ui
from workbench.backends import is_remote_spec
from workbench.compare import CONSTRAIN, AnswerCheck
from workbench.constraints import Constraint
from workbench.errors import WorkbenchError
from workbench.library import VersionInfo
from workbench.runs import OutputRecord
from workbench.templates import PromptFile

SWITCH = "Constrain the output"
SWITCH_HELP = (
    "On: a grammar engine masks every token that would leave the declared constraint, so the "
    "answer follows it by construction (unless it runs out of max_new_tokens: then it is "
    "incomplete). Off: the model decodes free, as `workbench run --no-constrain`; its answers "
    "are still checked against the constraint."
)
SERVER_HELP = (
    "On: the constraint is sent to the server with each request, in the forms servers read, "
    "and every answer is checked against it: one that does not follow it is stored with the "
    "reason as its error. Off: the server decodes free, as `workbench run --no-constrain`."
)


def declared(
    version: VersionInfo | PromptFile, values: Mapping[str, Any]
) -> Constraint | str | None:
    """The constraint declared for a row of `values`, the one-line reason it cannot be used,
    or None when the prompt declares none."""
    try:
        return compare.declared_constraint(version, values)
    except WorkbenchError as exc:
        return str(exc)


def switch(
    version: VersionInfo, values: Mapping[str, Any], model_spec: str, key: str
) -> dict[str, bool]:
    """The switch for `version` (its constraint for a row of `values` over the defaults), and
    the override it gives: `{"constrain": True|False}`, or nothing when the prompt declares no
    constraint (nothing is drawn). On a server (`model_spec`) the constraint is sent with each
    request and every answer checked against it (the help says so)."""
    found = declared(version, values)
    if found is None:
        return {}
    what = compare.describe(found) if isinstance(found, Constraint) else "an output constraint"
    on = st.toggle(
        ui.escape_markdown(f"{SWITCH}: {what}"),
        value=True,
        key=key,
        help=SERVER_HELP if is_remote_spec(model_spec) else SWITCH_HELP,
    )
    if isinstance(found, str):
        st.warning(
            ui.escape_markdown(
                f"The declared output constraint cannot be decoded under: {found}. Turn "
                f"“{SWITCH}” off to run free."
            )
        )
    return {CONSTRAIN: on}


def declared_note(file: PromptFile) -> None:
    """For a draft (Compose, which runs nothing): the constraint its answers will decode
    under, or why that constraint cannot be used; nothing when it declares none."""
    found = declared(file, {})
    if isinstance(found, str):
        st.error(ui.escape_markdown(f"Output constraint: {found}"))
    elif found is not None:
        st.caption(
            ui.escape_markdown(
                f"Output constraint: {compare.describe(found)}. Runs decode under it by default "
                f"(“{SWITCH}” in the Playground and Compare, `--no-constrain` on the command "
                "line to run free)."
            )
        )


def decoded_text(output: OutputRecord) -> str:
    """What an answer was decoded under, for its caption: `under JSON Schema from input
    schema`, or `free`."""
    stored = output.params.get("constraint")
    if not stored:
        return "free"
    try:
        return f"under {compare.describe(Constraint.from_dict(stored))}"
    except WorkbenchError:
        return "under an unknown constraint"


def show_check(check: AnswerCheck | None) -> None:
    """Under an answer: a caption when it follows its constraint, a warning (plain text) when
    it does not — a cut answer as incomplete, never as valid."""
    if check is None:
        return
    if check.problem is None:
        st.caption(ui.escape_markdown(check.line))
    else:
        st.warning(ui.escape_markdown(check.line))
