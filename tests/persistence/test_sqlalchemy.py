"""What the SQLAlchemy backend promises beyond the shared contract.

SQLite's durability settings, the schema revision checks (never upgraded,
newer than this flowkit), errors that name the URL with its password masked,
and retries of transient errors forced for real: another connection holding
SQLite's write lock, and PostgreSQL killing the backend's server process.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from flowkit import exceptions as exc
from flowkit.persistence import backends
from flowkit.persistence.backends import impl_sqlalchemy
from flowkit.persistence.backends.impl_sqlalchemy import SQLAlchemyBackend, SQLAlchemyConnection
from flowkit.persistence.backends.sqlalchemy import ALEMBIC_INI, HEAD, REVISIONS, tables
from flowkit.persistence.models import FlowDetail, LogBook, TaskDetail
from tests import services

RETRY_LOGGER = "flowkit.persistence.backends.impl_sqlalchemy"


def _book(atoms: int = 1) -> tuple[LogBook, FlowDetail]:
    book = LogBook("book")
    fd = FlowDetail("flow", str(uuid.uuid4()))
    for index in range(atoms):
        fd.add(TaskDetail(f"task-{index}", str(uuid.uuid4())))
    book.add(fd)
    return book, fd


def _connect(conf: dict[str, Any] | str) -> tuple[SQLAlchemyBackend, SQLAlchemyConnection]:
    backend = backends.fetch(conf)
    assert isinstance(backend, SQLAlchemyBackend)
    return backend, backend.get_connection()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/flows.db"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/flows.db"
    return str(request.getfixturevalue("postgresql_db_url"))


@pytest.fixture
def opened(db_url: str) -> Iterator[tuple[SQLAlchemyBackend, SQLAlchemyConnection]]:
    backend, conn = _connect(db_url)
    try:
        yield backend, conn
    finally:
        conn.close()
        backend.close()


def _set_revision(url: str, revision: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as raw:
            raw.execute(sa.text("UPDATE alembic_version SET version_num = :rev"), {"rev": revision})
    finally:
        engine.dispose()


class _RetrySeen(logging.Handler):
    """Sets an event when the backend announces a retry (so a lock holder can let go)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.event = threading.Event()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self.event.set()


@pytest.fixture
def retry_seen() -> Iterator[_RetrySeen]:
    handler = _RetrySeen()
    logger = logging.getLogger(RETRY_LOGGER)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


# -- SQLite settings -------------------------------------------------------------------


def _pragma(conn: SQLAlchemyConnection, name: str) -> Any:
    raw = conn.connect()
    value = raw.exec_driver_sql(f"PRAGMA {name}").scalar()
    raw.rollback()
    return value


def test_sqlite_file_uses_wal_journal_normal_sync_and_foreign_keys(sqlite_url: str) -> None:
    backend, conn = _connect(sqlite_url)
    with conn:
        conn.upgrade()
        assert _pragma(conn, "journal_mode") == "wal"
        assert _pragma(conn, "synchronous") == 1  # NORMAL
        assert _pragma(conn, "foreign_keys") == 1
    backend.close()
    path = sqlite_url.removeprefix("sqlite:///")
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_sqlite_synchronous_full_can_be_asked_for_in_the_url_query(sqlite_url: str) -> None:
    backend, conn = _connect(f"{sqlite_url}?sqlite_synchronous=full&max_retries=1")
    with conn:
        conn.upgrade()
        assert _pragma(conn, "synchronous") == 2  # FULL
    assert backend.max_retries == 1
    backend.close()


def test_unknown_sqlite_synchronous_value_is_refused(sqlite_url: str) -> None:
    with pytest.raises(exc.StorageFailure, match="sqlite_synchronous"):
        backends.fetch({"connection": sqlite_url, "sqlite_synchronous": "sometimes"})


def test_in_memory_sqlite_is_one_database_for_every_connection() -> None:
    backend = backends.fetch("sqlite://")
    book, _ = _book()
    with backend.get_connection() as first:
        first.upgrade()
        first.save_logbook(book)
    with backend.get_connection() as second:
        assert second.get_logbook(book.uuid).name == "book"
    backend.close()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///{tmp}/pooled.db"])
def test_pool_sizing_options_are_ignored_by_sqlite(url: str, tmp_path: Path) -> None:
    # One conf for SQLite in tests and a server in production, as TaskFlow allows.
    conf = {"connection": url.format(tmp=tmp_path), "pool_size": 5, "max_overflow": 2, "pool_timeout": 3}
    backend = backends.fetch(conf)
    with backend.get_connection() as conn:
        conn.upgrade()
        assert list(conn.get_logbooks()) == []
    backend.close()


def test_cascade_removes_children_when_a_book_row_is_deleted(sqlite_url: str) -> None:
    backend, conn = _connect(sqlite_url)
    with conn:
        conn.upgrade()
        book, fd = _book(atoms=2)
        conn.save_logbook(book)
        raw = conn.connect()
        with raw.begin():
            raw.execute(tables.logbooks.delete())
        with pytest.raises(exc.NotFound):
            conn.get_flow_details(fd.uuid)
        assert raw.execute(sa.select(sa.func.count()).select_from(tables.atomdetails)).scalar() == 0
        raw.rollback()
    backend.close()


# -- schema revisions ------------------------------------------------------------------


def test_known_revisions_are_exactly_the_shipped_migrations() -> None:
    script = ScriptDirectory.from_config(Config(str(ALEMBIC_INI)))
    assert script.get_heads() == [HEAD]
    walked = [rev.revision for rev in script.walk_revisions()]
    assert tuple(reversed(walked)) == REVISIONS


def test_upgraded_schema_matches_the_table_definitions(
    opened: tuple[SQLAlchemyBackend, SQLAlchemyConnection],
) -> None:
    _, conn = opened
    conn.upgrade()
    raw = conn.connect()
    differences = compare_metadata(MigrationContext.configure(raw), tables.metadata)
    raw.rollback()
    assert differences == []


def test_upgrade_twice_is_harmless_and_records_the_head_revision(
    opened: tuple[SQLAlchemyBackend, SQLAlchemyConnection],
) -> None:
    _, conn = opened
    assert conn.current_revision() is None
    conn.upgrade()
    conn.upgrade()
    conn.validate()
    assert conn.current_revision() == HEAD


def test_validate_of_a_never_upgraded_database_says_to_run_db_upgrade(
    opened: tuple[SQLAlchemyBackend, SQLAlchemyConnection],
) -> None:
    _, conn = opened
    with pytest.raises(exc.StorageFailure, match="flowkit db upgrade --connection"):
        conn.validate()


def test_first_use_of_a_never_upgraded_database_says_to_run_db_upgrade(
    opened: tuple[SQLAlchemyBackend, SQLAlchemyConnection],
) -> None:
    _, conn = opened
    with pytest.raises(exc.StorageFailure, match="flowkit db upgrade --connection"):
        conn.save_logbook(LogBook("book"))


def test_newer_schema_revision_is_refused_everywhere(db_url: str) -> None:
    backend, conn = _connect(db_url)
    with conn:
        conn.upgrade()
    backend.close()
    _set_revision(db_url, "9999")
    expected = f"schema revision 9999 is newer than this flowkit \\(knows up to {HEAD}\\)"
    backend, conn = _connect(db_url)
    with conn:
        with pytest.raises(exc.StorageFailure, match=expected):
            conn.validate()
        with pytest.raises(exc.StorageFailure, match=expected):
            conn.upgrade()
        with pytest.raises(exc.StorageFailure, match=expected):
            list(conn.get_logbooks())
    backend.close()


def test_concurrent_upgrades_of_a_fresh_database_both_succeed(db_url: str) -> None:
    backend = backends.fetch(db_url)
    errors: list[BaseException] = []

    def upgrade() -> None:
        try:
            with backend.get_connection() as conn:
                conn.upgrade()
        except BaseException as err:
            errors.append(err)

    workers = [threading.Thread(target=upgrade) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert errors == []
    with backend.get_connection() as conn:
        assert conn.current_revision() == HEAD
    backend.close()


# -- errors name the URL, never the password ------------------------------------------------


def test_unreachable_server_fails_naming_the_url_with_the_password_masked() -> None:
    port = services.free_port()
    url = f"postgresql://flowkit:hunter2@127.0.0.1:{port}/flows"
    backend = backends.fetch(url)
    with pytest.raises(exc.StorageFailure) as caught:
        backend.get_connection()
    message = str(caught.value)
    assert "hunter2" not in message
    assert f"postgresql://flowkit:***@127.0.0.1:{port}/flows" in message
    assert caught.value.__cause__ is not None


def test_malformed_url_fails_with_the_password_masked() -> None:
    with pytest.raises(exc.StorageFailure) as caught:
        backends.fetch({"connection": "postgresql://flowkit:hunter2@host:notaport/db"})
    assert "hunter2" not in str(caught.value)
    assert "***" in str(caught.value)


def test_plain_postgresql_scheme_uses_psycopg_3() -> None:
    backend = backends.fetch("postgresql://flowkit:pw@127.0.0.1/flows")
    assert isinstance(backend, SQLAlchemyBackend)
    assert backend.engine.dialect.driver == "psycopg"
    backend.close()


def test_taskflows_engine_option_names_are_honoured() -> None:
    # TaskFlow confs say max_pool_size, idle_timeout and echo; none may be dropped silently.
    conf = {"connection": "postgresql://flowkit:pw@127.0.0.1/flows?max_overflow=4&echo=true"}
    backend = backends.fetch({**conf, "max_pool_size": 7, "idle_timeout": 60})
    engine = backend.engine
    assert engine.pool.size() == 7  # type: ignore[attr-defined]
    assert engine.pool._max_overflow == 4  # type: ignore[attr-defined]
    assert engine.pool._recycle == 60
    assert engine.echo is True
    assert "max_overflow" not in engine.url.query and "echo" not in engine.url.query
    backend.close()


def test_unserializable_result_fails_naming_the_atom_and_writes_nothing(sqlite_url: str) -> None:
    backend, conn = _connect(sqlite_url)
    with conn:
        conn.upgrade()
        book, fd = _book()
        conn.save_logbook(book)
        bad = TaskDetail("bad-task", str(uuid.uuid4()))
        bad.results = object()
        fd.state = "RUNNING"
        with pytest.raises(exc.StorageFailure, match="bad-task"):
            conn.save_flow_progress(fd, [TaskDetail("ok", str(uuid.uuid4())), bad])
        stored = conn.get_flow_details(fd.uuid)
        assert stored.state is None
        assert len(stored) == 1
    backend.close()


def test_failed_batch_on_postgresql_leaves_flow_and_atoms_untouched(postgresql_db_url: str) -> None:
    backend, conn = _connect(postgresql_db_url)
    with conn:
        conn.upgrade()
        book, fd = _book()
        conn.save_logbook(book)
        fd.state = "RUNNING"
        too_long = TaskDetail("x" * (tables.NAME_LENGTH + 1), str(uuid.uuid4()))
        with pytest.raises(exc.StorageFailure, match=f"saving progress of flow detail '{fd.uuid}'"):
            conn.save_flow_progress(fd, [TaskDetail("ok", str(uuid.uuid4())), too_long])
        stored = conn.get_flow_details(fd.uuid)
        assert stored.state is None
        assert len(stored) == 1
    backend.close()


# -- transient errors are retried ---------------------------------------------------------


def _hold_write_lock(path: str, locked: threading.Event, release: Callable[[], bool]) -> threading.Thread:
    """Hold SQLite's exclusive lock on ``path`` from another connection until ``release()``."""

    def hold() -> None:
        raw = sqlite3.connect(path, isolation_level=None)
        try:
            raw.execute("BEGIN EXCLUSIVE")
            locked.set()
            release()
            raw.execute("ROLLBACK")
        finally:
            raw.close()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert locked.wait(10), "the lock holder never got the lock"
    return holder


def test_busy_sqlite_write_is_retried_once_the_other_writer_lets_go(
    sqlite_url: str, retry_seen: _RetrySeen
) -> None:
    backend, conn = _connect({"connection": sqlite_url, "sqlite_busy_timeout": 0.01, "max_retries": 8})
    with conn:
        conn.upgrade()
        book, _ = _book()
        holder = _hold_write_lock(
            sqlite_url.removeprefix("sqlite:///"), threading.Event(), lambda: retry_seen.event.wait(30)
        )
        saved = conn.save_logbook(book)  # blocked at first; goes through once the lock is released
        holder.join(10)
        assert saved.uuid == book.uuid
        assert any("database is locked" in message for message in retry_seen.messages)
        assert conn.get_logbook(book.uuid).uuid == book.uuid
    backend.close()


def test_sqlite_lock_held_past_every_retry_fails_with_the_cause_chained(sqlite_url: str) -> None:
    backend, conn = _connect({"connection": sqlite_url, "sqlite_busy_timeout": 0.01, "max_retries": 1})
    with conn:
        conn.upgrade()
        book, _ = _book()
        done = threading.Event()
        holder = _hold_write_lock(
            sqlite_url.removeprefix("sqlite:///"), threading.Event(), lambda: done.wait(30)
        )
        try:
            with pytest.raises(exc.StorageFailure) as caught:
                conn.save_logbook(book)
        finally:
            done.set()
            holder.join(10)
        message = str(caught.value)
        assert f"saving logbook '{book.uuid}'" in message
        assert sqlite_url in message
        assert "after 1 retries" in message
        assert "database is locked" in message
        assert isinstance(caught.value.__cause__, sa.exc.OperationalError)
        conn.save_logbook(book)  # usable again once the lock is gone
    backend.close()


def test_postgresql_connection_killed_by_the_server_is_replaced_and_the_call_succeeds(
    postgresql_db_url: str, retry_seen: _RetrySeen, wait_until: Callable[..., object]
) -> None:
    psycopg = pytest.importorskip("psycopg")
    backend, conn = _connect(postgresql_db_url)
    with conn:
        conn.upgrade()
        book, _ = _book()
        conn.save_logbook(book)
        raw = conn.connect()
        pid = raw.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        raw.rollback()
        admin_url = postgresql_db_url.replace("+psycopg", "")
        with psycopg.connect(admin_url, autocommit=True) as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
            wait_until(
                lambda: (
                    admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
                    == (0,)
                ),
                10,
            )
        assert conn.get_logbook(book.uuid).uuid == book.uuid
        assert retry_seen.messages, "the lost connection should have been retried"
        new_pid = conn.connect().exec_driver_sql("SELECT pg_backend_pid()").scalar()
        conn.connect().rollback()
        assert new_pid != pid
    backend.close()


def test_errors_that_are_not_transient_are_not_retried(sqlite_url: str, retry_seen: _RetrySeen) -> None:
    backend, conn = _connect(sqlite_url)
    with conn:
        conn.upgrade()
        raw = conn.connect()
        with raw.begin():
            raw.execute(sa.text("DROP TABLE atomdetails"))
        book, _ = _book()
        with pytest.raises(exc.StorageFailure, match="no such table"):
            conn.save_logbook(book)
    assert retry_seen.messages == []
    backend.close()


def test_backend_module_and_package_do_not_import_sqlalchemy_eagerly() -> None:
    import subprocess
    import sys

    code = (
        "import sys, flowkit.persistence.backends as b; "
        "b.fetch('memory://'); print('sqlalchemy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert impl_sqlalchemy.SQLAlchemyBackend is SQLAlchemyBackend
