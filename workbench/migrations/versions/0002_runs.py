"""Runs and their outputs: every generation with what reproduces it; self-consistency votes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("backend", sa.String(50), nullable=False),
        sa.Column("revision", sa.String(100), nullable=False),
        sa.Column("dtype", sa.String(20), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("samples", sa.Integer, nullable=False),
        sa.Column("use_cache", sa.Boolean, nullable=False),
        sa.Column("dataset", sa.Text),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
    )
    op.create_index("ix_run_created_at", "run", ["created_at"])
    op.create_table(
        "run_version",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("run.id"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("prompt_version.id"), nullable=False),
    )
    op.create_table(
        "run_row",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("run.id"), primary_key=True),
        sa.Column("row_index", sa.Integer, primary_key=True),
        sa.Column("variables", sa.JSON, nullable=False),
    )
    op.create_table(
        "output",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("run.id"), nullable=False),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("prompt_version.id"), nullable=False),
        sa.Column("row_index", sa.Integer, nullable=False),
        sa.Column("sample_index", sa.Integer, nullable=False),
        sa.Column("variables", sa.JSON, nullable=False),
        sa.Column("messages", sa.JSON, nullable=False),
        sa.Column("model_input", sa.Text, nullable=False),
        sa.Column("add_special_tokens", sa.Boolean, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("backend", sa.String(50), nullable=False),
        sa.Column("revision", sa.String(100), nullable=False),
        sa.Column("dtype", sa.String(20), nullable=False),
        sa.Column("chat_template_hash", sa.String(64), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("text", sa.Text),
        sa.Column("finish_reason", sa.String(20)),
        sa.Column("prompt_tokens", sa.Integer),
        sa.Column("completion_tokens", sa.Integer),
        sa.Column("latency_s", sa.Float),
        sa.Column("ttft_s", sa.Float),
        sa.Column("batch_size", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column("answer", sa.Text),
        sa.Column("cache_key", sa.String(64), nullable=False),
        sa.Column("cached", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint(
            "run_id", "version_id", "row_index", "sample_index", name="uq_output_cell"
        ),
    )
    op.create_index("ix_output_cache_key", "output", ["cache_key"])
    op.create_index("ix_output_created", "output", ["created_at"])
    op.create_table(
        "vote",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("run.id"), nullable=False),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("prompt_version.id"), nullable=False),
        sa.Column("row_index", sa.Integer, nullable=False),
        sa.Column("answer", sa.Text),
        sa.Column("agreement", sa.Float, nullable=False),
        sa.Column("samples", sa.Integer, nullable=False),
        sa.Column("counts", sa.JSON, nullable=False),
        sa.UniqueConstraint("run_id", "version_id", "row_index", name="uq_vote_cell"),
    )


def downgrade() -> None:
    for table in ("vote", "output", "run_row", "run_version", "run"):
        op.drop_table(table)
