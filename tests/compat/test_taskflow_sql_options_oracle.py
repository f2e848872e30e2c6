"""TaskFlow 6.5 as an oracle for how the SQL backend sets up its database engine.

TaskFlow's ``sqlalchemy`` backend runs PostgreSQL and MySQL transactions at
``READ COMMITTED`` unless its conf says otherwise (``isolation_level``, or a
driver-to-level map ``isolation_levels``), and replaces a pooled connection
after an hour (``idle_timeout``, 3600 s). Each case opens the same conf on
both libraries against a real database and compares what the database or the
pool was told.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

LIBRARIES = ("taskflow", "flowkit")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@contextlib.contextmanager
def _backend(root: str, conf: dict[str, Any]) -> Iterator[Any]:
    backends = importlib.import_module(f"{root}.persistence.backends")
    backend = backends.fetch(dict(conf))
    try:
        yield backend
    finally:
        backend.close()


def _isolation(root: str, conf: dict[str, Any]) -> str:
    """The isolation level a transaction on ``root``'s backend engine runs at."""
    with _backend(root, conf) as backend, backend.engine.connect() as conn:
        return str(conn.exec_driver_sql("SHOW transaction_isolation").scalar())


@pytest.fixture
def serializable_db_url(postgresql_db_url: str) -> str:
    """A database whose sessions default to SERIALIZABLE, as a DBA may set."""
    engine = sa.create_engine(postgresql_db_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            name = sa.make_url(postgresql_db_url).database
            conn.exec_driver_sql(f"ALTER DATABASE {name} SET default_transaction_isolation = 'serializable'")
    finally:
        engine.dispose()
    return postgresql_db_url


def test_postgresql_runs_at_read_committed_by_default_as_in_taskflow(serializable_db_url: str) -> None:
    # flowkit left the server's default in force, so the same conf ran its
    # transactions SERIALIZABLE where TaskFlow's ran READ COMMITTED.
    conf = {"connection": serializable_db_url}
    expected = _isolation("taskflow", conf)
    assert _isolation("flowkit", conf) == expected == "read committed"


@pytest.mark.parametrize(
    "extra",
    [
        {"isolation_level": "REPEATABLE READ"},
        {"isolation_levels": {"postgresql": "REPEATABLE READ"}},
        {"isolation_levels": {"mysql": "REPEATABLE READ"}},
        {"isolation_levels": {}},
    ],
    ids=["isolation_level", "isolation_levels", "isolation_levels_other_driver", "isolation_levels_empty"],
)
def test_isolation_options_are_taken_as_in_taskflow(serializable_db_url: str, extra: dict[str, Any]) -> None:
    # flowkit ignored both options without a word.
    conf = {"connection": serializable_db_url, **extra}
    expected = _isolation("taskflow", conf)
    assert _isolation("flowkit", conf) == expected


@pytest.mark.parametrize("extra", [{}, {"idle_timeout": 120}, {"idle_timeout": "90"}])
def test_pooled_connections_are_replaced_after_taskflows_idle_timeout(
    postgresql_db_url: str, extra: dict[str, Any]
) -> None:
    # flowkit kept pooled connections for ever unless idle_timeout was given.
    conf = {"connection": postgresql_db_url, **extra}
    recycles = []
    for root in LIBRARIES:
        with _backend(root, conf) as backend:
            recycles.append(backend.engine.pool._recycle)
    assert recycles[0] == recycles[1]


def test_a_bad_isolation_level_is_refused_naming_the_database(postgresql_db_url: str) -> None:
    from flowkit import exceptions
    from flowkit.persistence import backends

    conf = {"connection": postgresql_db_url, "isolation_level": 7}
    with pytest.raises(exceptions.StorageFailure, match="isolation_level") as caught:
        backends.fetch(conf)
    assert "flowkit_test_" in str(caught.value)
