"""Process-wide resources for the pages: one library (engine, migrations) and one loaded model
per choice, shared by every browser session of this server.

Pages call these instead of building services themselves, so a page opens without touching the
model: a model is loaded the first time something is generated or counted with it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import streamlit as st

from workbench.backends import Backend, open_backend
from workbench.config import Settings
from workbench.library import Library
from workbench.runner import Runner
from workbench.workspace import open_library

DTYPES = ("float32", "bfloat16")

_loaded: set[tuple[str, str, bool, str]] = set()
_loaded_lock = threading.Lock()


@dataclass(frozen=True)
class ModelChoice:
    """The sidebar's pick: a model spec (alias, local folder, cached hub id, or `openai:…` for
    a server) and how to load it. The API key typed for a server stays in memory only."""

    spec: str
    dtype: str = "float32"
    trust_remote_code: bool = False
    api_key: str = field(default="", repr=False)

    @property
    def key(self) -> tuple[str, str, bool, str]:
        return (self.spec, self.dtype, self.trust_remote_code, self.api_key)


def settings() -> Settings:
    return Settings.from_env()


@st.cache_resource(show_spinner=False)
def library() -> Library:
    return open_library(settings())


@st.cache_resource(show_spinner="Loading the model (once per server)…")
def _backend(spec: str, dtype: str, trust_remote_code: bool, api_key: str) -> Backend:
    backend = open_backend(
        spec,
        settings().storage_dir,
        dtype=dtype,
        trust_remote_code=trust_remote_code,
        api_key=api_key or None,
    )
    with _loaded_lock:
        _loaded.add((spec, dtype, trust_remote_code, api_key))
    return backend


def backend(choice: ModelChoice) -> Backend:
    return _backend(choice.spec, choice.dtype, choice.trust_remote_code, choice.api_key)


def is_loaded(choice: ModelChoice) -> bool:
    """Whether this choice's backend is open in this server: its description is known without
    another conversion or server round trip (a local model's weights still load with the first
    answer that is not in the store)."""
    with _loaded_lock:
        return choice.key in _loaded


def runner(choice: ModelChoice) -> Runner:
    """A fresh runner on the shared library; the model loads when the runner first needs it."""
    return Runner(library(), lambda: backend(choice))
