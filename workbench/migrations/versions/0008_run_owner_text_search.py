"""Who is running a run, and trigram indexes for History's text search on PostgreSQL.

A run's owner: the process (id, host, since when) that generates it and a heartbeat it renews
while it stores outputs. A run whose process was killed (SIGKILL, a crash, a power cut) could not
say so and stayed "running" for ever; now a reader sees that its owner is gone (`runs.py`) and
marks it "interrupted", and a second process that tries to resume a run still being run is
refused instead of colliding with it. A partial index finds the few running runs at once.

On PostgreSQL, History's substring search (ILIKE '%term%') read every output: about a second at
100,000. GIN indexes with pg_trgm's trigram operator class answer ILIKE (and LIKE) directly,
with the same semantics, on the output text and on the variables' JSON text (the first, cheap
test of a variables search). pg_trgm ships with PostgreSQL (Debian: in the server package) and
is a trusted extension, so a role that may create objects in the database may create it; where
it is missing or refused, the migration goes on without the indexes and says so in the log:
search stays correct, only slower. Nothing changes for SQLite's search.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op
from sqlalchemy.exc import DBAPIError

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

log = logging.getLogger("workbench.migrations")

TRIGRAM_EXTENSION = "pg_trgm"
TRIGRAM_INDEXES = {
    "ix_output_text_trgm": "text gin_trgm_ops",
    "ix_output_variables_trgm": "(CAST(variables AS TEXT)) gin_trgm_ops",
}
RUNNING = sa.text("status = 'running'")


def upgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.add_column(sa.Column("owner_pid", sa.Integer))
        batch.add_column(sa.Column("owner_host", sa.String(255)))
        batch.add_column(sa.Column("owner_since", sa.DateTime))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime))
    op.create_index("ix_run_running", "run", ["id"], sqlite_where=RUNNING, postgresql_where=RUNNING)
    if op.get_bind().dialect.name == "postgresql":
        create_trigram_indexes()


def create_trigram_indexes() -> None:
    """The trigram indexes, or a logged note on how to add them when the role cannot."""
    conn = op.get_bind()
    statements = [
        f"CREATE INDEX {name} ON output USING gin ({columns})"
        for name, columns in TRIGRAM_INDEXES.items()
    ]
    try:
        with conn.begin_nested():  # a refusal must not abort the whole migration
            installed = conn.execute(
                sa.text("SELECT 1 FROM pg_extension WHERE extname = :name"),
                {"name": TRIGRAM_EXTENSION},
            ).scalar()
            if not installed:
                conn.execute(sa.text(f"CREATE EXTENSION IF NOT EXISTS {TRIGRAM_EXTENSION}"))
            for statement in statements:
                conn.execute(sa.text(statement))
    except DBAPIError as exc:
        reason = (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0]
        log.warning(
            "History's text search has no index on this PostgreSQL database (%s): it works, "
            "but reads every output. Someone allowed to create extensions can add it: %s",
            reason,
            "; ".join([f"CREATE EXTENSION {TRIGRAM_EXTENSION}", *statements]),
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in TRIGRAM_INDEXES:
            op.execute(f"DROP INDEX IF EXISTS {name}")
    op.execute("UPDATE run SET status = 'cancelled' WHERE status = 'interrupted'")
    op.drop_index("ix_run_running", "run")
    with op.batch_alter_table("run") as batch:
        batch.drop_column("heartbeat_at")
        batch.drop_column("owner_since")
        batch.drop_column("owner_host")
        batch.drop_column("owner_pid")
