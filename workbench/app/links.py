"""Links from one page to another that carry a selection in the URL.

A link (`st.page_link`) rather than a button: one click opens the page with its selection in
the address, so the browser's back button returns and the address can be shared or reopened.
"""

from __future__ import annotations

from urllib.parse import urlencode

import streamlit as st
from streamlit.errors import StreamlitAPIException

from workbench import grid

COMPARE_PAGE = "pages/3_Compare.py"


def compare_previous_button(
    name: str, version: int, testset: str | None = None, *, run: int | None = None
) -> None:
    """ "Compare vN with vN-1": opens Compare on the two versions, with the rows of `testset`
    or `run` when given (otherwise Compare picks the prompt's stored test set or the last
    dataset it ran on). Nothing for a first version, which has no previous one."""
    if version < 2:
        return
    selection = grid.previous_version(name, version, testset=testset, run=run)
    label = f"Compare v{version} with v{version - 1}"
    try:
        st.page_link(COMPARE_PAGE, label=label, query_params=selection.params())
    except StreamlitAPIException:  # a page run on its own (as a test runs it) has no Compare
        st.caption(f"{label}: open Compare with ?{urlencode(selection.params())}")


def compare_previous_of(ref: str, *, run: int | None = None) -> None:
    """The same link for a version named `name@N` (as runs name their versions)."""
    name, _, number = ref.rpartition("@")
    if number.isdigit():
        compare_previous_button(name, int(number), run=run)
