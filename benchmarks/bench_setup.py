"""What the default-model benchmarks share: the model, a throwaway library of the built-ins, and
one line saying what they ran on (so figures can be compared across machines)."""

from __future__ import annotations

import os
import tempfile
from typing import Any


def default_model_and_library() -> tuple[Any, Any]:
    """The default local model and a Library of the built-in prompts in a new SQLite file, so
    nothing a benchmark runs comes from an earlier run's cache."""
    from workbench.backends.local import load_backend
    from workbench.config import Settings
    from workbench.exchange import load_builtins
    from workbench.library import Library
    from workbench.store import Store

    settings = Settings.from_env()
    backend = load_backend("default", settings.storage_dir)
    library = Library(Store(f"sqlite:///{tempfile.mkdtemp(prefix='wb-bench-')}/bench.db"))
    load_builtins(library, settings.prompts_dir)
    return backend, library


def machine_line(backend: Any) -> str:
    import torch

    info = backend.info
    return (
        f"model {info.name} ({info.revision}, {info.dtype}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} cores"
    )
