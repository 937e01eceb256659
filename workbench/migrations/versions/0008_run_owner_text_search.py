"""Who is running a run.

A run's owner: the process (id, host, since when) that generates it and a heartbeat it renews
while it stores outputs. A run whose process was killed (SIGKILL, a crash, a power cut) could not
say so and stayed "running" for ever; now a reader sees that its owner is gone (`runs.py`) and
marks it "interrupted", and a second process that tries to resume a run still being run is
refused instead of colliding with it. A partial index finds the few running runs at once.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

RUNNING = sa.text("status = 'running'")


def upgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.add_column(sa.Column("owner_pid", sa.Integer))
        batch.add_column(sa.Column("owner_host", sa.String(255)))
        batch.add_column(sa.Column("owner_since", sa.DateTime))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime))
    op.create_index("ix_run_running", "run", ["id"], sqlite_where=RUNNING, postgresql_where=RUNNING)


def downgrade() -> None:
    op.execute("UPDATE run SET status = 'cancelled' WHERE status = 'interrupted'")
    op.drop_index("ix_run_running", "run")
    with op.batch_alter_table("run") as batch:
        batch.drop_column("heartbeat_at")
        batch.drop_column("owner_since")
        batch.drop_column("owner_host")
        batch.drop_column("owner_pid")
