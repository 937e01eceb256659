"""Process-wide resources for the pages: one library (engine, migrations) per server."""

from __future__ import annotations

import streamlit as st

from workbench.config import Settings
from workbench.library import Library
from workbench.workspace import open_library


@st.cache_resource(show_spinner=False)
def library() -> Library:
    return open_library(Settings.from_env())
