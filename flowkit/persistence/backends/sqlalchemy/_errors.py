"""Telling transient database errors from real ones, and describing them briefly.

A transient error is one the same operation may well not meet again: a lost
connection, SQLite busy with another writer, a PostgreSQL serialization
failure or deadlock, or two writers racing to insert the same new record (the
retry then finds it and merges). Everything else fails at once.
"""

from __future__ import annotations

import logging

import tenacity
from sqlalchemy import exc as sa_exc

__all__ = ["describe", "is_transient", "log_retry"]

LOG = logging.getLogger("flowkit.persistence.backends.impl_sqlalchemy")

_SQLITE_BUSY = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED (primary result codes)
# PostgreSQL SQLSTATEs: serialization failure, deadlock, unique violation; class 08 is
# "connection exception" and 57P01-57P03 an administrator or crash shutdown.
_PG_RETRY = frozenset({"40001", "40P01", "23505", "57P01", "57P02", "57P03"})
# MySQL: server gone / lost connection, deadlock, lock wait timeout, duplicate key.
_MYSQL_RETRY = frozenset({2006, 2013, 1213, 1205, 1062})


def is_transient(error: BaseException) -> bool:
    """Whether trying the same operation again may well succeed."""
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, sa_exc.DisconnectionError | sa_exc.TimeoutError):
        return True
    orig = getattr(error, "orig", None)
    if orig is None:
        return False
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _SQLITE_BUSY
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate is not None:
        return sqlstate in _PG_RETRY or str(sqlstate).startswith("08")
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):
        return args[0] in _MYSQL_RETRY
    text = str(orig).lower()
    return "database is locked" in text or "server closed the connection" in text


def describe(error: BaseException) -> str:
    """The driver's message of ``error`` on one line, without SQL or parameters."""
    cause = getattr(error, "orig", None) or error
    return " ".join(str(cause).split()) or type(cause).__name__


def log_retry(retry_state: tenacity.RetryCallState) -> None:
    """Log, before sleeping, that an operation met a transient error and will run again."""
    outcome = retry_state.outcome
    error = outcome.exception() if outcome is not None else None
    action = retry_state.next_action
    LOG.warning(
        "transient database error (%s); attempt %d in %.2fs",
        describe(error) if error is not None else "unknown",
        retry_state.attempt_number + 1,
        action.sleep if action is not None else 0.0,
    )
