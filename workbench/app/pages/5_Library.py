"""Library: every prompt with its versions and labels; move labels, export files, import them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pandas as pd
import streamlit as st

from workbench.app import links, ui
from workbench.errors import ImportRejected
from workbench.exchange import (
    ExportFile,
    ImportReport,
    export_library,
    export_version,
    export_versions,
    import_files,
)
from workbench.library import LabelMove, Library, PromptSummary, VersionInfo
from workbench.wording import plural

# A message that survives the rerun after a change, so it shows next to fresh tables.
OUTCOME_KEY = "library_outcome"


def when(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC"


def prompts_table(prompts: Sequence[PromptSummary]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "name": p.name,
                "technique": p.technique,
                "mode": p.mode,
                "versions": p.versions,
                "latest": f"v{p.latest}",
                "labels": ", ".join(f"{k} → v{v}" for k, v in p.labels.items()),
                "description": p.description,
            }
            for p in prompts
        ],
        columns=["name", "technique", "mode", "versions", "latest", "labels", "description"],
    )


def timeline_table(versions: Sequence[VersionInfo]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "version": f"v{v.number}",
                "created": when(v.created_at),
                "note": v.note,
                "hash": v.content_hash[:12],
                "labels": ", ".join(v.labels),
                "parent": f"v{v.parent}" if v.parent else "",
            }
            for v in reversed(versions)
        ],
        columns=["version", "created", "note", "hash", "labels", "parent"],
    )


def history_table(moves: Sequence[LabelMove]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"when": when(m.at), "label": m.label, "change": m.change} for m in reversed(moves)],
        columns=["when", "label", "change"],
    )


def report_table(report: ImportReport) -> pd.DataFrame:
    rows = [{"version": ref, "result": "new version"} for ref in report.created]
    rows += [{"version": ref, "result": "already present"} for ref in report.unchanged]
    return pd.DataFrame(rows, columns=["version", "result"])


SHOWN_PROBLEMS = 50  # an import refused for 5,000 files lists the first ones and counts the rest


def problems_list(problems: Sequence[tuple[str, str]]) -> str:
    """Problems as a Markdown list, each whole: a table cell cut a long message mid-word at the
    column's width. File names and messages are escaped: they are shown as plain text."""
    lines = [
        "- " + ui.escape_markdown(f"{source}: {problem}").replace("\n", "\n  ")
        for source, problem in problems[:SHOWN_PROBLEMS]
    ]
    if len(problems) > SHOWN_PROBLEMS:
        lines.append(f"- … and {plural(len(problems) - SHOWN_PROBLEMS, 'more problem')}")
    return "\n".join(lines)


def remember(kind: str, payload: Any) -> None:
    """Keep an outcome for the next run and rerun, so every table shows the change."""
    st.session_state[OUTCOME_KEY] = (kind, payload)
    st.rerun()


def show_outcome(kinds: set[str]) -> None:
    if OUTCOME_KEY not in st.session_state or st.session_state[OUTCOME_KEY][0] not in kinds:
        return
    kind, payload = st.session_state.pop(OUTCOME_KEY)
    if kind == "import":
        report: ImportReport = payload
        st.success(ui.escape_markdown(f"Imported: {report.summary()}."))
        st.dataframe(report_table(report), hide_index=True, width="stretch")
        if report.moved:  # an edited export can move `production`: never without a word
            st.warning(
                ui.escape_markdown(
                    f"{plural(len(report.moved), 'label')} moved by this import: "
                    + ", ".join(report.moved)
                )
            )
        if report.labels:
            st.caption("Labels set: " + ui.escape_markdown(", ".join(report.labels)))
        if report.skipped:  # names from inside uploaded zips: plain text, not Markdown
            st.text("Ignored (not .prompty): " + ", ".join(report.skipped))
    else:
        st.success(ui.escape_markdown(payload))


def show_rejection(exc: ImportRejected) -> None:
    files = {source for source, _ in exc.problems}
    st.error(
        f"Import rejected, nothing was written: {plural(len(exc.problems), 'problem')} "
        f"in {plural(len(files), 'file')}. Fix them and upload again."
    )
    st.markdown(problems_list(exc.problems))


def download(export: ExportFile, label: str, key: str) -> None:
    st.download_button(
        label,
        data=export.data,
        file_name=export.filename,
        mime=export.media_type,
        key=key,
        on_click="ignore",
    )


ui.page("Library", "Every prompt, its versions and labels. Move labels, export and import files.")
lib: Library = ui.load_library()

prompts: list[PromptSummary] = []
with ui.guard("Reading the library"):
    prompts = lib.list_prompts()

st.subheader(f"Prompts ({len(prompts)})")
if prompts:
    st.dataframe(prompts_table(prompts), hide_index=True, width="stretch")
else:
    st.info("The library is empty: create a prompt on the Compose page or import files below.")

# --- one prompt: timeline, labels, files ---------------------------------------------------------
if prompts:
    names = [p.name for p in prompts]
    name = ui.prompt_select(names, key="library_prompt")
    with ui.guard(f"Showing {name}"):
        versions = lib.versions(name)
        by_number = {v.number: v for v in versions}
        numbers = [v.number for v in reversed(versions)]
        current_labels = next(p.labels for p in prompts if p.name == name)

        st.subheader(ui.escape_markdown(f"{name}: versions"))
        st.dataframe(timeline_table(versions), hide_index=True, width="stretch")
        links.compare_previous_button(name, numbers[0])

        st.subheader("Labels")
        show_outcome({"label"})
        set_col, remove_col = st.columns(2)
        with set_col:
            target = st.selectbox(
                "Version",
                numbers,
                format_func=lambda n: f"v{n}",
                key=f"library_label_version:{name}",
            )
            label = st.text_input(
                "Label",
                key="library_label_name",
                placeholder="production",
                help="Lowercase letters, digits, '-', '_' or '.'; setting a label that exists "
                "moves it to this version.",
            ).strip()
            if st.button("Set label", key="library_set_label"):
                with ui.guard("Setting the label"):
                    if not label:
                        st.error("Setting the label: type a label name first.")
                    else:
                        move = lib.set_label(f"{name}@{target}", label)
                        remember("label", f"{name}: label {label} {move.change}.")
        with remove_col:
            if current_labels:
                # Keyed by the labels as they are now: after a move or a removal this is a new
                # box with the new choices, not the old one still showing "production (v1)".
                now = ",".join(f"{k}=v{v}" for k, v in sorted(current_labels.items()))
                to_remove = st.selectbox(
                    "Label to remove",
                    list(current_labels),
                    format_func=lambda k: f"{k} (v{current_labels[k]})",
                    key=f"library_remove_label:{name}:{now}",
                )
                if st.button("Remove label", key="library_remove"):
                    with ui.guard("Removing the label"):
                        move = lib.remove_label(name, to_remove)
                        remember("label", f"{name}: label {to_remove} {move.change}.")
            else:
                st.caption(ui.escape_markdown(f"{name} has no labels."))

        moves = lib.label_history(name)
        st.markdown("**Label history**")
        if moves:
            st.dataframe(history_table(moves), hide_index=True, width="stretch")
        else:
            st.caption("No label has been set on this prompt yet.")

        st.subheader("Prompt file")
        shown = st.selectbox(
            "Version to show",
            numbers,
            format_func=lambda n: (
                f"v{n}" + (f" ({', '.join(by_number[n].labels)})" if by_number[n].labels else "")
            ),
            key=f"library_file_version:{name}",
        )
        version = by_number[shown]
        st.code(version.export_text(), language="yaml")
        download(
            export_version(lib, version.ref),
            f"Download v{version.number} (.prompty)",
            key="library_download_version",
        )

# --- export a selection ----------------------------------------------------------------------
st.subheader("Export")
with ui.guard("Preparing the export"):
    every_version = lib.all_versions()
    chosen_prompts = st.multiselect(
        "Whole prompts (every version)", [p.name for p in prompts], key="library_export_prompts"
    )
    chosen_refs = st.multiselect(
        "Single versions", [v.ref for v in every_version], key="library_export_versions"
    )
    if chosen_prompts or chosen_refs:
        wanted = set(chosen_prompts)
        refs = [v.ref for v in every_version if v.prompt in wanted or v.ref in chosen_refs]
        download(
            export_versions(lib, refs),
            f"Download {plural(len(refs), 'version')} (.zip)",
            key="library_download_zip",
        )
    elif prompts:
        download(
            export_library(lib),
            f"Download the whole library: {plural(len(every_version), 'version')} (.zip)",
            key="library_download_zip",
        )

# --- import ------------------------------------------------------------------------------------
st.subheader("Import")
st.caption(
    "Upload .prompty files or zips of them. Every file is checked first: if one is wrong, "
    "nothing is imported. Content already in the library is recognised and not duplicated."
)
show_outcome({"import"})
uploads = st.file_uploader(
    "Prompt files", type=["prompty", "zip"], accept_multiple_files=True, key="library_upload"
)
if st.button("Import", key="library_import", disabled=not uploads):
    with ui.guard("Importing"):
        try:
            report = import_files(lib, [(f.name, f.getvalue()) for f in uploads or []])
        except ImportRejected as exc:
            show_rejection(exc)
        else:
            remember("import", report)
