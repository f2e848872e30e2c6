"""Add the write fence of a flow detail (``fence_holder``, ``fence_token``).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05

A conductor stamps the flow detail it runs with its job and claim token, and
its progress writes go through only while the stamp is still its own: the
database compares the token as part of the write, so a conductor whose claim
was taken over cannot write even if it pauses between checking its claim and
writing. Both columns are nullable: flows never run by a conductor have no fence.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the two nullable columns (no table rewrite on any database)."""
    op.add_column("flowdetails", sa.Column("fence_holder", sa.String(64)))
    op.add_column("flowdetails", sa.Column("fence_token", sa.BigInteger))


def downgrade() -> None:
    """Drop them again (batch mode: SQLite before 3.35 cannot drop a column in place)."""
    with op.batch_alter_table("flowdetails") as batch:
        batch.drop_column("fence_token")
        batch.drop_column("fence_holder")
