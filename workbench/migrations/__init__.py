"""Alembic migrations, applied whenever a store is opened.

The scripts live in `versions/`, one small file per schema change, numbered in order. Opening a
store runs `upgrade head`, which does nothing when the database is current.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

HERE = Path(__file__).resolve().parent


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    return cfg


def upgrade(engine: Engine) -> None:
    cfg = alembic_config()
    head = ScriptDirectory.from_config(cfg).get_current_head()
    with engine.connect() as conn:
        if MigrationContext.configure(conn).get_current_revision() == head:
            return
    # BEGIN IMMEDIATE on SQLite: a second process opening a new database waits for the first
    # one's migration instead of failing, then finds the schema current.
    with engine.execution_options(workbench_write=True).begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
