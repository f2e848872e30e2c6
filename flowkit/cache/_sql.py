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

What a call may wait: ``timeout`` seconds (the URL's ``?timeout=``, default
:data:`~flowkit.cache._stores.TIMEOUT`), so that a hung database costs a run
that long per call, as one that is down costs it a refused connection. On
SQLite that is the busy timeout, a wait for another process's write lock. On
PostgreSQL nothing the server or the kernel does bounds it: a stopped server
process (SIGSTOP, a frozen host) leaves its socket open and its kernel
acknowledging what is sent, so libpq's ``tcp_user_timeout`` and keepalives
never fire and ``statement_timeout`` never runs (a lookup was still waiting
after 90 s). A :class:`_Watchdog` thread shuts the connection's socket down
once a call has waited ``timeout``; the driver then fails the call as a
dropped connection, which the store throws away. Connecting is bounded by
libpq's ``connect_timeout`` (whole seconds, at least 2).
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
from typing import Any, NamedTuple

import sqlalchemy as sa

from flowkit import exceptions as exc
from flowkit.cache._stores import TIMEOUT, CacheStore, Clock
from flowkit.persistence.backends._urls import mask_url
from flowkit.persistence.backends.sqlalchemy import tables

__all__ = ["TABLE", "SqlStore"]

TABLE = tables.flowkit_cache

_DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg", "mysql": "mysql+pymysql"}


#: SQLite's result code for a database another connection holds locked (past the busy timeout).
_SQLITE_BUSY = 5


def _sqlite_pragmas(busy_ms: int) -> Any:
    """The connect hook of a SQLite store: WAL, no sync per commit, and its busy timeout.

    The busy timeout is how long a call waits for another process's write
    lock; it was 30 s, tried twice (60 s per write), with every lookup of the
    run queued behind it on the store's lock.
    """

    def pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.close()

    return pragmas


class _Watchdog:
    """Shuts a connection's socket down when a call on it has waited past its bound.

    One daemon thread per store, started at its first call, idle (no wake-up)
    while no call runs. A call costs two assignments under a lock, and a
    wake-up of the thread only when it was idle: calls in quick succession
    leave it asleep until the first one's deadline, when it looks again.
    The socket is a duplicate the store made when it opened the connection,
    so that the one shut down is that connection's even if the driver has
    closed its own descriptor meanwhile (a number the process may reuse).
    """

    def __init__(self, bound: float) -> None:
        self.bound = bound
        self._cond = threading.Condition(threading.Lock())
        #: The socket of the call in progress (None: no call) and when it is due.
        self._sock: socket.socket | None = None
        self._deadline = 0.0
        self._fired = False
        self._idle = False
        #: The running thread's token: it ends when this is no longer its own (None: no thread).
        self._token: object | None = None
        self._pid = 0

    def begin(self, sock: socket.socket) -> None:
        """A call on ``sock``'s connection starts now."""
        with self._cond:
            self._sock, self._deadline, self._fired = sock, time.monotonic() + self.bound, False
            # No thread yet, or none since the store was closed (a closed store
            # may be used again), or only the parent's after a fork.
            if self._token is None or self._pid != os.getpid():
                self._pid, self._token, self._idle = os.getpid(), object(), False
                threading.Thread(
                    target=self._watch, args=(self._token,), name="flowkit-cache-watch", daemon=True
                ).start()
            elif self._idle:
                self._cond.notify()

    def end(self) -> bool:
        """The call has ended; whether its socket was shut down because it waited too long."""
        with self._cond:
            self._sock = None
            return self._fired

    def close(self) -> None:
        """Let the thread end (the store is closed); the next call starts another."""
        with self._cond:
            self._token, self._sock = None, None
            self._cond.notify_all()

    def _watch(self, token: object) -> None:
        with self._cond:
            while self._token is token:
                if self._sock is None or self._fired:
                    self._idle = True
                    self._cond.wait()
                    self._idle = False
                    continue
                left = self._deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                self._fired = True
                with contextlib.suppress(OSError):  # already closed by the driver or the peer
                    self._sock.shutdown(socket.SHUT_RDWR)


def _socket_of(dbapi_connection: Any) -> socket.socket | None:
    """A duplicate of the connection's socket, if the driver tells which (psycopg, psycopg2: ``fileno()``)."""
    fileno = getattr(dbapi_connection, "fileno", None)
    if fileno is None:
        return None
    try:
        return socket.socket(fileno=os.dup(fileno()))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


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
    """Entries in the ``flowkit_cache`` table of a SQL database.

    Args:
        timeout: seconds one call (a lookup, a write) waits for the database:
            the busy timeout on SQLite, a watchdog on the connection's socket
            and libpq's ``connect_timeout`` on PostgreSQL (see the module).
    """

    def __init__(
        self,
        url: str,
        ttl: float | None = None,
        max_entries: int | None = None,
        clock: Clock = time.time,
        *,
        timeout: float = TIMEOUT,
    ) -> None:
        super().__init__(ttl, max_entries, clock)
        scheme, sep, rest = url.partition("://")
        self.url = url
        self.timeout = timeout
        self._watchdog: _Watchdog | None = None
        #: The duplicate of the kept connection's socket the watchdog shuts down.
        self._socket: socket.socket | None = None
        driver_url = f"{_DRIVERS.get(scheme.lower(), scheme)}{sep}{rest}"
        try:
            parsed = sa.engine.make_url(driver_url)
            connect_args: dict[str, Any] = {}
            if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
                # libpq takes whole seconds (psycopg waits 2 at least).
                connect_args["connect_timeout"] = max(1, math.ceil(timeout))
            self._engine = sa.create_engine(parsed, future=True, connect_args=connect_args)
            if self._engine.dialect.name == "sqlite":
                # A cache entry can always be recomputed: WAL without a sync per
                # commit makes a write cost microseconds instead of an fsync.
                sa.event.listen(self._engine, "connect", _sqlite_pragmas(max(1, int(timeout * 1000))))
            else:
                self._watchdog = _Watchdog(timeout)
            _create_table(self._engine)
        except (sa.exc.SQLAlchemyError, ImportError) as err:
            raise exc.quoting_cause(
                exc.StorageFailure(f"cannot open cache store {mask_url(url)}: {err}")
            ) from err
        self._sql = _Statements.for_dialect(self._engine.dialect)
        self._errors: type[BaseException] = self._engine.dialect.loaded_dbapi.Error
        self._lock = threading.Lock()
        #: The pooled connection the store keeps (None until first used, or after a failure).
        self._connection: Any = None

    def _run(self, what: str, work: Any, *, bounded: bool = True) -> Any:
        """Run ``work(cursor)`` on the store's connection; commit or roll back; return its answer.

        ``bounded=False`` leaves the call itself unwatched (connecting, and
        waiting for another thread's call, are still bounded): ``clear`` and
        the count of ``stats`` go over the whole table, which may take longer
        than a lookup's bound on a large one, and are asked for by a person.

        A connection kept from an earlier call that fails is tried once more on
        a new one: the database may have restarted since (an upgrade, a
        fail-over), which ends every connection it had, and a server that is
        back must not cost a lookup. Every statement is safe to run twice (a
        read, or a write of the same entry).

        A call that waited ``timeout`` (a hung server, a lock held elsewhere)
        is not tried again: the database is there but not answering, and a
        second try would double the wait. Nor does a call wait longer than
        ``timeout`` for another thread's call to leave the connection.

        Raises:
            StorageFailure: the database failed on a new connection too, or
                did not answer within ``timeout``; the connection is dropped
                and the next call opens a new one.
        """
        if not self._lock.acquire(timeout=self.timeout):
            raise self._failure(what, f"another call held the store's connection for over {self._bound}")
        try:
            kept = self._connection is not None
            try:
                return self._attempt(work, bounded)
            except _TimedOut as err:
                self._drop()
                raise self._failure(what, err) from err
            except (self._errors, sa.exc.SQLAlchemyError) as err:
                self._drop()
                if not kept:
                    raise self._failure(what, err) from err
            try:
                return self._attempt(work, bounded)
            except _TimedOut as err:
                self._drop()
                raise self._failure(what, err) from err
            except (self._errors, sa.exc.SQLAlchemyError) as err:
                self._drop()
                raise self._failure(what, err) from err
        finally:
            self._lock.release()

    @property
    def _bound(self) -> str:
        """The bound as the errors tell it, with the option that sets it."""
        return f"{self.timeout:g} s (the store URL's ?timeout=)"

    def _failure(self, what: str, err: BaseException | str) -> exc.StorageFailure:
        """The error of a call that failed with ``err``, which it quotes (the caller chains an exception)."""
        return exc.quoting_cause(
            exc.StorageFailure(f"cache store {mask_url(self.url)}: cannot {what}: {err}")
        )

    def _attempt(self, work: Any, bounded: bool) -> Any:
        """One try of :meth:`_run` (lock held): open a connection if none is kept, run, commit.

        Raises:
            _TimedOut: the database did not answer within ``timeout``.
        """
        if self._connection is None:
            self._connection = self._engine.raw_connection()
            if self._watchdog is not None:
                self._socket = _socket_of(self._connection.driver_connection)
        connection, watched = self._connection, self._socket
        watchdog = self._watchdog if bounded and watched is not None else None
        fired = False
        if watchdog is not None and watched is not None:
            watchdog.begin(watched)
        try:
            try:
                cursor = connection.cursor()
                try:
                    answer = work(cursor)
                finally:
                    cursor.close()
                connection.commit()
            finally:  # whatever ends the call, the watchdog must stop watching it
                if watchdog is not None:
                    fired = watchdog.end()
        except (self._errors, sa.exc.SQLAlchemyError) as err:
            if fired:
                raise _TimedOut(f"no answer within {self._bound}") from err
            if _busy(err):
                raise _TimedOut(f"the database stayed locked for {self._bound}: {err}") from err
            raise
        if fired:
            self._drop()  # answered as the watchdog shut its socket: useless now
        return answer

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        watched, self._socket = self._socket, None
        if watched is not None:
            watched.close()
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
            "count entries",
            lambda cursor: int(self._execute(cursor, sql.live, now=now).fetchone()[0]),
            bounded=False,
        )
        return count

    def clear(self) -> int:
        sql = self._sql
        removed: int = self._run(
            "clear", lambda cursor: int(self._execute(cursor, sql.clear).rowcount), bounded=False
        )
        return removed

    def close(self) -> None:
        with self._lock:
            connection, self._connection = self._connection, None
            watched, self._socket = self._socket, None
            if watched is not None:
                watched.close()
            if connection is not None:
                connection.close()
        if self._watchdog is not None:
            self._watchdog.close()
        self._engine.dispose()


class _TimedOut(Exception):
    """A call on the store's connection that did not end within the store's ``timeout``."""


def _busy(err: BaseException) -> bool:
    """Whether ``err`` is SQLite's "database is locked" after its busy timeout."""
    cause = getattr(err, "orig", err)
    return getattr(cause, "sqlite_errorcode", None) == _SQLITE_BUSY
