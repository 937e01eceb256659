"""Test sets: named, versioned datasets kept in the database for evaluations.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "test_set",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("columns", sa.JSON, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("name", "version", name="uq_test_set_version"),
    )
    op.create_table(
        "test_set_row",
        sa.Column("test_set_id", sa.Integer, sa.ForeignKey("test_set.id"), primary_key=True),
        sa.Column("row_index", sa.Integer, primary_key=True),
        sa.Column("values", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("test_set_row")
    op.drop_table("test_set")
