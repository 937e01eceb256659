"""Open the library the settings point at: database migrated, built-ins loaded once.

The CLI and the app both start here, so they see the same database the same way.
"""

from __future__ import annotations

import logging

from .config import Settings
from .db_faults import ReadOnlyDatabaseError
from .exchange import load_builtins
from .library import Library
from .store import get_store

log = logging.getLogger(__name__)


def open_library(settings: Settings | None = None) -> Library:
    """The library, ready to read. Loading the built-ins is a write the first time only; where
    the database cannot be written (a read-only file or server) what it holds is shown as it
    is, so browsing and exporting still work there."""
    settings = settings or Settings.from_env()
    library = Library(get_store(settings.database_url))
    if library.store.read_only:
        return library
    try:
        load_builtins(library, settings.prompts_dir)
    except ReadOnlyDatabaseError as exc:
        log.warning("built-in prompts not loaded: %s", exc)
    return library
