"""Write fences on PostgreSQL: a fence moved while a fenced write is under way waits for it.

A fenced write that also changes the flow is a transaction whose first
statement "updates" the fence to itself, which matches only while the fence
is the writer's and takes the row's write lock until the write commits. A
fenced write of atom rows alone (a task's, under a conductor) is one
statement whose rows are selected only while the flow row holds the
writer's fence, locked ``FOR SHARE`` until it commits. Either way a
conductor taking the fence over (a later claim of the job) waits for that
write, then reads it; the old holder's next write is refused. Safe by
design: these force the interleaving (the fence taken while the write is
past its check) and watch PostgreSQL make the taker wait.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from flowkit import states
from flowkit.persistence import backends
from flowkit.persistence.backends.impl_sqlalchemy import SQLAlchemyBackend, SQLAlchemyConnection
from flowkit.persistence.base import FenceRefused, WriteFence
from flowkit.persistence.models import FlowDetail, LogBook, TaskDetail
from tests.conftest import wait_until


def _connect(url: str) -> tuple[SQLAlchemyBackend, SQLAlchemyConnection]:
    backend = backends.fetch({"connection": url})
    assert isinstance(backend, SQLAlchemyBackend)
    return backend, backend.get_connection()


def _task(name: str) -> TaskDetail:
    detail = TaskDetail(name, str(uuid.uuid4()))
    detail.state = states.SUCCESS
    return detail


def test_a_fence_taken_during_a_fenced_write_waits_for_it_and_reads_it(
    postgresql_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow_changed = True  # a transaction of several statements (see the next test for one)
    writer_backend, writer = _connect(postgresql_db_url)
    taker_backend, taker = _connect(postgresql_db_url)
    observer = sa.create_engine(writer_backend.engine.url)
    try:
        writer.upgrade()
        book, fd = LogBook("book"), FlowDetail("flow", str(uuid.uuid4()))
        book.add(fd)
        writer.save_logbook(book)
        old, new = WriteFence("job-1", 1), WriteFence("job-1", 2)
        writer.fence_flow(fd.uuid, old)
        raw = taker.connect()
        taker_pid = raw.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        raw.commit()

        def taker_waits_on_a_lock() -> bool:
            with observer.connect() as watch:
                kind = watch.execute(
                    sa.text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"),
                    {"pid": taker_pid},
                ).scalar()
            return kind == "Lock"

        taken: list[Any] = []
        threads: list[threading.Thread] = []
        progress = writer_backend.progress_writer()
        upsert = progress.upsert_atoms

        def fence_moves_now(conn: Any, rows: Any) -> None:
            # Inside the fenced write's transaction, past its fence check.
            thread = threading.Thread(
                target=lambda: taken.append(taker.fence_flow(fd.uuid, new)), daemon=True
            )
            thread.start()
            threads.append(thread)
            wait_until(lambda: taker_waits_on_a_lock() or taken, timeout=10)
            assert not taken, "the fence moved while a fenced write held it"
            upsert(conn, rows)

        monkeypatch.setattr(progress, "upsert_atoms", fence_moves_now)
        late = _task("late")
        writer.save_flow_progress_fenced(fd, [late], flow_changed, old)
        monkeypatch.undo()
        [thread] = threads
        thread.join(10)
        [seen] = taken
        assert late.uuid in {ad.uuid for ad in seen}, "the new holder did not read the write it waited for"
        with pytest.raises(FenceRefused):
            writer.save_flow_progress_fenced(fd, [_task("later")], flow_changed, old)
    finally:
        writer.close()
        taker.close()
        writer_backend.close()
        taker_backend.close()
        observer.dispose()


def _waits_on_a_lock(observer: sa.Engine, pid: int) -> bool:
    with observer.connect() as watch:
        kind = watch.execute(
            sa.text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
        ).scalar()
    return bool(kind == "Lock")


def test_a_fence_taken_during_a_one_statement_fenced_write_waits_for_it_and_reads_it(
    postgresql_db_url: str,
) -> None:
    import psycopg

    writer_backend, writer = _connect(postgresql_db_url)
    taker_backend, taker = _connect(postgresql_db_url)
    observer = sa.create_engine(writer_backend.engine.url)
    blocker = psycopg.connect(postgresql_db_url.replace("postgresql+psycopg://", "postgresql://"))
    threads: list[threading.Thread] = []
    try:
        writer.upgrade()
        book, fd = LogBook("book"), FlowDetail("flow", str(uuid.uuid4()))
        book.add(fd)
        writer.save_logbook(book)
        old, new = WriteFence("job-1", 1), WriteFence("job-1", 2)
        writer.fence_flow(fd.uuid, old)
        late = _task("late")
        writer.save_flow_progress_fenced(fd, [late], False, old)
        writer_pid = writer.connect().connection.driver_connection.info.backend_pid  # type: ignore[union-attr]
        taker_pid = taker.connect().connection.driver_connection.info.backend_pid  # type: ignore[union-attr]
        assert writer_backend.writes_alone()

        # Hold the atom's row, so the writer's statement stops past its fence check
        # (the flow row locked FOR SHARE), waiting to overwrite the atom.
        blocker.execute("SELECT 1 FROM atomdetails WHERE uuid = %s FOR UPDATE", (late.uuid,))
        late.results = "written while the fence was held"
        done: list[BaseException | None] = []

        def write() -> None:
            try:
                writer.save_flow_progress_fenced(fd, [late], False, old)
                done.append(None)
            except BaseException as err:  # handed to the test thread
                done.append(err)

        threads.append(threading.Thread(target=write, daemon=True))
        threads[-1].start()
        wait_until(lambda: _waits_on_a_lock(observer, writer_pid) or done, timeout=10)
        assert not done, f"the fenced write did not wait for the atom's row: {done}"
        taken: list[Any] = []
        threads.append(
            threading.Thread(target=lambda: taken.append(taker.fence_flow(fd.uuid, new)), daemon=True)
        )
        threads[-1].start()
        wait_until(lambda: _waits_on_a_lock(observer, taker_pid) or taken, timeout=10)
        assert not taken, "the fence moved while a fenced write held it"
        blocker.rollback()
        for thread in threads:
            thread.join(10)
        assert done == [None]
        [seen] = taken
        stored = {ad.uuid: ad for ad in seen}
        assert stored[late.uuid].results == "written while the fence was held", (
            "the taker did not read the write"
        )
        with pytest.raises(FenceRefused):
            writer.save_flow_progress_fenced(fd, [_task("later")], False, old)
    finally:
        blocker.close()
        writer.close()
        taker.close()
        writer_backend.close()
        taker_backend.close()
        observer.dispose()
