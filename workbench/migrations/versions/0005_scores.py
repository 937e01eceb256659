"""Scores: what each assertion or metric said about an output.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "score",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("output_id", sa.Integer, sa.ForeignKey("output.id"), nullable=False),
        sa.Column("metric", sa.String(100), nullable=False),
        sa.Column("type", sa.String(50), nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("weight", sa.Float, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("output_id", "metric", name="uq_score_output_metric"),
    )


def downgrade() -> None:
    op.drop_table("score")
