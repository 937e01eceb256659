"""Settings from environment variables.

Everything a person may want to move (the database, the prompt library, the default model) is an
environment variable with a default that works from a fresh clone, so the CLI, the app and the
tests all resolve locations the same way and tests never touch the real database.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class Settings:
    storage_dir: Path
    database_url: str
    prompts_dir: Path
    model: str

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        storage = Path(env.get("WORKBENCH_STORAGE_DIR") or PROJECT_ROOT / "storage")
        url = env.get("WORKBENCH_DATABASE_URL") or f"sqlite:///{storage / 'workbench.db'}"
        prompts = Path(env.get("WORKBENCH_PROMPTS_DIR") or PROJECT_ROOT / "prompts")
        model = env.get("WORKBENCH_MODEL") or DEFAULT_MODEL
        return cls(storage_dir=storage, database_url=url, prompts_dir=prompts, model=model)


# Each entry documents one variable; README's settings table is checked against it by a test.
ENVIRONMENT_VARIABLES: dict[str, str] = {
    "WORKBENCH_DATABASE_URL": "SQLAlchemy URL of the database: SQLite (default: "
    "storage/workbench.db) or postgresql+psycopg://user:password@host/database",
    "WORKBENCH_STORAGE_DIR": "folder for the default database and converted models",
    "WORKBENCH_PROMPTS_DIR": "built-in prompt files loaded into an empty database",
    "WORKBENCH_MODEL": "default model: a local folder or cached Hugging Face id",
    "WORKBENCH_DEBUG": "set to 1 to see tracebacks from the CLI",
}
