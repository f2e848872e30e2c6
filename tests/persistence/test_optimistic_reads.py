"""Reads of a flow that is written without pause, on ZooKeeper (the optimistic document store).

A reader checks, after loading a flow and its atoms, that nothing it read
changed meanwhile, and reads again if something did. A flow an engine writes
without pause can make every such read miss; a monitor polling it must still
get an answer, and a whole one. Here a writer (another backend, so another
ZooKeeper session) writes a progress batch right after *every* read of the
flow document, on a thread of its own: the reader must answer anyway (by
holding the writers off for one read), the writer must not fail for it, and
no write may be lost.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from flowkit import exceptions as exc
from flowkit import states
from flowkit.persistence import backends
from flowkit.persistence.backends._path_based import Read
from flowkit.persistence.base import Backend
from flowkit.persistence.models import FlowDetail, LogBook, TaskDetail
from tests import services

ATOMS = 8
#: Seconds a forced write gets to land (or to find the reader holding its flow); never reached.
WRITE_TIMEOUT = 30.0


@pytest.fixture
def two_backends(zookeeper_path_url: str) -> Iterator[tuple[Backend, Backend]]:
    services.require_module("kazoo", "kazoo")
    reader = backends.fetch({"connection": zookeeper_path_url})
    writer = backends.fetch({"connection": zookeeper_path_url})
    try:
        with reader.get_connection() as conn:
            conn.upgrade()
        yield reader, writer
    finally:
        reader.close()
        writer.close()


def _flow() -> tuple[LogBook, FlowDetail]:
    book, fd = LogBook("book"), FlowDetail("flow", str(uuid.uuid4()))
    fd.meta["counter"] = 0
    for a in range(ATOMS):
        ad = TaskDetail(f"atom-{a}", str(uuid.uuid4()))
        ad.state = states.SUCCESS
        ad.results = 0
        fd.add(ad)
    book.add(fd)
    return book, fd


class _WriterBetweenReads:
    """After each read of the flow document, one progress batch by ``writer``, landed or held off."""

    def __init__(self, writer: Backend, fd: FlowDetail, monkeypatch: pytest.MonkeyPatch) -> None:
        self.conn = writer.get_connection()
        self.fd = fd
        self.counter = 0
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []
        self.held_off = 0
        self._settled = threading.Semaphore(0)
        self._lock = threading.Lock()  # one batch at a time, in counter order
        store: Any = self.conn._store  # type: ignore[attr-defined]
        await_reader = getattr(store, "_await_reader", None)

        def held_off(path: str) -> None:
            self.held_off += 1
            self._settled.release()  # the reader goes on; this write lands once it is done
            assert await_reader is not None
            await_reader(path)

        monkeypatch.setattr(store, "_await_reader", held_off, raising=False)

    def _write(self, counter: int) -> None:
        try:
            with self._lock:
                self.fd.meta["counter"] = counter
                for ad in self.fd:
                    ad.results = counter
                self.conn.save_flow_progress(self.fd, list(self.fd), flow_changed=True)
        except BaseException as err:  # reported by the test
            self.errors.append(err)
        finally:
            self._settled.release()

    def after_read(self) -> None:
        self.counter += 1
        thread = threading.Thread(target=self._write, args=(self.counter,), daemon=True)
        self.threads.append(thread)
        thread.start()
        assert self._settled.acquire(timeout=WRITE_TIMEOUT), "the forced write neither landed nor waited"

    def finish(self) -> None:
        for thread in self.threads:
            thread.join(WRITE_TIMEOUT)
        self.conn.close()
        assert not self.errors, f"a writer failed: {self.errors[0]!r}"


def test_reader_of_a_flow_written_between_every_read_gets_a_whole_answer(
    two_backends: tuple[Backend, Backend], monkeypatch: pytest.MonkeyPatch
) -> None:
    reader, writer = two_backends
    book, fd = _flow()
    with reader.get_connection() as conn:
        conn.save_logbook(book)
        forced = _WriterBetweenReads(writer, conn.get_flow_details(fd.uuid), monkeypatch)
        store: Any = conn._store  # type: ignore[attr-defined]
        read_flow = store.read_flow

        def read_then_write(key: str) -> tuple[Read | None, Any]:
            found = read_flow(key)
            forced.after_read()  # lands before the atoms are read, unless held off
            return found

        monkeypatch.setattr(store, "read_flow", read_then_write)
        try:
            try:
                seen = conn.get_flow_details(fd.uuid)
            except exc.StorageFailure as failure:
                pytest.fail(f"the reader starved: {failure}")
            assert forced.held_off, "the writes were never held off, yet the read was whole?"
            counters = {ad.results for ad in seen} | {seen.meta["counter"]}
            assert len(counters) == 1, f"torn read: flow and atoms at {sorted(counters)}"
        finally:
            monkeypatch.setattr(store, "read_flow", read_flow)
            forced.finish()
        stored = conn.get_flow_details(fd.uuid)
    assert stored.meta["counter"] == forced.counter, "a write held off by the reader was lost"
    assert {ad.results for ad in stored} == {forced.counter}


def _take_hold(client: Any, hold: str) -> None:
    """Take a read hold as a reader in another process does (with ``client``'s session)."""
    txn = client.transaction()
    txn.create(hold, b"", ephemeral=True)
    txn.set_data(hold.rsplit("/", 1)[0], b"")
    assert not any(isinstance(result, Exception) for result in txn.commit())


def test_writer_waits_out_a_readers_hold_and_removes_one_held_too_long(
    two_backends: tuple[Backend, Backend],
    zookeeper_server: services.ZooKeeperServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A reader's hold stops writes until the read (or its session) ends; a frozen one only a while."""
    from kazoo.client import KazooClient  # type: ignore[import-untyped]

    _reader, writer = two_backends
    book, fd = _flow()
    with writer.get_connection() as conn:
        conn.save_logbook(book)
        store: Any = conn._store  # type: ignore[attr-defined]
        hold = store._hold_path(fd.uuid)
        frozen = KazooClient(hosts=zookeeper_server.hosts)
        frozen.start(timeout=WRITE_TIMEOUT)
        try:
            # A reader whose session ends while a write waits for its hold.
            _take_hold(frozen, hold)
            waiting = threading.Event()
            await_reader = store._await_reader

            def announced(path: str) -> None:
                waiting.set()
                await_reader(path)

            store._await_reader = announced
            done: list[BaseException | None] = []

            def write() -> None:
                try:
                    fd.meta["counter"] = 1
                    conn.save_flow_progress(fd, list(fd))
                    done.append(None)
                except BaseException as err:  # reported below
                    done.append(err)

            thread = threading.Thread(target=write, daemon=True)
            thread.start()
            assert waiting.wait(WRITE_TIMEOUT), "the write did not wait for the reader's hold"
            assert done == [], "the write landed while a reader held the flow"
            frozen.stop()  # the session ends: ZooKeeper deletes the ephemeral hold
            thread.join(WRITE_TIMEOUT)
            assert done == [None]
            assert conn.get_flow_details(fd.uuid).meta["counter"] == 1

            # A frozen reader (its session alive): its hold is removed after the patience.
            frozen.start(timeout=WRITE_TIMEOUT)
            _take_hold(frozen, hold)
            store._await_reader = await_reader
            store.reader_patience = 0.2
            fd.meta["counter"] = 2
            conn.save_flow_progress(fd, list(fd))
            assert frozen.exists(hold) is None
            assert f"held off the writers of flow {fd.uuid} for over 0.2s" in caplog.text
        finally:
            frozen.stop()
            frozen.close()
        assert conn.get_flow_details(fd.uuid).meta["counter"] == 2


def test_a_store_made_before_read_holds_existed_is_written_and_held(
    two_backends: tuple[Backend, Backend],
) -> None:
    """Without the ``readers`` folder (a store upgraded by an older flowkit) writes and holds make it."""
    from flowkit.persistence.backends.impl_zookeeper import READERS

    reader, _writer = two_backends
    book, fd = _flow()
    with reader.get_connection() as conn:
        store: Any = conn._store  # type: ignore[attr-defined]
        store._client.delete(store._path(READERS), recursive=True)
        conn.save_logbook(book)  # its transaction's hold check finds no folder, makes it, runs again
        store._client.delete(store._path(READERS), recursive=True)
        with store.excluding_writers([fd.uuid]):
            assert store._client.exists(store._hold_path(fd.uuid)) is not None
        assert store._client.exists(store._hold_path(fd.uuid)) is None
        assert len(conn.get_flow_details(fd.uuid)) == ATOMS


def test_a_backend_not_writable_takes_no_hold_and_refuses_to_write(
    two_backends: tuple[Backend, Backend], zookeeper_path_url: str
) -> None:
    """``writable=False`` (as ``flowkit flows list`` opens it) writes nothing: no hold, no ``readers``."""
    from flowkit.persistence.backends.impl_zookeeper import READERS

    writer, _ = two_backends
    book, fd = _flow()
    with writer.get_connection() as conn:
        conn.save_logbook(book)
    reader = backends.fetch(f"{zookeeper_path_url}?writable=false")
    try:
        with reader.get_connection() as conn:
            store: Any = conn._store  # type: ignore[attr-defined]
            store._client.delete(store._path(READERS), recursive=True)
            with store.excluding_writers([fd.uuid]):
                assert store._client.exists(store._path(READERS)) is None
            assert len(conn.get_flow_details(fd.uuid)) == ATOMS
            refused = r"zookeeper://.* is not writable: save_logbook refused"
            with pytest.raises(exc.StoreReadOnly, match=refused):
                conn.save_logbook(_flow()[0])
            conn.upgrade()  # checks the store made before holds, and makes no ``readers``
            assert store._client.exists(store._path(READERS)) is None
    finally:
        reader.close()
    with pytest.raises(exc.StorageFailure, match="'writable' must be true or false, not 'perhaps'"):
        backends.fetch(f"{zookeeper_path_url}?writable=perhaps")
