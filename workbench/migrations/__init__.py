"""Alembic migrations, applied whenever a store is opened.

The scripts live in `versions/`, one small file per schema change, numbered in order. Opening a
store runs `upgrade head`, which does nothing when the database is current.
"""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Engine

from ..store import advisory_key

HERE = Path(__file__).resolve().parent


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    return cfg


@functools.cache
def head_revision() -> str | None:
    """The newest migration; read from the scripts once per process (they do not change)."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def upgrade(engine: Engine) -> None:
    cfg = alembic_config()
    with engine.connect() as conn:
        if MigrationContext.configure(conn).get_current_revision() == head_revision():
            return
    # A second process opening a new database waits for the first one's migration instead of
    # failing, then finds the schema current: BEGIN IMMEDIATE on SQLite; on PostgreSQL an
    # advisory lock (its DDL is transactional, so the whole upgrade commits or not at all).
    with engine.execution_options(workbench_write=True).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(
                text("SELECT pg_advisory_xact_lock(:key)"),
                {"key": advisory_key("migrations", "workbench")},
            )
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
