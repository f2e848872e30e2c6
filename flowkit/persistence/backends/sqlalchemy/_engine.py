"""Making the SQLAlchemy engine from a backend's conf: driver, pool, SQLite pragmas.

SQLite gets the WAL journal (readers never block the writer and a commit is
one append), ``synchronous=NORMAL`` unless asked for ``FULL``, a busy
timeout, and foreign keys. flowkit issues ``BEGIN`` itself (the sqlite3
module would start transactions only at the first write, too late for a
consistent read-then-write), as ``BEGIN IMMEDIATE`` for writes so writers
queue on the busy timeout instead of failing half way through.

A backend that is not writable refuses writes before any I/O; the engine
made for it is read-only on the database's side too, so that a write through
a path flowkit forgot, or made on the backend's engine by hand, is refused by
the database: SQLite's ``query_only`` pragma (besides ``mode=ro`` for a
file), PostgreSQL's read-only transactions (the dialect's
``postgresql_readonly``). An engine the user hands in is theirs and left as
it is.
"""

from __future__ import annotations

import os
import pathlib
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool

from flowkit import exceptions as exc
from flowkit.persistence.backends._urls import conf_bool, conf_float, mask_url

__all__ = [
    "IDLE_TIMEOUT",
    "TASKFLOW_ISOLATION_LEVELS",
    "Settings",
    "has_user_hooks",
    "isolation_level",
    "make_engine",
    "missing_sqlite_file",
    "read_settings",
    "sqlite_file",
]

# Engine options read from the conf under TaskFlow's names (and flowkit's
# own pool_size), mapped to create_engine()'s arguments.
_POOL_OPTIONS = {
    "max_pool_size": "pool_size",
    "pool_size": "pool_size",
    "max_overflow": "max_overflow",
    "pool_timeout": "pool_timeout",
}
# Options flowkit reads; removed from the URL query before the driver sees it.
_OPTIONS = frozenset(
    {
        "max_retries",
        "sqlite_synchronous",
        "sqlite_busy_timeout",
        "engine_args",
        "idle_timeout",
        "echo",
        "writable",
        "isolation_level",
        "isolation_levels",
    }
    | set(_POOL_OPTIONS)
)
_DEFAULT_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
}
# TaskFlow's isolation levels by driver: READ COMMITTED on the servers (PostgreSQL's
# default anyway, and MySQL's REPEATABLE READ would read stale rows in a transaction),
# set explicitly so a server or database configured otherwise does not change them.
TASKFLOW_ISOLATION_LEVELS: Mapping[str, str] = {
    "mysql": "READ COMMITTED",
    "postgresql": "READ COMMITTED",
    "postgres": "READ COMMITTED",
}
# TaskFlow's idle_timeout when none is given: a pooled server connection is
# replaced after an hour, before a server or firewall drops it as idle.
IDLE_TIMEOUT = 3600
_EXTRAS = {"postgresql": "flowkit[postgresql]", "mysql": "flowkit[mysql]"}
_SYNCHRONOUS = frozenset({"off", "normal", "full", "extra"})
# conn.info key telling the begin event that the transaction will write.
WRITE_FLAG = "flowkit_write"


@dataclass(frozen=True, slots=True)
class Settings:
    """What a backend's conf says about its database."""

    url: URL
    masked_url: str
    max_retries: int
    busy_timeout: float
    synchronous: str
    engine_args: Mapping[str, Any]
    #: The transaction isolation level to ask for (None: the driver's own).
    isolation_level: str | None

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    @property
    def is_memory(self) -> bool:
        """An in-memory SQLite database (one connection holds it all)."""
        database = self.url.database or ""
        return self.dialect == "sqlite" and (
            database in ("", ":memory:") or self.url.query.get("mode") == "memory"
        )


def read_settings(conf: Mapping[str, Any], connection: Any) -> Settings:
    """Check and collect the options of ``conf`` for the database URL ``connection``.

    Raises:
        StorageFailure: the URL is malformed or an option is invalid (password masked).
    """
    masked = mask_url(connection)
    try:
        url = make_url(str(connection))
    except (sa_exc.ArgumentError, ValueError) as err:
        raise exc.quoting_cause(exc.StorageFailure(f"malformed database URL {masked!r}: {err}")) from err
    # TaskFlow matches isolation_levels against the driver name as written.
    level = isolation_level(conf, url.drivername, masked)
    drivername = _DEFAULT_DRIVERS.get(url.drivername, url.drivername)
    url = url.set(drivername=drivername).difference_update_query(_OPTIONS)
    synchronous = str(conf.get("sqlite_synchronous", "normal")).strip().lower()
    if synchronous not in _SYNCHRONOUS:
        raise exc.StorageFailure(
            f"sqlite_synchronous must be one of {', '.join(sorted(_SYNCHRONOUS))}, not {synchronous!r}"
        )
    engine_args = conf.get("engine_args") or {}
    if not isinstance(engine_args, Mapping):
        raise exc.StorageFailure(f"engine_args must be a mapping, not {type(engine_args).__name__}")
    return Settings(
        url=url,
        masked_url=masked,
        max_retries=int(conf_float(conf, "max_retries", 3)),
        busy_timeout=conf_float(conf, "sqlite_busy_timeout", 5.0),
        synchronous=synchronous,
        engine_args=dict(engine_args),
        isolation_level=level,
    )


def sqlite_file(settings: Settings) -> str | None:
    """The path of the SQLite file ``settings`` name, as given; None for any other database.

    None too for an in-memory database and for a URL already in SQLite's URI
    form (``?uri=true``), whose options are the user's to choose.
    """
    url = settings.url
    if settings.dialect != "sqlite" or settings.is_memory or "uri" in url.query:
        return None
    return url.database or None


def missing_sqlite_file(settings: Settings) -> exc.StoreMissing | None:
    """The error of a backend not writable whose SQLite file does not exist (None: it does, or no file).

    Checked before connecting: SQLite makes a file that is not there when it
    opens it for writing, and says only "unable to open database file" when
    it opens it read-only.
    """
    path = sqlite_file(settings)
    if path is None:
        return None
    absolute = os.path.abspath(path)
    if os.path.isfile(absolute):
        return None
    shown = repr(path) if absolute == path else f"{path!r} ({absolute})"
    return exc.StoreMissing(f"no SQLite database at {shown}: the file does not exist", settings.masked_url)


def _read_only_sqlite(settings: Settings, kwargs: dict[str, Any]) -> None:
    """Open the SQLite database of ``settings`` read-only: it is neither created nor written.

    A file is opened as the URI ``file:...?mode=ro``; a URL in URI form
    gets ``mode=ro`` unless it chose a mode itself.
    """
    path = sqlite_file(settings)
    if path is None:
        return
    uri = pathlib.Path(os.path.abspath(path)).as_uri() + "?mode=ro"
    timeout = settings.busy_timeout

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=timeout)

    kwargs["creator"] = connect


def make_engine(settings: Settings, conf: Mapping[str, Any], writable: bool = True) -> Engine:
    """A new engine for ``settings`` (no connection is opened yet).

    Args:
        settings: what the conf says about the database.
        conf: the backend's conf (engine and pool options).
        writable: false to open a SQLite database read-only (``mode=ro``,
            so that a missing file is not created, and ``query_only``) and
            to make PostgreSQL's transactions read-only by default (other
            databases are only read by the operations of a backend that is
            not writable).

    Raises:
        StorageFailure: the driver is not installed or an engine option is wrong.
    """
    kwargs: dict[str, Any] = {}
    sqlite = settings.dialect == "sqlite"
    url = settings.url
    # Pool sizing means nothing to SQLite (and its in-memory StaticPool refuses
    # it); as in TaskFlow it is ignored there, so one conf serves SQLite and a server.
    if not sqlite:
        for key, arg in _POOL_OPTIONS.items():
            if key in conf:
                kwargs[arg] = int(conf_float(conf, key, 0))
    # TaskFlow's idle_timeout (seconds before a pooled connection is replaced) and echo.
    # Its hour-long default is for servers: an in-memory SQLite database lives in its
    # one pooled connection, which recycling would replace by an empty one.
    if "idle_timeout" in conf or not sqlite:
        kwargs["pool_recycle"] = int(conf_float(conf, "idle_timeout", IDLE_TIMEOUT))
    if settings.isolation_level is not None:
        kwargs["isolation_level"] = settings.isolation_level
    if conf_bool(conf, "echo"):
        kwargs["echo"] = True
    if sqlite:
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": settings.busy_timeout}
        if settings.is_memory:
            kwargs["poolclass"] = StaticPool
        elif not writable:
            _read_only_sqlite(settings, kwargs)
            if "uri" in url.query and "mode" not in url.query:
                url = url.update_query_dict({"mode": "ro"})
    else:
        kwargs["pool_pre_ping"] = True
    kwargs.update(settings.engine_args)
    if not writable and settings.dialect == "postgresql":
        # The dialect's read-only transactions (psycopg: BEGIN READ ONLY), set on
        # each connection the pool hands out, not a session setting: behind a
        # transaction-pooling PgBouncer a session's SET would reach the server
        # connection other clients' writes share next.
        kwargs["execution_options"] = {**kwargs.get("execution_options", {}), "postgresql_readonly": True}
    try:
        engine = create_engine(url, **kwargs)
    except (ImportError, sa_exc.NoSuchModuleError) as err:
        extra = _EXTRAS.get(settings.dialect, "the database driver")
        raise exc.quoting_cause(
            exc.StorageFailure(
                f"cannot use {settings.masked_url}: driver {settings.url.drivername!r} is not installed "
                f"(pip install '{extra}'): {err}"
            )
        ) from err
    except (sa_exc.ArgumentError, TypeError, ValueError) as err:
        raise exc.quoting_cause(
            exc.StorageFailure(f"bad database options for {settings.masked_url}: {err}")
        ) from err
    if sqlite:
        event.listen(engine, "connect", _sqlite_pragmas(settings, writable))
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def isolation_level(conf: Mapping[str, Any], driver: str, masked_url: str) -> str | None:
    """The transaction isolation level TaskFlow's conf asks for on ``driver`` (None: the driver's own).

    ``isolation_level`` wins; else the level ``isolation_levels`` (by default
    :data:`TASKFLOW_ISOLATION_LEVELS`) gives the URL's driver name, an exact
    match first, then the first name found in it (``postgresql`` in
    ``postgresql+psycopg``), as TaskFlow reads them.

    Raises:
        StorageFailure: a level is not text, or ``isolation_levels`` is no mapping.
    """
    if "isolation_level" in conf:
        return _level(conf["isolation_level"], "isolation_level", masked_url)
    levels = conf.get("isolation_levels", TASKFLOW_ISOLATION_LEVELS)
    if not isinstance(levels, Mapping):
        raise exc.StorageFailure(
            f"isolation_levels of {masked_url} must be a mapping of driver names to levels, "
            f"not {type(levels).__name__}"
        )
    if driver in levels:
        return _level(levels[driver], f"isolation_levels[{driver!r}]", masked_url)
    for name, value in levels.items():
        if str(name) in driver:
            return _level(value, f"isolation_levels[{name!r}]", masked_url)
    return None


def _level(value: Any, option: str, masked_url: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise exc.StorageFailure(f"{option} of {masked_url} must be an isolation level name, not {value!r}")
    return value


_WAL = "PRAGMA journal_mode=WAL"


# Engine events that see statements or transactions: a listener of the user's on
# one of them must see the engine's writes too.
_STATEMENT_EVENTS = (
    "before_execute",
    "after_execute",
    "before_cursor_execute",
    "after_cursor_execute",
    "begin",
    "commit",
    "rollback",
    "handle_error",
)


def has_user_hooks(engine: Engine) -> bool:
    """Whether ``engine`` logs SQL (``echo``) or has a listener of its statements or transactions.

    Why: the engine's per-task write may skip SQLAlchemy's execution layer
    (see ``ProgressWriter.upsert_alone``), which neither logs nor fires
    events; it does so only while nobody is listening, so ``echo`` and a
    user's ``before_cursor_execute`` or ``commit`` listener see every write.
    flowkit's own SQLite ``begin`` listener does not count.
    """
    if engine.echo:
        return True
    dispatch = engine.dispatch
    for name in _STATEMENT_EVENTS:
        for listener in getattr(dispatch, name, ()):
            if listener is not _sqlite_begin:
                return True
    return False


def _sqlite_pragmas(settings: Settings, writable: bool) -> Any:
    pragmas = ["PRAGMA foreign_keys=ON", f"PRAGMA busy_timeout={int(settings.busy_timeout * 1000)}"]
    if not settings.is_memory:
        pragmas.append(_WAL)
    pragmas.append(f"PRAGMA synchronous={settings.synchronous.upper()}")
    if not writable:
        # Last: the connection refuses every write from here on, whatever mode it
        # was opened in (a URL in URI form may choose its own; memory has none).
        pragmas.append("PRAGMA query_only=ON")

    def on_connect(dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.isolation_level = None  # the begin event below issues BEGIN
        cursor = dbapi_conn.cursor()
        try:
            for pragma in pragmas:
                try:
                    cursor.execute(pragma)
                except sqlite3.OperationalError as err:
                    # A connection opened read-only (mode=ro: a backend not writable) cannot
                    # switch a file out of another journal mode; it reads the
                    # file in the mode it has, and the schema check says what the file is.
                    if pragma != _WAL or "readonly" not in str(err):
                        raise
        finally:
            cursor.close()

    return on_connect


def _sqlite_begin(conn: Connection) -> None:
    # Straight to the driver: this runs once per operation, and a full
    # SQLAlchemy execution would cost more than the hot path's own statement.
    # Errors (SQLite busy) surface from conn.begin() like any other.
    statement = "BEGIN IMMEDIATE" if conn.info.get(WRITE_FLAG) else "BEGIN"
    try:
        conn.connection.driver_connection.execute(statement)  # type: ignore[union-attr]
    except Exception as err:
        raise sa_exc.OperationalError(statement, None, err) from err
