"""Settings from environment variables.

Everything a person may want to move (the database, the prompt library, the default model) is an
environment variable with a default that works from a fresh clone, so the CLI, the app and the
tests all resolve locations the same way and tests never touch the real database.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import WorkbenchError

PROJECT_ROOT = Path(__file__).resolve().parent.parent

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
    timeout_s: float = 120.0
    max_retries: int = 3

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
            max_retries=number("WORKBENCH_OPENAI_MAX_RETRIES", 3, 0),
        )


@dataclass(frozen=True)
class Settings:
    storage_dir: Path
    database_url: str
    prompts_dir: Path
    model: str
    openai: OpenAISettings = field(default_factory=OpenAISettings)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        storage = Path(env.get("WORKBENCH_STORAGE_DIR") or PROJECT_ROOT / "storage")
        url = env.get("WORKBENCH_DATABASE_URL") or f"sqlite:///{storage / 'workbench.db'}"
        prompts = Path(env.get("WORKBENCH_PROMPTS_DIR") or PROJECT_ROOT / "prompts")
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
    "storage/workbench.db) or postgresql+psycopg://user:password@host/database",
    "WORKBENCH_STORAGE_DIR": "folder for the default database and converted models",
    "WORKBENCH_PROMPTS_DIR": "built-in prompt files loaded into an empty database",
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
    "WORKBENCH_OPENAI_MAX_RETRIES": "retries on 429, 5xx and dropped connections (default: 3)",
    "WORKBENCH_DEBUG": "set to 1 to see tracebacks from the CLI",
    "WORKBENCH_VERBOSE": "set to 1 for `workbench --verbose`: the model libraries' loading bars "
    "and warnings on stderr (otherwise they go to STORAGE/logs/workbench.log)",
}
