"""The persistence contract of a read-only backend (``writable=False``): every backend passes the same tests.

Parametrised (through ``backend_url`` in ``conftest.py``) over memory, dir,
sqlite, postgresql and zookeeper, on real stores. A backend not writable reads
what a writable one wrote, refuses every write with
:class:`~flowkit.exceptions.StoreReadOnly` naming its store, and creates,
migrates or changes nothing: each test compares a full dump of the store
(every file, row or znode, and its version where the store keeps one) taken
before and after. ``read_only`` is not flowkit's option (TaskFlow's ZooKeeper
backend hands it to kazoo): a backend given it writes, as TaskFlow's do.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flowkit import exceptions as exc
from flowkit import states
from flowkit.persistence import backends
from flowkit.persistence.base import Backend, Connection, WriteFence
from flowkit.persistence.models import FlowDetail, LogBook, TaskDetail

#: Whatever describes a store's whole content (see :func:`_dump`).
Dump = Any


def _kind(backend_url: str) -> str:
    return next(
        k for k in ("memory", "dir", "sqlite", "postgresql", "zookeeper") if backend_url.startswith(k)
    )


def _not_writable(backend_url: str) -> Backend:
    return backends.fetch({"connection": backend_url, "writable": False})


def _written(conn: Connection) -> tuple[LogBook, FlowDetail]:
    """A book with a fenced flow of two atoms, written through the writable ``conn``."""
    book = LogBook("book")
    fd = FlowDetail("flow", str(uuid.uuid4()))
    for name in ("a", "b"):
        ad = TaskDetail(name, str(uuid.uuid4()))
        ad.state, ad.intention, ad.results = states.SUCCESS, states.EXECUTE, {name: [1, 2]}
        fd.add(ad)
    book.add(fd)
    conn.save_logbook(book)
    conn.fence_flow(fd.uuid, WriteFence("job-1", 1))
    return book, fd


def _dump(backend_url: str, request: pytest.FixtureRequest) -> Dump:
    """The whole content of the store at ``backend_url``, read without the backend under test."""
    kind = _kind(backend_url)
    if kind == "dir":
        root = Path(backend_url.removeprefix("dir://"))
        if not root.exists():
            return None
        # Every entry, with its bytes and modification time (a rewrite of the same bytes shows).
        return sorted(
            (
                str(path.relative_to(root)),
                path.is_dir(),
                path.stat().st_mtime_ns,
                b"" if path.is_dir() else path.read_bytes(),
            )
            for path in [root, *root.rglob("*")]
        )
    if kind == "sqlite":
        path = Path(backend_url.removeprefix("sqlite:///"))
        if not path.exists():
            return None
        # Opened read-only, so that dumping creates nothing; the rows, not the bytes (WAL).
        with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
            return list(db.iterdump())
    if kind == "postgresql":
        import sqlalchemy as sa

        engine = sa.create_engine(backend_url)
        try:
            with engine.connect() as db:
                tables = sorted(sa.inspect(db).get_table_names())
                return {
                    table: sorted(map(repr, db.execute(sa.text(f'SELECT * FROM "{table}"')).all()))
                    for table in tables
                }
        finally:
            engine.dispose()
    if kind == "zookeeper":
        path = "/" + backend_url.split("/", 3)[3].partition("?")[0]
        with request.getfixturevalue("zookeeper_server").client() as client:
            if client.exists(path) is None:
                return None
            found: dict[str, tuple[bytes, int, int]] = {}

            def walk(node: str) -> None:
                data, stat = client.get(node)
                found[node] = (data, stat.mzxid, stat.cversion)
                for child in client.get_children(node):
                    walk(f"{node}/{child}")

            walk(path)
            return found
    return "memory: nothing outlives its backend"


@pytest.fixture
def dump(backend_url: str, request: pytest.FixtureRequest) -> Callable[[], Dump]:
    return lambda: _dump(backend_url, request)


@pytest.fixture
def reader(backend_url: str) -> Iterator[Backend]:
    made = _not_writable(backend_url)
    try:
        yield made
    finally:
        made.close()


# -- the option -------------------------------------------------------------------------


def test_a_backend_is_writable_by_default_and_not_when_told(backend_url: str) -> None:
    default = backends.fetch(backend_url)
    as_url = backends.fetch(f"{backend_url}{'&' if '?' in backend_url else '?'}writable=false")
    as_conf = _not_writable(backend_url)
    told = backends.fetch({"connection": backend_url, "writable": "yes"})
    try:
        assert [made.writable for made in (default, as_url, as_conf, told)] == [True, False, False, True]
    finally:
        for made in (default, as_url, as_conf, told):
            made.close()
    with pytest.raises(exc.StorageFailure, match="'writable' must be true or false, not 'perhaps'"):
        backends.fetch({"connection": backend_url, "writable": "perhaps"})


def test_read_only_is_not_flowkits_option_a_backend_given_it_writes_as_in_taskflow(backend_url: str) -> None:
    # TaskFlow's ZooKeeper backend hands read_only to kazoo (a read-only server may
    # serve the client; writes still go through); elsewhere it is a key nobody reads.
    made = backends.fetch({"connection": backend_url, "read_only": True})
    try:
        with made.get_connection() as conn:
            conn.upgrade()
            book, fd = _written(conn)
            assert {ad.name for ad in conn.get_flow_details(fd.uuid)} == {"a", "b"}
            conn.destroy_logbook(book.uuid)
        assert made.writable
    finally:
        made.close()


# -- reading a store a writable backend wrote ---------------------------------------------


def test_a_backend_not_writable_reads_what_a_writable_one_wrote_and_changes_nothing(
    backend_url: str, conn: Connection, reader: Backend, dump: Callable[[], Dump]
) -> None:
    if _kind(backend_url) == "memory":
        pytest.skip("a memory store belongs to its one backend: no other backend can read it")
    book, fd = _written(conn)
    before = dump()
    with reader.get_connection() as ro:
        ro.upgrade()  # checks, as the reading commands do
        ro.validate()
        [listed] = list(ro.get_logbooks())
        assert listed.uuid == book.uuid and [f.uuid for f in listed] == [fd.uuid]
        assert ro.get_logbook(book.uuid, lazy=True).name == "book"
        assert [f.uuid for f in ro.get_flows_for_book(book.uuid)] == [fd.uuid]
        read = ro.get_flow_details(fd.uuid)
        assert {ad.name: ad.results for ad in read} == {"a": {"a": [1, 2]}, "b": {"b": [1, 2]}}
        assert {ad.name for ad in ro.get_atoms_for_flow(fd.uuid)} == {"a", "b"}
        first = next(iter(fd))
        assert ro.get_atom_details(first.uuid).results == first.results
        assert ro.flow_fence(fd.uuid) == WriteFence("job-1", 1)
        with pytest.raises(exc.NotFound):
            ro.get_flow_details("no-such-flow")
    assert dump() == before


# -- refusing writes ----------------------------------------------------------------------


def _writes(book: LogBook, fd: FlowDetail) -> dict[str, Callable[[Connection], object]]:
    """Every connection method that writes, called with what a writer would pass."""
    atom = next(iter(fd))
    fence = WriteFence("job-1", 1)
    return {
        "save_logbook": lambda c: c.save_logbook(LogBook("another")),
        "update_flow_details": lambda c: c.update_flow_details(fd),
        "update_atom_details": lambda c: c.update_atom_details(atom),
        "save_flow_progress": lambda c: c.save_flow_progress(fd, [atom], True),
        "save_flow_progress_fenced": lambda c: c.save_flow_progress_fenced(fd, [atom], True, fence),
        "fence_flow": lambda c: c.fence_flow(fd.uuid, WriteFence("job-1", 2)),
        "take_fence": lambda c: c.take_fence(fd.uuid, WriteFence("job-2", 1)),
        "destroy_logbook": lambda c: c.destroy_logbook(book.uuid),
        "clear_all": lambda c: c.clear_all(),
    }


def test_every_write_through_a_backend_not_writable_is_refused_naming_the_store_and_changes_nothing(
    backend_url: str, conn: Connection, reader: Backend, dump: Callable[[], Dump]
) -> None:
    book, fd = _written(conn)
    before = dump()
    where = backend_url.partition("?")[0]
    with reader.get_connection() as ro:
        for name, write in _writes(book, fd).items():
            with pytest.raises(exc.StoreReadOnly) as refused:
                write(ro)
            assert where in refused.value.location, (name, refused.value.location)
            assert refused.value.location in str(refused.value) and "writable=False" in str(refused.value)
            assert refused.value.operation, name
    assert dump() == before
    # The writable connection still finds everything where it was.
    assert {ad.name for ad in conn.get_flow_details(fd.uuid)} == {"a", "b"}


# -- a store that is not there ------------------------------------------------------------


def test_a_backend_not_writable_creates_nothing_where_there_is_no_store(
    backend_url: str, reader: Backend, dump: Callable[[], Dump], tmp_path: Path
) -> None:
    kind = _kind(backend_url)
    before, files = dump(), sorted(tmp_path.iterdir())
    if kind == "memory":
        with reader.get_connection() as ro:
            ro.upgrade()  # nothing to create: the collections exist from the start
            assert list(ro.get_logbooks()) == []
        return
    if kind == "postgresql":
        # An empty database: the server is there, flowkit's schema is not.
        with reader.get_connection() as ro, pytest.raises(exc.StoreNotUpgraded) as missing:
            ro.upgrade()
        assert "flowkit db upgrade" in str(missing.value)
    elif kind == "sqlite":
        with pytest.raises(exc.StoreMissing, match="no SQLite database at .*: the file does not exist"):
            reader.get_connection()
    else:
        with reader.get_connection() as ro:
            with pytest.raises(exc.StoreMissing) as missing:
                ro.upgrade()
            assert missing.value.location in str(missing.value)
            assert list(ro.get_logbooks()) == []  # reads find nothing, and make nothing
            with pytest.raises(exc.NotFound):
                ro.get_flow_details("no-such-flow")  # a read of several documents (the dir's lock)
            with pytest.raises(exc.StoreReadOnly):
                ro.save_logbook(LogBook("book"))
    assert dump() == before
    assert sorted(tmp_path.iterdir()) == files


def _bare_store(backend_url: str, request: pytest.FixtureRequest) -> None:
    """Make the store's location, without flowkit's collections or schema."""
    kind = _kind(backend_url)
    if kind == "dir":
        os.makedirs(backend_url.removeprefix("dir://"))
    elif kind == "sqlite":
        Path(backend_url.removeprefix("sqlite:///")).touch()
    elif kind == "zookeeper":
        with request.getfixturevalue("zookeeper_server").client() as client:
            client.ensure_path("/" + backend_url.split("/", 3)[3])


def test_upgrade_of_a_backend_not_writable_on_a_store_never_upgraded_names_the_command_and_migrates_nothing(
    backend_url: str, reader: Backend, dump: Callable[[], Dump], request: pytest.FixtureRequest
) -> None:
    if _kind(backend_url) == "memory":
        pytest.skip("a memory store has no layout: it is always upgraded")
    _bare_store(backend_url, request)
    before = dump()
    with reader.get_connection() as ro, pytest.raises(exc.StoreNotUpgraded) as refused:
        ro.upgrade()
    assert not isinstance(refused.value, exc.StoreMissing)
    assert "`flowkit db upgrade --connection " in str(refused.value)
    assert dump() == before


def test_ready_for_reading_makes_a_missing_store_when_asked_and_the_backend_stays_unwritable(
    backend_url: str, reader: Backend, dump: Callable[[], Dump]
) -> None:
    # What the monitor does: it is often started before the first run made the store.
    backends.ready_for_reading(reader, create_missing=True)
    made = dump()
    assert made is not None
    with reader.get_connection() as ro:
        assert list(ro.get_logbooks()) == []
        with pytest.raises(exc.StoreReadOnly):
            ro.save_logbook(LogBook("book"))
    backends.ready_for_reading(reader, create_missing=True)  # there now: only checked
    assert dump() == made
