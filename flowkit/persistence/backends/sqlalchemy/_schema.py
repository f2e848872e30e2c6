"""Which schema revision a database is at, and bringing it to the newest.

Checking a revision is one small query and never loads Alembic (the known
revisions are listed in :mod:`flowkit.persistence.backends.sqlalchemy`), so a
backend can afford it on first use. Upgrading runs Alembic programmatically
on the caller's connection, inside the caller's transaction, with the
configuration shipped in the package: nothing is looked up from the cwd.
"""

from __future__ import annotations

from sqlalchemy import Connection, inspect, text

from flowkit import exceptions as exc
from flowkit.persistence.backends.sqlalchemy import ALEMBIC_INI, HEAD, REVISIONS

__all__ = ["check_revision", "current_revision", "upgrade"]

_VERSION_TABLE = "alembic_version"
# Any constant works: it only has to be the same in every flowkit process.
_PG_UPGRADE_LOCK = 0x666C6F776B6974  # "flowkit"


def current_revision(conn: Connection) -> str | None:
    """The Alembic revision of the database, ``None`` if it was never upgraded."""
    if not inspect(conn).has_table(_VERSION_TABLE):
        return None
    return conn.execute(text(f"SELECT version_num FROM {_VERSION_TABLE}")).scalar()


def _taskflow(masked_url: str) -> exc.StorageFailure:
    return exc.StorageFailure(
        f"database {masked_url} holds TaskFlow's schema, which flowkit neither reads nor changes "
        f"in place; copy its records into a new flowkit database with `flowkit db import-taskflow "
        f"--from {masked_url} --connection NEW_URL` (see the migration guide, 'Your TaskFlow database')"
    )


def _refuse_taskflow(conn: Connection, masked_url: str) -> None:
    from flowkit.persistence.backends.sqlalchemy.from_taskflow import looks_like_taskflow

    if looks_like_taskflow(conn):
        raise _taskflow(masked_url)


def _newer(revision: str, masked_url: str) -> exc.StorageFailure:
    return exc.StorageFailure(
        f"database {masked_url}: schema revision {revision} is newer than this flowkit "
        f"(knows up to {HEAD}); upgrade flowkit to use it"
    )


def check_revision(conn: Connection, masked_url: str) -> str:
    """Make sure the database holds the schema this flowkit reads and writes.

    Returns:
        the revision (always :data:`HEAD`).

    Raises:
        StoreNotUpgraded: never upgraded (no flowkit schema at all).
        StorageFailure: behind, or newer than this flowkit; the message says what to run.
    """
    revision = current_revision(conn)
    if revision is None or revision not in REVISIONS:
        _refuse_taskflow(conn, masked_url)
    if revision is None:
        raise exc.StoreNotUpgraded(
            f"database {masked_url} has no flowkit schema; create it with "
            f"`flowkit db upgrade --connection URL` (or Connection.upgrade())",
            masked_url,
        )
    if revision not in REVISIONS:
        raise _newer(revision, masked_url)
    if revision != HEAD:
        raise exc.StorageFailure(
            f"database {masked_url}: schema revision {revision} is older than this flowkit needs "
            f"({HEAD}); run `flowkit db upgrade --connection URL`"
        )
    return revision


def upgrade(conn: Connection, masked_url: str) -> str:
    """Bring the schema to :data:`HEAD` inside the transaction open on ``conn``.

    Concurrent upgraders queue: SQLite's write lock (the caller began with
    ``BEGIN IMMEDIATE``) or a PostgreSQL advisory lock serialises them, and
    the ones that come later find the work done.

    Returns:
        the revision the database is at afterwards.

    Raises:
        StorageFailure: the database's revision is newer than this flowkit, or
            it holds TaskFlow's schema (left untouched: see ``flowkit db import-taskflow``).
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_UPGRADE_LOCK})
    revision = current_revision(conn)
    if revision == HEAD:
        return revision
    if revision is None or revision not in REVISIONS:
        _refuse_taskflow(conn, masked_url)
    if revision is not None and revision not in REVISIONS:
        raise _newer(revision, masked_url)

    from alembic import command
    from alembic.config import Config

    config = Config(str(ALEMBIC_INI))
    config.attributes["connection"] = conn
    command.upgrade(config, HEAD)
    return HEAD
