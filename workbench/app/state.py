"""Process-wide resources for the pages: one library (engine, migrations) and one loaded model
per choice, shared by every browser session of this server.

Pages call these instead of building services themselves, so a page opens without touching the
model: a model is loaded the first time something is generated or counted with it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import streamlit as st

from workbench.config import Settings
from workbench.library import Library
from workbench.models import Backend, load_backend
from workbench.runner import Runner
from workbench.workspace import open_library

DTYPES = ("float32", "bfloat16")

_loaded: set[tuple[str, str, bool]] = set()
_loaded_lock = threading.Lock()


@dataclass(frozen=True)
class ModelChoice:
    """The sidebar's pick: a model (alias, local folder or cached hub id) and how to load it."""

    spec: str
    dtype: str = "float32"
    trust_remote_code: bool = False

    @property
    def key(self) -> tuple[str, str, bool]:
        return (self.spec, self.dtype, self.trust_remote_code)


def settings() -> Settings:
    return Settings.from_env()


@st.cache_resource(show_spinner=False)
def library() -> Library:
    return open_library(settings())


@st.cache_resource(show_spinner="Loading the model (once per server)…")
def _backend(spec: str, dtype: str, trust_remote_code: bool) -> Backend:
    backend = load_backend(
        spec, settings().storage_dir, dtype=dtype, trust_remote_code=trust_remote_code
    )
    with _loaded_lock:
        _loaded.add((spec, dtype, trust_remote_code))
    return backend


def backend(choice: ModelChoice) -> Backend:
    return _backend(choice.spec, choice.dtype, choice.trust_remote_code)


def is_loaded(choice: ModelChoice) -> bool:
    """Whether generating with this choice would start at once (no load, no conversion)."""
    with _loaded_lock:
        return choice.key in _loaded


def runner(choice: ModelChoice) -> Runner:
    """A fresh runner on the shared library; the model loads when the runner first needs it."""
    return Runner(library(), lambda: backend(choice))
