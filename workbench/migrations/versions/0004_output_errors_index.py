"""A partial index of the outputs that failed, so History's "errors only" stays instant.

Errors are rare, so without it both the page and its count read every output to find them
(about 100 ms at 100,000 outputs); the index holds only the failed outputs' ids.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

FAILED = sa.text("error IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "ix_output_error", "output", ["id"], sqlite_where=FAILED, postgresql_where=FAILED
    )


def downgrade() -> None:
    op.drop_index("ix_output_error", "output")
