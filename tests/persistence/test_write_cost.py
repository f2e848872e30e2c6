"""What a durable run costs the database per task: statements, transactions, round trips.

The engine writes once per task (the result of the task that finished and the
``RUNNING`` of the next, together). That write holds atom rows only, so it is
sent as one multi-row upsert committed on its own: on SQLite one statement and
no ``BEGIN``/``COMMIT`` around it, on PostgreSQL one round trip instead of
three. These tests count what reaches the database itself (SQLite's statement
trace, libpq's protocol trace), so they see writes made below SQLAlchemy too,
and they check the cheaper write fails, retries and reports as every other.
"""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from flowkit import engines, states, task
from flowkit import exceptions as exc
from flowkit.patterns import linear_flow
from flowkit.persistence import backends, models
from flowkit.persistence.backends.impl_sqlalchemy import SQLAlchemyBackend
from flowkit.persistence.base import FenceRefused, WriteFence

TASKS = 30
# Writes that are not a task's: the logbook and flow (load), the flow's RUNNING
# with the first atom's and its final state; each a transaction of a few statements.
SLACK = 12


class Step(task.Task):
    def execute(self, x: int) -> int:
        return x + 1


def _flow() -> linear_flow.Flow:
    return linear_flow.Flow("steps").add(
        *(Step(name=f"s{i}", provides=f"x{i + 1}", rebind={"x": f"x{i}"}) for i in range(TASKS))
    )


@contextlib.contextmanager
def _backend(url: str, **conf: Any) -> Iterator[SQLAlchemyBackend]:
    backend = backends.fetch({"connection": url, **conf})
    assert isinstance(backend, SQLAlchemyBackend)
    try:
        yield backend
    finally:
        backend.close()


def _upgrade(backend: SQLAlchemyBackend) -> None:
    with contextlib.closing(backend.get_connection()) as conn:
        conn.upgrade()


def _run(backend: SQLAlchemyBackend) -> None:
    engine = engines.load(_flow(), store={"x0": 0}, backend=backend, book=models.LogBook("b"))
    engine.run()
    assert engine.storage.fetch(f"x{TASKS}") == TASKS
    with contextlib.closing(backend.get_connection()) as conn:
        stored = conn.get_flow_details(engine.storage.flow_uuid)
    assert stored.state == states.SUCCESS
    assert sorted(ad.results for ad in stored) == list(range(1, TASKS + 1))


def _sqlite_trace(backend: SQLAlchemyBackend) -> list[str]:
    """Every statement SQLite runs on the backend's connections made from now on."""
    seen: list[str] = []

    def on_connect(dbapi_conn: sqlite3.Connection, record: Any) -> None:
        dbapi_conn.set_trace_callback(seen.append)

    event.listen(backend.engine, "connect", on_connect)
    return seen


def test_a_tasks_write_on_sqlite_is_one_statement_without_a_transaction_around_it(tmp_path: Path) -> None:
    with _backend(f"sqlite:///{tmp_path}/flows.db") as backend:
        seen = _sqlite_trace(backend)
        _upgrade(backend)
        seen.clear()
        _run(backend)
    writes = [s for s in seen if s.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]
    begins = [s for s in seen if s.lstrip().upper().startswith("BEGIN")]
    assert len(writes) <= TASKS + SLACK, writes
    # Before: BEGIN IMMEDIATE, the upsert and COMMIT for each task (about 3 per task).
    assert len(seen) <= TASKS + 2 * SLACK, seen
    assert len(begins) <= SLACK, begins


def test_a_tasks_write_on_postgresql_is_one_round_trip(postgresql_db_url: str) -> None:
    import psycopg

    with _backend(postgresql_db_url) as backend:
        _upgrade(backend)
        backend.close()  # drop the pooled connection: the run's is traced from its start
        with tempfile.TemporaryFile() as trace:

            def on_connect(dbapi_conn: psycopg.Connection[Any], record: Any) -> None:
                dbapi_conn.pgconn.trace(trace.fileno())
                dbapi_conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)

            event.listen(backend.engine, "connect", on_connect)
            _run(backend)
            backend.close()
            trace.seek(0)
            lines = trace.read().decode("utf-8", "replace").splitlines()
    # The client waits for the server once per ReadyForQuery: one per round trip.
    round_trips = sum(1 for line in lines if "\tReadyForQuery" in line)
    assert round_trips > 0, "libpq traced nothing"
    # Before: BEGIN, the upsert and COMMIT, three round trips per task.
    assert round_trips <= TASKS + 2 * SLACK, round_trips


def test_a_users_statement_listener_and_echo_see_every_write(tmp_path: Path) -> None:
    with _backend(f"sqlite:///{tmp_path}/flows.db") as backend:
        _upgrade(backend)
        seen: list[str] = []

        def before(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
            seen.append(statement)

        event.listen(backend.engine, "before_cursor_execute", before)
        assert backend.writes_alone() is False
        _run(backend)
    upserts = [s for s in seen if s.startswith("INSERT INTO atomdetails")]
    assert len(upserts) >= TASKS, "a task's write went past the user's before_cursor_execute listener"
    with _backend(f"sqlite:///{tmp_path}/echo.db", echo=True) as echoing:
        assert echoing.writes_alone() is False
    with _backend(f"sqlite:///{tmp_path}/quiet.db") as quiet:
        assert quiet.writes_alone() is True


def _flow_with_atom(conn: Any) -> tuple[models.FlowDetail, models.TaskDetail]:
    book = models.LogBook("b")
    fd = models.FlowDetail("f", "fd-" + book.uuid)
    ad = models.TaskDetail("a", "ad-" + book.uuid)
    fd.add(ad)
    book.add(fd)
    conn.save_logbook(book)
    return fd, ad


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_write_of_atoms_alone_to_an_unknown_flow_raises_not_found(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path}/flows.db" if kind == "sqlite" else request.getfixturevalue("postgresql_db_url")
    )
    with _backend(url) as backend:
        _upgrade(backend)
        with contextlib.closing(backend.get_connection()) as conn:
            ghost = models.FlowDetail("ghost", "ghost-flow-uuid")
            ad = models.TaskDetail("a", "ghost-atom-uuid")
            with pytest.raises(exc.NotFound, match="ghost-flow-uuid"):
                conn.save_flow_progress(ghost, [ad], flow_changed=False)
            with pytest.raises(exc.NotFound):
                conn.get_atom_details(ad.uuid)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_write_naming_one_atom_twice_keeps_the_last_as_a_transaction_does(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # save_flow_progress is public: a caller may hand the same atom detail twice.
    # One multi-row upsert cannot touch a row twice on PostgreSQL ("ON CONFLICT DO
    # UPDATE command cannot affect row a second time"), so such a write must take
    # the transaction path, where the later row wins.
    url = (
        f"sqlite:///{tmp_path}/flows.db" if kind == "sqlite" else request.getfixturevalue("postgresql_db_url")
    )
    with _backend(url) as backend:
        _upgrade(backend)
        with contextlib.closing(backend.get_connection()) as conn:
            book = models.LogBook("b")
            fd = models.FlowDetail("f", "twice-flow-uuid")
            book.add(fd)
            conn.save_logbook(book)
            first = models.TaskDetail("a", "twice-atom-uuid")
            first.state = states.RUNNING
            second = models.TaskDetail("a", "twice-atom-uuid")
            second.state = states.SUCCESS
            second.results = 7
            conn.save_flow_progress(fd, [first, second], flow_changed=False)
            stored = conn.get_atom_details("twice-atom-uuid")
            assert (stored.state, stored.results) == (states.SUCCESS, 7)


def test_a_write_of_atoms_alone_on_a_busy_sqlite_fails_naming_the_url(tmp_path: Path) -> None:
    path = tmp_path / "flows.db"
    with _backend(f"sqlite:///{path}", sqlite_busy_timeout=0, max_retries=0) as backend:
        _upgrade(backend)
        with contextlib.closing(backend.get_connection()) as conn:
            fd, ad = _flow_with_atom(conn)
            holder = sqlite3.connect(path, isolation_level=None)
            try:
                holder.execute("BEGIN IMMEDIATE")  # another writer holds the database
                ad.state = states.RUNNING
                with pytest.raises(exc.StorageFailure, match=r"flows\.db.*locked"):
                    conn.save_flow_progress(fd, [ad], flow_changed=False)
                holder.execute("ROLLBACK")
            finally:
                holder.close()
            conn.save_flow_progress(fd, [ad], flow_changed=False)  # the same write, once it is free
            assert conn.get_atom_details(ad.uuid).state == states.RUNNING


def test_a_write_of_atoms_alone_after_postgresql_dropped_the_connection_is_retried(
    postgresql_db_url: str,
) -> None:
    import psycopg

    with _backend(postgresql_db_url) as backend:
        _upgrade(backend)
        with contextlib.closing(backend.get_connection()) as conn:
            fd, ad = _flow_with_atom(conn)
            pid = conn.connect().connection.driver_connection.info.backend_pid  # type: ignore[union-attr]
            admin_url = postgresql_db_url.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            ad.state = states.SUCCESS
            ad.results = 42
            conn.save_flow_progress(fd, [ad], flow_changed=False)
            assert conn.get_atom_details(ad.uuid).results == 42


def _fenced_writes(conn: Any) -> tuple[models.FlowDetail, list[models.TaskDetail], WriteFence]:
    fd, first = _flow_with_atom(conn)
    second = models.TaskDetail("b", "b-" + fd.uuid)
    fence = WriteFence("job", 1)
    conn.fence_flow(fd.uuid, fence)
    return fd, [first, second], fence


def test_a_tasks_fenced_write_on_sqlite_is_one_statement(tmp_path: Path) -> None:
    with _backend(f"sqlite:///{tmp_path}/flows.db") as backend:
        seen = _sqlite_trace(backend)
        _upgrade(backend)
        with contextlib.closing(backend.get_connection()) as conn:
            fd, atoms, fence = _fenced_writes(conn)
            seen.clear()
            conn.save_flow_progress_fenced(fd, atoms, False, fence)
            # Before: BEGIN IMMEDIATE, the UPDATE holding the fence, the upsert per row, COMMIT.
            assert [s.split()[0].upper() for s in seen] == ["INSERT"], seen
            assert {ad.uuid for ad in conn.get_flow_details(fd.uuid)} == {ad.uuid for ad in atoms}
            with pytest.raises(FenceRefused):
                conn.save_flow_progress_fenced(fd, atoms, False, WriteFence("other-job", 1))
            with pytest.raises(exc.NotFound, match="no-such-flow"):
                conn.save_flow_progress_fenced(models.FlowDetail("x", "no-such-flow"), atoms, False, fence)


def test_a_tasks_fenced_write_on_postgresql_is_one_round_trip(postgresql_db_url: str) -> None:
    import psycopg

    with _backend(postgresql_db_url) as backend:
        _upgrade(backend)
        with contextlib.closing(backend.get_connection()) as conn, tempfile.TemporaryFile() as trace:
            fd, atoms, fence = _fenced_writes(conn)
            pgconn = conn.connect().connection.driver_connection.pgconn  # type: ignore[union-attr]
            pgconn.trace(trace.fileno())
            pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
            conn.save_flow_progress_fenced(fd, atoms, False, fence)
            pgconn.untrace()
            trace.seek(0)
            lines = trace.read().decode("utf-8", "replace").splitlines()
            # Before: BEGIN, the UPDATE holding the fence, the upsert and COMMIT: four.
            assert sum(1 for line in lines if "\tReadyForQuery" in line) == 1, lines
            assert {ad.uuid for ad in conn.get_flow_details(fd.uuid)} == {ad.uuid for ad in atoms}
            with pytest.raises(FenceRefused):
                conn.save_flow_progress_fenced(fd, atoms, False, WriteFence("other-job", 1))
