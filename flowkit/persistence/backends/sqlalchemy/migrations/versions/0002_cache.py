"""Create the flowkit_cache table, where SQL cache stores keep results by input hash.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05

A frozen copy of the cache table's first shape (see ``tables.flowkit_cache``).
A cache store opened on a database creates the table itself when it is
missing, so a database may have it before this revision runs: then the
revision leaves it as it is.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the table and its index on ``created`` (eviction order), unless present."""
    if sa.inspect(op.get_bind()).has_table("flowkit_cache"):
        return
    op.create_table(
        "flowkit_cache",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("expires", sa.Float, nullable=True),
    )
    op.create_index("ix_flowkit_cache_created", "flowkit_cache", ["created"])


def downgrade() -> None:
    """Drop the table (every cached result goes with it)."""
    op.drop_index("ix_flowkit_cache_created", table_name="flowkit_cache")
    op.drop_table("flowkit_cache")
