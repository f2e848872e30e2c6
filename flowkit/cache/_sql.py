"""The SQL cache store: one table, ``flowkit_cache``, in SQLite or PostgreSQL.

The table is part of the persistence schema (``tables.flowkit_cache``, created
by Alembic revision 0002 with ``flowkit db upgrade``), and the store also
creates it when it is opened on a database that lacks it, so a database can
hold only the cache; the revision then keeps the table it finds. Processes sharing the
database share the cache; SQLite serialises writers with its file lock.

What a lookup costs: SQLAlchemy writes each statement once, in the database's
own dialect, when the store opens; lookups and writes then run those
statements on one database connection the store keeps (threads take turns
with it), through the driver directly. Building, compiling and caching a Core
statement per call, and a pool checkout and reset per call, cost ten times
the query itself on SQLite. Each write is still its own transaction,
committed before ``put`` returns, so another process sees an entry as soon as
the task that produced it has finished.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, NamedTuple

import sqlalchemy as sa

from flowkit import exceptions as exc
from flowkit.cache._stores import CacheStore, Clock
from flowkit.persistence.backends._urls import mask_url
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


class _Statement(NamedTuple):
    """A statement as the driver takes it: its SQL and how its parameters are passed."""

    sql: str
    #: Parameter names in the order of a positional paramstyle; None: by name.
    order: tuple[str, ...] | None
    #: Values of parameters the dialect added itself (SQLite's ``OFFSET 0``).
    fixed: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, statement: Any, dialect: Any, columns: list[str] | None = None) -> _Statement:
        compiled = statement.compile(dialect=dialect, column_keys=columns)
        order = compiled.positiontup
        fixed = tuple((name, value) for name, value in compiled.params.items() if value is not None)
        return cls(compiled.string, None if order is None else tuple(order), fixed)

    def params(self, values: dict[str, Any]) -> Any:
        if self.fixed:
            values = {**dict(self.fixed), **values}
        return values if self.order is None else tuple(values[name] for name in self.order)


class _Statements(NamedTuple):
    """Every statement the store runs, written once for its database."""

    get: _Statement
    expire: _Statement
    purge: _Statement
    delete: _Statement
    insert: _Statement
    size: _Statement
    evict: _Statement
    live: _Statement
    clear: _Statement
    #: ``insert`` replaces a row with the same key itself (no ``delete`` first).
    upserts: bool

    @classmethod
    def for_dialect(cls, dialect: Any) -> _Statements:
        key = TABLE.c.key
        insert, upserts = _insert_for(dialect)
        # The entry just written is never the one to go (rows skipped below, or
        # equal times, would make it the oldest left).
        oldest = (
            sa.select(key)
            .where(key != sa.bindparam("k"))
            .order_by(TABLE.c.created)
            .limit(sa.bindparam("extra", type_=sa.Integer))
        )
        if dialect.name == "postgresql":
            # Writers past the bound at once each chose the same oldest rows (and
            # rows another writer's upsert holds) and waited for one another's:
            # PostgreSQL found a deadlock and one write failed. Rows another
            # transaction holds are not evicted by this one; no eviction waits.
            oldest = oldest.with_for_update(skip_locked=True)
        live = sa.or_(TABLE.c.expires.is_(None), TABLE.c.expires > sa.bindparam("now"))
        return cls(
            get=_Statement.of(
                sa.select(TABLE.c.value, TABLE.c.expires).where(key == sa.bindparam("k")), dialect
            ),
            expire=_Statement.of(
                sa.delete(TABLE).where(key == sa.bindparam("k"), TABLE.c.expires <= sa.bindparam("now")),
                dialect,
            ),
            purge=_Statement.of(sa.delete(TABLE).where(TABLE.c.expires <= sa.bindparam("now")), dialect),
            delete=_Statement.of(sa.delete(TABLE).where(key == sa.bindparam("k")), dialect),
            insert=_Statement.of(insert, dialect, ["key", "value", "created", "expires"]),
            size=_Statement.of(sa.select(sa.func.count()).select_from(TABLE), dialect),
            evict=_Statement.of(sa.delete(TABLE).where(key.in_(oldest.scalar_subquery())), dialect),
            live=_Statement.of(sa.select(sa.func.count()).select_from(TABLE).where(live), dialect),
            clear=_Statement.of(sa.delete(TABLE), dialect),
            upserts=upserts,
        )


def _insert_for(dialect: Any) -> tuple[Any, bool]:
    """The insert of an entry, and whether it replaces a row of the same key itself.

    Two runs that miss the same key both write it. With a delete then an
    insert, the second writer's delete does not see the first's uncommitted
    row, and its insert then fails on the key once the first commits: the
    entry keeps the first value and the second run logs a failed write. An
    upsert makes the last write win, as the documentation says.
    """
    columns = ("value", "created", "expires")
    if dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        pg = postgresql.insert(TABLE)
        replace = {name: pg.excluded[name] for name in columns}
        return pg.on_conflict_do_update(index_elements=[TABLE.c.key], set_=replace), True
    if dialect.name == "sqlite":
        from sqlalchemy.dialects import sqlite

        lite = sqlite.insert(TABLE)
        replace = {name: lite.excluded[name] for name in columns}
        return lite.on_conflict_do_update(index_elements=[TABLE.c.key], set_=replace), True
    if dialect.name in ("mysql", "mariadb"):
        from sqlalchemy.dialects import mysql

        my = mysql.insert(TABLE)
        return my.on_duplicate_key_update({name: my.inserted[name] for name in columns}), True
    return sa.insert(TABLE), False


def _create_table(engine: Any) -> None:
    """Create the cache table unless it exists, also when another process creates it meanwhile.

    Two processes opening the store on a database without the table both find
    it missing and both create it: on PostgreSQL the second ``CREATE TABLE``
    waits for the first and then fails on the catalog's unique index, which
    failed that process's flow with "cannot open cache store". Finding the
    table there after the failure is success.
    """
    try:
        TABLE.create(engine, checkfirst=True)
    except sa.exc.SQLAlchemyError:
        if not sa.inspect(engine).has_table(TABLE.name):
            raise


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
            _create_table(self._engine)
        except (sa.exc.SQLAlchemyError, ImportError) as err:
            raise exc.StorageFailure(f"cannot open cache store {mask_url(url)}: {err}") from err
        self._sql = _Statements.for_dialect(self._engine.dialect)
        self._errors: type[BaseException] = self._engine.dialect.loaded_dbapi.Error
        self._lock = threading.Lock()
        #: The pooled connection the store keeps (None until first used, or after a failure).
        self._connection: Any = None

    def _run(self, what: str, work: Any) -> Any:
        """Run ``work(cursor)`` on the store's connection; commit or roll back; return its answer.

        A connection kept from an earlier call that fails is tried once more on
        a new one: the database may have restarted since (an upgrade, a
        fail-over), which ends every connection it had, and a server that is
        back must not cost a lookup. Every statement is safe to run twice (a
        read, or a write of the same entry).

        Raises:
            StorageFailure: the database failed on a new connection too; the
                connection is dropped and the next call opens a new one.
        """
        with self._lock:
            kept = self._connection is not None
            try:
                return self._attempt(work)
            except (self._errors, sa.exc.SQLAlchemyError) as err:
                self._drop()
                if not kept:
                    raise self._failure(what, err) from err
            try:
                return self._attempt(work)
            except (self._errors, sa.exc.SQLAlchemyError) as err:
                self._drop()
                raise self._failure(what, err) from err

    def _failure(self, what: str, err: BaseException) -> exc.StorageFailure:
        return exc.StorageFailure(f"cache store {mask_url(self.url)}: cannot {what}: {err}")

    def _attempt(self, work: Any) -> Any:
        """One try of :meth:`_run` (lock held): open a connection if none is kept, run, commit."""
        if self._connection is None:
            self._connection = self._engine.raw_connection()
        connection = self._connection
        cursor = connection.cursor()
        try:
            answer = work(cursor)
        finally:
            cursor.close()
        connection.commit()
        return answer

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):  # it is being thrown away
                connection.invalidate()

    def _execute(self, cursor: Any, statement: _Statement, **values: Any) -> Any:
        cursor.execute(statement.sql, statement.params(values))
        return cursor

    def _get(self, key: str, now: float) -> str | None:
        sql = self._sql

        def read(cursor: Any) -> str | None:
            row = self._execute(cursor, sql.get, k=key).fetchone()
            if row is None:
                return None
            value, expires = row
            if expires is not None and expires <= now:
                self._execute(cursor, sql.expire, k=key, now=now)
                return None
            return str(value)

        found: str | None = self._run("read an entry", read)
        return found

    def _put(self, key: str, text: str, now: float, expires: float | None) -> None:
        sql = self._sql

        def write(cursor: Any) -> None:
            if not sql.upserts:  # delete then insert: portable, atomic inside the transaction
                self._execute(cursor, sql.delete, k=key)
            self._execute(cursor, sql.insert, key=key, value=text, created=now, expires=expires)
            if self.max_entries is not None:
                count = int(self._execute(cursor, sql.size).fetchone()[0])
                extra = count - self.max_entries
                if extra > 0:
                    self._execute(cursor, sql.evict, extra=extra, k=key)

        self._run("write an entry", write)

    def _purge(self, now: float) -> None:
        sql = self._sql
        self._run("remove expired entries", lambda cursor: self._execute(cursor, sql.purge, now=now))

    def _delete(self, key: str) -> None:
        sql = self._sql
        self._run("remove an entry", lambda cursor: self._execute(cursor, sql.delete, k=key))

    def _entries(self, now: float) -> int:
        sql = self._sql
        count: int = self._run(
            "count entries", lambda cursor: int(self._execute(cursor, sql.live, now=now).fetchone()[0])
        )
        return count

    def clear(self) -> int:
        sql = self._sql
        removed: int = self._run("clear", lambda cursor: int(self._execute(cursor, sql.clear).rowcount))
        return removed

    def close(self) -> None:
        with self._lock:
            connection, self._connection = self._connection, None
            if connection is not None:
                connection.close()
        self._engine.dispose()
