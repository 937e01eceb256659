"""Token texts for the pages: each local model's tokenizer, loaded once per server.

Showing where two answers part needs the text of their tokens, and a local model's ids are
only text through its tokenizer. `decoder_for(output)` gives that tokenizer's
`Backend.token_pieces`, cached per model (st.cache_resource): opening the backend reads the
model folder's files and loading the tokenizer takes well under a second; the weights are not
loaded (they load with the first answer that is generated). Outputs of a server, or of a
model this machine cannot open any more, have no decoder: the page then says their token
texts are unknown instead of failing.
"""

from __future__ import annotations

import logging

import streamlit as st

from workbench.app import state
from workbench.backends import open_backend
from workbench.divergence import Decoder
from workbench.runs import OutputRecord

log = logging.getLogger("workbench.app")


@st.cache_resource(show_spinner="Loading the tokenizer…")
def _decoder(model: str) -> Decoder | None:
    try:
        backend = open_backend(model, state.settings().storage_dir)
        if not backend.capabilities.token_ids:
            return None
        backend.token_pieces([])  # loads the tokenizer now: a failure is caught here, once
    except Exception as exc:  # a folder gone or unreadable: texts unknown, the page still works
        log.warning("no tokenizer for %s: %s", model, exc)
        return None
    return backend.token_pieces


def decoder_for(output: OutputRecord) -> Decoder | None:
    """The tokenizer that turns this output's token ids into text, if one is at hand."""
    if output.backend != "transformers":  # a server's ids: its stored texts, if any, are used
        return None
    return _decoder(output.model)
