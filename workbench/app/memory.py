"""What the pages remember: the person's choices across page switches, and in the address.

Streamlit forgets a widget's value as soon as a page without that widget runs, so coming back
to a page used to reset it to the first prompt. Two mechanisms keep a selection instead:

- `keep_choices()` runs at the top of every page and writes each remembered widget value back
  into the session as a plain value; Streamlit does not clean up a value written by the script,
  so it is still there when the page with the widget runs again. Only value widgets are listed:
  a button, file uploader or data editor refuses a value set this way.
- The selection is also in the address (`?prompt=few-shot-sentiment&v=3&run=42&model=…`):
  `requested(key, *params)` hands a page the value the address asks for once per new value (a
  link opened, the browser's back button), and `show_in_url` writes the current choice back,
  which adds a browser history entry. A value the page changed since wins over an address
  it already read, so the person's clicks are never undone by a stale address.

Non-widget state (job ids, last results, the rows typed into a table) lives under keys that no
widget uses, which Streamlit never drops.
"""

from __future__ import annotations

import re

import streamlit as st

# Widget keys that are values (selectboxes, text, numbers, checkboxes, radios, multiselects),
# matched from the start of the key: choices of prompt, version, model, parameters and inputs,
# and a Compose draft. A page that adds a value widget worth keeping adds its key here (every
# page must know it: the page without the widget is the one that keeps it).
KEPT = re.compile(
    r"^(?:"
    r"model_(?:spec|dtype|trust_remote_code|source|server_url|server_model|server_key)$"
    r"|play_prompt(?::version:.*)?$|compose_prompt(?::version:.*)?$|compose_source$"
    r"|compose_technique$|compose_new_name$|compose:.*:(?:description|techniques|mode|body"
    r"|persona_on|persona|schema|cot|trigger|sc|samples|answer_pattern|note|var:.*)$"
    r"|cmp_prompt_\d+(?::version:.*)?$|cmp_(?:model|params)_\d+$|cmp_use_cache$"
    r"|cmp_assertions$|cmp_rows:(?:source|map:.*)$"
    r"|param:.*|play_var:.*|play_use_cache$|play_ds:.*:(?:source|map:.*)$"
    r"|library_prompt$|library_file_version:.*"
    r"|history:(?:prompt|version:.*|model|status|search_in|open)$"
    r"|eval_(?:refs|measure|asserts|seeds|answer_pattern|params|source|test_set)$"
    r"|eval_rows:(?:source|map:.*)$"
    r")"
)
SEEN = "wb:url-seen:"  # the address values already applied, per widget key and parameter


def keep_choices() -> None:
    """Keep every remembered widget value through a page that does not draw its widget."""
    for key in list(st.session_state.keys()):
        if isinstance(key, str) and KEPT.match(key):
            st.session_state[key] = st.session_state[key]


def requested(key: str, *params: str) -> dict[str, str | None] | None:
    """The address's `params` when the page has not applied these values yet (for widget
    `key`), else None.

    Read together (`prompt` and `v` are one choice) and returned once: after that the widget
    owns the choice until the address changes again (another link, the back button).
    """
    values = {param: st.query_params.get(param) for param in params}
    if all(value is None for value in values.values()):
        return None
    if all(st.session_state.get(f"{SEEN}{key}:{p}") == v for p, v in values.items()):
        return None
    for param, value in values.items():
        st.session_state[f"{SEEN}{key}:{param}"] = value
    return values


def show_in_url(key: str, **values: str | int | None) -> None:
    """Put widget `key`'s current choice in the address (None removes a parameter). Unchanged
    values are not written again, so a rerun adds no browser history entry; what the page
    wrote itself is marked as applied, so it is not read back as a new request."""
    address = st.query_params.to_dict()
    wanted = dict(address)
    for param, value in values.items():
        if value is None:
            wanted.pop(param, None)
        else:
            wanted[param] = str(value)
    if wanted != address:  # one change of the address: one browser history entry
        st.query_params.from_dict(wanted)
    for param, value in values.items():
        st.session_state[f"{SEEN}{key}:{param}"] = None if value is None else str(value)
