"""Model backends: local transformers models and OpenAI-compatible servers.

`base` holds the interface and its records; `local` the transformers backend, `model_files` how
a local model is found and the default one converted, `remote` the HTTP backend. `open_backend`
is the one place a model spec becomes a backend.
"""

from __future__ import annotations

from pathlib import Path

from .base import REMOTE_PREFIX, Backend, is_remote_spec

__all__ = ["REMOTE_PREFIX", "Backend", "is_remote_spec", "open_backend"]


def open_backend(
    spec: str,
    storage_dir: Path,
    *,
    dtype: str = "float32",
    trust_remote_code: bool = False,
    api_key: str | None = None,
) -> Backend:
    """The backend a model spec names: `openai…` is a server (see `remote`), anything else a
    local model. The one place the CLI and the app turn a spec into a backend."""
    if is_remote_spec(spec):
        from . import remote

        return remote.open_remote(spec, api_key=api_key)
    from .local import load_backend

    return load_backend(spec, storage_dir, dtype=dtype, trust_remote_code=trust_remote_code)
