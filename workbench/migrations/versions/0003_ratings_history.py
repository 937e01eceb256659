"""A person's rating of an output; indexes that keep History's filters fast at 100k outputs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rating",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("output_id", sa.Integer, sa.ForeignKey("output.id"), nullable=False),
        sa.Column("verdict", sa.Integer),
        sa.Column("stars", sa.Integer),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("output_id", name="uq_rating_output"),
        sa.CheckConstraint("verdict IS NULL OR verdict IN (-1, 1)", name="ck_rating_verdict"),
        sa.CheckConstraint("stars IS NULL OR stars BETWEEN 1 AND 5", name="ck_rating_stars"),
    )
    # Newest-first pages filtered by version or model walk these in order (id = insertion order).
    op.create_index("ix_output_version", "output", ["version_id", "id"])
    op.create_index("ix_output_model", "output", ["model", "id"])


def downgrade() -> None:
    op.drop_index("ix_output_model", "output")
    op.drop_index("ix_output_version", "output")
    op.drop_table("rating")
