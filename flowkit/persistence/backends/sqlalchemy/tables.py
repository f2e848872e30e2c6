"""The tables the SQLAlchemy backend reads and writes (the current schema).

Three tables mirror the model tree: ``logbooks`` own ``flowdetails`` which own
``atomdetails``; deleting a parent cascades to its children in the database,
so destroying a logbook is one statement. Structured values (meta, results,
failures) are stored as JSON text encoded with the standard library: a plain
``Text`` column behaves the same on every database and costs nothing to bind.

Times are UTC. SQLite keeps no zone, so readers attach UTC to what comes back.

Migrations (``migrations/versions``) are frozen copies of this shape; a test
compares an upgraded database against these definitions.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Float, ForeignKey, Index, MetaData, String, Table, Text

__all__ = [
    "KIND_LENGTH",
    "NAME_LENGTH",
    "STATE_LENGTH",
    "UUID_LENGTH",
    "VERSION_LENGTH",
    "atomdetails",
    "flowdetails",
    "flowkit_cache",
    "logbooks",
    "metadata",
]

UUID_LENGTH = 64
NAME_LENGTH = 255
STATE_LENGTH = 255
KIND_LENGTH = 32
VERSION_LENGTH = 64

metadata = MetaData()

logbooks = Table(
    "logbooks",
    metadata,
    Column("uuid", String(UUID_LENGTH), primary_key=True),
    Column("name", String(NAME_LENGTH)),
    Column("meta", Text),
    Column("created_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True)),
)

flowdetails = Table(
    "flowdetails",
    metadata,
    Column("uuid", String(UUID_LENGTH), primary_key=True),
    Column(
        "parent_uuid",
        String(UUID_LENGTH),
        ForeignKey("logbooks.uuid", ondelete="CASCADE", name="fk_flowdetails_parent_uuid"),
        nullable=False,
    ),
    Column("name", String(NAME_LENGTH)),
    Column("state", String(STATE_LENGTH)),
    Column("meta", Text),
    Column("created_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True)),
    # The write fence (see ``Connection.fence_flow``): who alone may write the flow's progress.
    Column("fence_holder", String(UUID_LENGTH)),
    Column("fence_token", BigInteger),
    Index("ix_flowdetails_parent_uuid", "parent_uuid"),
)

atomdetails = Table(
    "atomdetails",
    metadata,
    Column("uuid", String(UUID_LENGTH), primary_key=True),
    Column(
        "parent_uuid",
        String(UUID_LENGTH),
        ForeignKey("flowdetails.uuid", ondelete="CASCADE", name="fk_atomdetails_parent_uuid"),
        nullable=False,
    ),
    Column("atom_type", String(KIND_LENGTH), nullable=False),
    Column("name", String(NAME_LENGTH)),
    Column("state", String(STATE_LENGTH)),
    Column("intention", String(KIND_LENGTH)),
    Column("version", String(VERSION_LENGTH)),
    Column("results", Text),
    Column("failure", Text),
    Column("revert_results", Text),
    Column("revert_failure", Text),
    Column("meta", Text),
    Column("created_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True)),
    Index("ix_atomdetails_parent_uuid", "parent_uuid"),
)

#: Results cached by input hash (:mod:`flowkit.cache`): key -> JSON text. The SQL
#: cache store reads and writes it; it creates it when missing, so a database
#: can hold only the cache.
flowkit_cache = Table(
    "flowkit_cache",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("created", Float, nullable=False),
    Column("expires", Float, nullable=True),
    Index("ix_flowkit_cache_created", "created"),
)
