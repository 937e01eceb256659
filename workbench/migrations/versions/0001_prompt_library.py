"""Prompt library: prompts, immutable versions, labels and their history.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

IMMUTABLE_MESSAGE = "prompt versions are immutable: save a new version instead"


def upgrade() -> None:
    op.create_table(
        "prompt",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "prompt_version",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("prompt_id", sa.Integer, sa.ForeignKey("prompt.id"), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("technique", sa.String(200), nullable=False),
        sa.Column("mode", sa.String(20), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("prompt_version.id"), nullable=True),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("prompt_id", "number", name="uq_prompt_version_number"),
    )
    op.create_index("ix_prompt_version_hash", "prompt_version", ["prompt_id", "content_hash"])
    op.create_table(
        "label",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("prompt_id", sa.Integer, sa.ForeignKey("prompt.id"), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("prompt_version.id"), nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("prompt_id", "name", name="uq_label_name"),
    )
    op.create_table(
        "label_event",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("prompt_id", sa.Integer, sa.ForeignKey("prompt.id"), nullable=False),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("from_version_id", sa.Integer, sa.ForeignKey("prompt_version.id")),
        sa.Column("to_version_id", sa.Integer, sa.ForeignKey("prompt_version.id")),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_label_event_prompt", "label_event", ["prompt_id", "id"])
    op.create_table(
        "app_state",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute(
            "CREATE TRIGGER prompt_version_immutable BEFORE UPDATE ON prompt_version "
            f"BEGIN SELECT RAISE(ABORT, '{IMMUTABLE_MESSAGE}'); END"
        )
    elif dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION prompt_version_immutable() RETURNS trigger AS $$ BEGIN "
            f"RAISE EXCEPTION '{IMMUTABLE_MESSAGE}'; END; $$ LANGUAGE plpgsql"
        )
        op.execute(
            "CREATE TRIGGER prompt_version_immutable BEFORE UPDATE ON prompt_version "
            "FOR EACH ROW EXECUTE FUNCTION prompt_version_immutable()"
        )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS prompt_version_immutable")
    elif dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS prompt_version_immutable ON prompt_version")
        op.execute("DROP FUNCTION IF EXISTS prompt_version_immutable()")
    for table in ("app_state", "label_event", "label", "prompt_version", "prompt"):
        op.drop_table(table)
