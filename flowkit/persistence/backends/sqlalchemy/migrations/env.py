"""Alembic migration environment for flowkit's persistence schema.

flowkit calls Alembic with an open SQLAlchemy connection in
``config.attributes["connection"]``, already inside the transaction the
caller manages, and the migrations run on it. Run by hand (``alembic``
command, for developers), the database URL comes from ``-x url=...``.
Offline mode (``--sql``) prints the DDL for a URL's dialect.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from flowkit.persistence.backends.sqlalchemy import tables

config = context.config
target_metadata = tables.metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("give the database with: alembic -x url=DIALECT://... COMMAND")
    return url


def _migrate(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    """Run the migrations offline (print SQL) or online (on a connection)."""
    if context.is_offline_mode():
        context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    try:
        with engine.connect() as owned:
            _migrate(owned)
            owned.commit()
    finally:
        engine.dispose()


run()
