"""Trial prompts: where the variants an ablation or a few-shot search tries are kept.

A trial (a prompt with one block removed, or with three chosen examples) must be a stored version,
since a run names the versions it ran and History shows them. It must not become `NAME@latest` nor
crowd the Library, so trials are versions of a companion prompt `NAME.trials` whose `kind` is
`trials`; ordinary prompts are `prompt`. The Library list leaves trial prompts out; their refs
(`NAME.trials@4`) still resolve everywhere a ref does.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("prompt") as batch:
        batch.add_column(sa.Column("kind", sa.String(20), nullable=False, server_default="prompt"))


def downgrade() -> None:
    with op.batch_alter_table("prompt") as batch:
        batch.drop_column("kind")
