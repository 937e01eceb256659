"""Token log-probabilities with each output.

A nullable binary column holding, for each generated token, its log-probability and its top-k
alternatives (see `workbench.logprobs` for the format: 48 bytes a token at k = 5). Outputs
stored before this, failed outputs and backends that give none leave it NULL. BLOB on SQLite,
bytea on PostgreSQL.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("output") as batch:
        batch.add_column(sa.Column("token_logprobs", sa.LargeBinary, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("output") as batch:
        batch.drop_column("token_logprobs")
