"""Seeds as 64-bit integers on PostgreSQL.

A seed may be any non-negative integer torch accepts, and each sample of a cell adds its index
to it. SQLite's INTEGER is 64-bit already; PostgreSQL's is 32-bit, where a seed past 2,147,483,647
could not be stored. Nothing changes on SQLite.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("output", "seed", type_=sa.BigInteger, existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("output", "seed", type_=sa.Integer, existing_nullable=False)
