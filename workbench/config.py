"""Settings from environment variables.

Everything a person may want to move (the database, the prompt library, the default model) is an
environment variable with a default that works from a fresh clone and from an installed package,
so the CLI, the app and the tests all resolve locations the same way and tests never touch the
real database.

Where things live by default:
- The built-in prompt files are package data (`workbench/prompts/`), read through
  `importlib.resources`, so they come along in a wheel like the code does.
- Storage (the SQLite database and converted models) is `storage/` in a source checkout — next to
  the code a developer is working on, ignored by git — and the user data folder of the platform
  when the workbench is installed as a package (`~/.local/share/prompt-workbench` on Linux),
  never inside site-packages, which a reinstall replaces and which may not be writable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from .errors import WorkbenchError

PACKAGE_NAME = "prompt-workbench"
BUILTIN_PROMPTS: Traversable = files("workbench") / "prompts"


def source_checkout() -> Path | None:
    """The project folder when the code runs from a source checkout (an editable install, or
    PYTHONPATH pointing at a clone), None when it runs as an installed package.

    The package's parent folder holds pyproject.toml only in a checkout; in an installed package
    it is site-packages.
    """
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() else None


def default_storage_dir() -> Path:
    """`storage/` in a source checkout, else the platform's user data folder for the workbench."""
    root = source_checkout()
    if root is not None:
        return root / "storage"
    # Only an installed package needs it, so a checkout runs without it.
    from platformdirs import user_data_path

    return Path(user_data_path(PACKAGE_NAME, appauthor=False))


DEFAULT_MODEL = "smollm2-135m-instruct"
DEFAULT_OPENAI_BASE_URL = "http://127.0.0.1:8080/v1"


@dataclass(frozen=True)
class OpenAISettings:
    """Where an OpenAI-compatible model server is and how hard to lean on it.

    The API key lives only here (from the environment or typed into the app), never in a model
    spec, a run or an output row: what is stored names the server by its public URL only.
    """

    base_url: str = DEFAULT_OPENAI_BASE_URL
    model: str = ""  # empty: the server's only model
    api_key: str = field(default="", repr=False)  # never printed, never stored
    max_concurrency: int = 4
    context_window: int = 4096  # used when the server does not report one
    timeout_s: float = 120.0  # the longest silence: connecting, and between two pieces
    # The longest one answer may take in all, retries included; 0: no limit. A gap limit alone
    # lets a server that sends keep-alive comments, or a piece now and then, hold a run forever.
    request_timeout_s: float = 600.0
    max_retries: int = 3
    # Alternatives asked for with each generated token's log-probability (as a local model
    # records); 0: ask for no log-probabilities (llama-cpp-python computes them slowly).
    top_logprobs: int = 5

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OpenAISettings:
        def number(name: str, default: Any, minimum: float) -> Any:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = type(default)(raw)
            except ValueError:
                raise WorkbenchError(f"{name} must be a number, got {raw!r}") from None
            if value < minimum:
                raise WorkbenchError(f"{name} must be at least {minimum}, got {raw!r}")
            return value

        return cls(
            base_url=env.get("WORKBENCH_OPENAI_BASE_URL") or DEFAULT_OPENAI_BASE_URL,
            model=env.get("WORKBENCH_OPENAI_MODEL", "").strip(),
            api_key=env.get("WORKBENCH_OPENAI_API_KEY", "").strip(),
            max_concurrency=number("WORKBENCH_OPENAI_MAX_CONCURRENCY", 4, 1),
            context_window=number("WORKBENCH_OPENAI_CONTEXT_WINDOW", 4096, 16),
            timeout_s=number("WORKBENCH_OPENAI_TIMEOUT", 120.0, 0.1),
            request_timeout_s=number("WORKBENCH_OPENAI_REQUEST_TIMEOUT", 600.0, 0),
            max_retries=number("WORKBENCH_OPENAI_MAX_RETRIES", 3, 0),
            top_logprobs=_at_most(number("WORKBENCH_OPENAI_TOP_LOGPROBS", 5, 0), 20),
        )


def _at_most(value: int, maximum: int) -> int:
    """OpenAI's API takes at most 20 alternatives (vLLM's default limit too)."""
    if value > maximum:
        raise WorkbenchError(
            f"WORKBENCH_OPENAI_TOP_LOGPROBS must be at most {maximum}, got {value}"
        )
    return value


@dataclass(frozen=True)
class Settings:
    storage_dir: Path
    database_url: str
    prompts_dir: Traversable  # a Path when set by WORKBENCH_PROMPTS_DIR
    model: str
    openai: OpenAISettings = field(default_factory=OpenAISettings)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        raw_storage = env.get("WORKBENCH_STORAGE_DIR")
        storage = Path(raw_storage) if raw_storage else default_storage_dir()
        url = env.get("WORKBENCH_DATABASE_URL") or f"sqlite:///{storage / 'workbench.db'}"
        raw_prompts = env.get("WORKBENCH_PROMPTS_DIR")
        prompts = Path(raw_prompts) if raw_prompts else BUILTIN_PROMPTS
        model = env.get("WORKBENCH_MODEL") or DEFAULT_MODEL
        return cls(
            storage_dir=storage,
            database_url=url,
            prompts_dir=prompts,
            model=model,
            openai=OpenAISettings.from_env(env),
        )


# Each entry documents one variable; README's settings table is checked against it by a test.
ENVIRONMENT_VARIABLES: dict[str, str] = {
    "WORKBENCH_DATABASE_URL": "SQLAlchemy URL of the database: SQLite (default: "
    "workbench.db in the storage folder) or postgresql+psycopg://user:password@host/database",
    "WORKBENCH_STORAGE_DIR": "folder for the default database and converted models (default: "
    "storage/ in a source checkout, the user data folder in an installed package)",
    "WORKBENCH_PROMPTS_DIR": "folder of built-in prompt files loaded into an empty database "
    "(default: the ones shipped in the package, workbench/prompts/)",
    "WORKBENCH_MODEL": "default model: a local folder or cached Hugging Face id",
    "WORKBENCH_OPENAI_BASE_URL": "OpenAI-compatible server for `--model openai` "
    f"(default: {DEFAULT_OPENAI_BASE_URL})",
    "WORKBENCH_OPENAI_MODEL": "model name on that server (default: the server's only model)",
    "WORKBENCH_OPENAI_API_KEY": "API key for that server; sent as a Bearer token, never stored",
    "WORKBENCH_OPENAI_MAX_CONCURRENCY": "requests sent to the server at once (default: 4)",
    "WORKBENCH_OPENAI_CONTEXT_WINDOW": "context window when the server does not report one "
    "(default: 4096)",
    "WORKBENCH_OPENAI_TIMEOUT": "seconds to wait for the server between two pieces of an answer "
    "(default: 120)",
    "WORKBENCH_OPENAI_REQUEST_TIMEOUT": "seconds one answer may take in all, retries included "
    "(default: 600; 0 for no limit)",
    "WORKBENCH_OPENAI_MAX_RETRIES": "retries on 429, 5xx and dropped connections (default: 3)",
    "WORKBENCH_OPENAI_TOP_LOGPROBS": "alternatives asked for with each generated token's "
    "log-probability (default: 5; at most 20; 0 asks for no log-probabilities)",
    "WORKBENCH_DEBUG": "set to 1 to see tracebacks from the CLI",
    "WORKBENCH_VERBOSE": "set to 1 for `workbench --verbose`: the model libraries' loading bars "
    "and warnings on stderr (otherwise they go to STORAGE/logs/workbench.log)",
}
