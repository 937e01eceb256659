"""Alembic migrations, applied whenever a store is opened.

The scripts live in `versions/`, one small file per schema change, numbered in order; a script's
revision id is its number (`0007_bigint_seed.py` is revision "0007"), so the newest revision is
known from the file names. Opening a store compares that with the database's `alembic_version`
in one query and imports Alembic only when there is something to upgrade: every command opens a
store, and Alembic's import and script scan were about a tenth of a second of each.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from ..store import advisory_key

if TYPE_CHECKING:
    from alembic.config import Config

HERE = Path(__file__).resolve().parent
VERSIONS = HERE / "versions"


def alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    return cfg


@functools.cache
def head_revision() -> str | None:
    """The newest migration: the highest-numbered script in `versions/` (its number is its
    revision id; a test holds every script to that)."""
    numbers = [f.name.split("_", 1)[0] for f in VERSIONS.glob("[0-9][0-9][0-9][0-9]_*.py")]
    return max(numbers, default=None)


def current_revision(conn: Connection) -> str | None:
    """The revision a database is at; None for an empty one."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine) -> None:
    with engine.connect() as conn:
        if current_revision(conn) == head_revision():
            return
    from alembic import command

    cfg = alembic_config()
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
