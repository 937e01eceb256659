"""Home: the prompt library, and a preview of any version rendered with its sample inputs."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from workbench.app import ui
from workbench.errors import WorkbenchError
from workbench.lint import lint

ui.page(
    "Prompt Workbench", "Design prompts, run them on a model on this machine, compare the results."
)
st.markdown(
    "**Compose** a prompt and save versions → **Playground**: run a version on one input or a "
    "dataset → **Compare** versions, models and parameters side by side → **History** of every "
    "run → **Evaluate** versions on a labelled dataset → **Library**: labels, export and "
    "import. Pages are in the sidebar."
)
lib = ui.load_library()
prompts = lib.list_prompts()

st.subheader(f"Prompt library ({len(prompts)} prompts)")
table = pd.DataFrame(
    [
        {
            "name": p.name,
            "technique": p.technique,
            "mode": p.mode,
            "latest": f"v{p.latest}",
            "versions": p.versions,
            "labels": ", ".join(f"{k}→v{v}" for k, v in p.labels.items()),
            "description": p.description,
        }
        for p in prompts
    ]
)
st.dataframe(table, hide_index=True, width="stretch")

if prompts:
    name = st.selectbox("Preview a prompt", [p.name for p in prompts], key="preview_prompt")
    try:
        versions = lib.versions(name)
        number = st.selectbox(
            "Version",
            [v.number for v in reversed(versions)],
            format_func=lambda n: f"v{n}",
            key=f"preview_version:{name}",  # a new prompt starts at its latest version
        )
        version = next(v for v in versions if v.number == number)
        if version.note:
            st.caption("Note: " + ui.escape_markdown(version.note))
        rendered = version.file.render()
        st.markdown(f"**Rendered with its sample inputs** ({rendered.mode} mode)")
        if rendered.mode == "completion":
            st.code(rendered.text, language=None, wrap_lines=True)
        else:
            for message in rendered.messages:
                st.markdown(f"`{message.role}`")
                st.code(message.content, language=None, wrap_lines=True)
        for issue in lint(version.file):
            st.warning(ui.escape_markdown(issue))
        with st.expander("Prompt file"):
            st.code(version.export_text(), language="yaml")
    except WorkbenchError as exc:
        st.error(ui.escape_markdown(exc))
