"""The SQL cache store: one table, ``flowkit_cache``, in SQLite or PostgreSQL.

The table is part of the persistence schema (``tables.flowkit_cache``, created
by Alembic revision 0002 with ``flowkit db upgrade``), and the store also
creates it when it is opened on a database that lacks it, so a database can
hold only the cache; the revision then keeps the table it finds. Processes sharing the
database share the cache; SQLite serialises writers with its file lock.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from flowkit import exceptions as exc
from flowkit.cache._stores import CacheStore, Clock
from flowkit.persistence.backends.sqlalchemy import tables

__all__ = ["TABLE", "SqlStore"]

TABLE = tables.flowkit_cache

_DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg", "mysql": "mysql+pymysql"}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class SqlStore(CacheStore):
    """Entries in the ``flowkit_cache`` table of a SQL database."""

    def __init__(
        self, url: str, ttl: float | None = None, max_entries: int | None = None, clock: Clock = time.time
    ) -> None:
        super().__init__(ttl, max_entries, clock)
        scheme, sep, rest = url.partition("://")
        self.url = url
        driver_url = f"{_DRIVERS.get(scheme.lower(), scheme)}{sep}{rest}"
        try:
            self._engine = sa.create_engine(driver_url, future=True)
            if self._engine.dialect.name == "sqlite":
                # A cache entry can always be recomputed: WAL without a sync per
                # commit makes a write cost microseconds instead of an fsync.
                sa.event.listen(self._engine, "connect", _sqlite_pragmas)
            TABLE.create(self._engine, checkfirst=True)
        except (sa.exc.SQLAlchemyError, ImportError) as err:
            raise exc.StorageFailure(f"cannot open cache store {url}: {err}") from err

    def _get(self, key: str, now: float) -> str | None:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(TABLE.c.value, TABLE.c.expires).where(TABLE.c.key == key)).first()
        if row is None:
            return None
        if row.expires is not None and row.expires <= now:
            with self._engine.begin() as conn:
                conn.execute(sa.delete(TABLE).where(TABLE.c.key == key, TABLE.c.expires <= now))
            return None
        return str(row.value)

    def _put(self, key: str, text: str, now: float, expires: float | None) -> None:
        with self._engine.begin() as conn:
            # Delete then insert: portable, and atomic inside the transaction.
            conn.execute(sa.delete(TABLE).where(TABLE.c.key == key))
            conn.execute(sa.insert(TABLE).values(key=key, value=text, created=now, expires=expires))
            if self.max_entries is not None:
                count = conn.execute(sa.select(sa.func.count()).select_from(TABLE)).scalar_one()
                extra = count - self.max_entries
                if extra > 0:
                    oldest = sa.select(TABLE.c.key).order_by(TABLE.c.created).limit(extra).scalar_subquery()
                    conn.execute(sa.delete(TABLE).where(TABLE.c.key.in_(oldest)))

    def _entries(self, now: float) -> int:
        live = sa.or_(TABLE.c.expires.is_(None), TABLE.c.expires > now)
        with self._engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(TABLE).where(live)).scalar_one())

    def clear(self) -> int:
        with self._engine.begin() as conn:
            result: Any = conn.execute(sa.delete(TABLE))
            return int(result.rowcount)

    def close(self) -> None:
        self._engine.dispose()
