"""Create the logbooks, flowdetails and atomdetails tables.

Revision ID: 0001
Revises:
Create Date: 2024-11-22

A frozen copy of the first schema: later revisions change it step by step,
so this file must never follow edits to ``tables.py``.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _timestamps() -> list[sa.Column[datetime]]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True)),
    ]


def upgrade() -> None:
    """Create the three tables, children cascading on their parent's deletion."""
    op.create_table(
        "logbooks",
        sa.Column("uuid", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(255)),
        sa.Column("meta", sa.Text),
        *_timestamps(),
    )
    op.create_table(
        "flowdetails",
        sa.Column("uuid", sa.String(64), primary_key=True),
        sa.Column(
            "parent_uuid",
            sa.String(64),
            sa.ForeignKey("logbooks.uuid", ondelete="CASCADE", name="fk_flowdetails_parent_uuid"),
            nullable=False,
        ),
        sa.Column("name", sa.String(255)),
        sa.Column("state", sa.String(255)),
        sa.Column("meta", sa.Text),
        *_timestamps(),
    )
    op.create_index("ix_flowdetails_parent_uuid", "flowdetails", ["parent_uuid"])
    op.create_table(
        "atomdetails",
        sa.Column("uuid", sa.String(64), primary_key=True),
        sa.Column(
            "parent_uuid",
            sa.String(64),
            sa.ForeignKey("flowdetails.uuid", ondelete="CASCADE", name="fk_atomdetails_parent_uuid"),
            nullable=False,
        ),
        sa.Column("atom_type", sa.String(32), nullable=False),
        sa.Column("name", sa.String(255)),
        sa.Column("state", sa.String(255)),
        sa.Column("intention", sa.String(32)),
        sa.Column("version", sa.String(64)),
        sa.Column("results", sa.Text),
        sa.Column("failure", sa.Text),
        sa.Column("revert_results", sa.Text),
        sa.Column("revert_failure", sa.Text),
        sa.Column("meta", sa.Text),
        *_timestamps(),
    )
    op.create_index("ix_atomdetails_parent_uuid", "atomdetails", ["parent_uuid"])


def downgrade() -> None:
    """Drop the tables, children first."""
    op.drop_index("ix_atomdetails_parent_uuid", table_name="atomdetails")
    op.drop_table("atomdetails")
    op.drop_index("ix_flowdetails_parent_uuid", table_name="flowdetails")
    op.drop_table("flowdetails")
    op.drop_table("logbooks")
