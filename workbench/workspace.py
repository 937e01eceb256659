"""Open the library the settings point at: database migrated, built-ins loaded once.

The CLI and the app both start here, so they see the same database the same way.
"""

from __future__ import annotations

from .config import Settings
from .exchange import load_builtins
from .library import Library
from .store import get_store


def open_library(settings: Settings | None = None) -> Library:
    settings = settings or Settings.from_env()
    library = Library(get_store(settings.database_url))
    load_builtins(library, settings.prompts_dir)
    return library
