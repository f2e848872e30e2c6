"""An error that quotes the exception it was raised from says that exception's words once.

``str()`` of a flowkit error is TaskFlow's: the message, then each chained
cause on a line of its own. Errors whose message already quotes the cause
(``f"...: {err}"``) said it twice; they are now marked as quoting it
(:func:`flowkit.exceptions.quoting_cause`), so ``str()`` says it once, in the
message, and the cause stays chained for tracebacks. Most are the ones a
user meets without any server: a malformed persistence or database URL, a
database file that cannot be opened or holds a damaged record, a directory
record that cannot be read, a cache location that cannot be used, a task
module that cannot be imported, a spec file that is not text. The others
need the session's real ZooKeeper: one that refuses to say its version, a
board path nobody may create under.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from flowkit import engines, task
from flowkit import exceptions as exc
from flowkit.cache import open_store
from flowkit.declarative import load_flow
from flowkit.engines.worker_based._task_registry import load_tasks
from flowkit.jobs import _posting
from flowkit.jobs import backends as jobboards
from flowkit.persistence import backends, models
from flowkit.persistence.backends.sqlalchemy.from_taskflow import import_taskflow
from flowkit.persistence.backends.sqlalchemy.tables import atomdetails
from tests import services


def _connect(url: str, **conf: object) -> None:
    backend = backends.fetch({"connection": url, **conf})
    try:
        backend.get_connection().upgrade()
    finally:
        backend.close()


def _read_damaged(tmp_path: Path, column: str, value: str) -> None:
    """Save a logbook of one atom to SQLite, set the atom's ``column`` to ``value``, read it back."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    backend = backends.fetch({"connection": url})
    try:
        with contextlib.closing(backend.get_connection()) as conn:
            conn.upgrade()
            book = models.LogBook("book", "book-1")
            flow_detail = models.FlowDetail("flow", "flow-1")
            book.add(flow_detail)
            flow_detail.add(models.TaskDetail("opaque", "atom-1"))
            conn.save_logbook(book)
        damage = sa.create_engine(url)
        with damage.begin() as db:
            db.execute(sa.update(atomdetails).values({column: value}))
        damage.dispose()
        with contextlib.closing(backend.get_connection()) as conn:
            conn.get_logbook("book-1")
    finally:
        backend.close()


def _write_while_locked(tmp_path: Path) -> None:
    """Save a logbook to SQLite while another connection holds the file's write lock."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    backend = backends.fetch({"connection": url, "max_retries": 0, "sqlite_busy_timeout": 0.05})
    try:
        with contextlib.closing(backend.get_connection()) as conn:
            conn.upgrade()
        holder = sqlite3.connect(tmp_path / "runs.db", isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")
            with contextlib.closing(backend.get_connection()) as conn:
                conn.save_logbook(models.LogBook("book", "book-1"))
        finally:
            holder.close()
    finally:
        backend.close()


def _cache_write_while_locked(tmp_path: Path) -> None:
    """Write to a SQLite cache store while another connection holds the file's write lock."""
    store = open_store(f"sqlite:///{tmp_path / 'cache.db'}?timeout=0.05")
    store.put("made", "1")
    holder = sqlite3.connect(tmp_path / "cache.db", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        store.put("later", "2")
    finally:
        holder.close()


def _read_a_directory_record(tmp_path: Path) -> None:
    """Save a logbook to a directory backend whose record file is a directory: the OS refuses it."""
    backend = backends.fetch(f"dir://{tmp_path / 'flows'}")
    try:
        with contextlib.closing(backend.get_connection()) as conn:
            conn.upgrade()
            (tmp_path / "flows" / "books" / "book-1.json").mkdir()
            conn.save_logbook(models.LogBook("book", "book-1"))
    finally:
        backend.close()


def _closed_port() -> int:
    """A local port nothing listens on (bound, then let go): connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class _Nothing(task.Task):
    def execute(self) -> None:
        pass


def _run_on_workers(url: str) -> None:
    engines.load(_Nothing("nothing"), engine="worker-based", url=url, topics=["t"]).run()


def _blocked(tmp_path: Path) -> Path:
    """A path under a plain file: no directory or database can be made there."""
    (tmp_path / "file").write_text("", encoding="utf-8")
    return tmp_path / "file" / "under"


def _garbage(tmp_path: Path) -> Path:
    """A file that is no SQLite database."""
    path = tmp_path / "garbage.db"
    path.write_text("not a database " * 100, encoding="utf-8")
    return path


def _not_text(tmp_path: Path) -> Path:
    spec = tmp_path / "flow.json"
    spec.write_bytes(b'{"name": "\xff"}')
    return spec


#: name -> (what raises, given a temporary directory; the start of its message; the
#: cause's words as the message quotes them, when not the first line of its str())
CASES: dict[str, tuple[Callable[[Path], object], str, str | None]] = {
    "persistence URL": (
        lambda tmp: backends.fetch({"connection": "zookeeper://host:notaport/x"}),
        "malformed persistence URL 'zookeeper://host:notaport/x': ",
        None,
    ),
    "database URL": (
        lambda tmp: _connect("postgresql://user@host:port/x"),
        "malformed database URL 'postgresql://user@host:port/x': ",
        None,
    ),
    "database file": (
        lambda tmp: _connect(f"sqlite:///{_blocked(tmp)}.db"),
        "cannot connect to database sqlite:///",
        "unable to open database file",  # the driver's words, without SQLAlchemy's wrapping
    ),
    "database driver": (
        lambda tmp: _connect(f"sqlite+:///{tmp}/runs.db"),
        "cannot use sqlite+:///",
        None,
    ),
    "database options": (
        lambda tmp: _connect(f"sqlite:///{tmp}/runs.db", engine_args={"bogus_arg": 1}),
        "bad database options for sqlite:///",
        None,
    ),
    "database locked": (
        _write_while_locked,
        "saving logbook 'book-1' failed on sqlite:///",
        "database is locked",  # the driver's words, without SQLAlchemy's wrapping
    ),
    "cache database locked": (
        _cache_write_while_locked,
        "cache store sqlite:///",
        None,
    ),
    "damaged JSON": (
        lambda tmp: _read_damaged(tmp, "results", "{not json"),
        "column 'results' of atom detail 'opaque' (atom-1) holds invalid JSON (",
        None,
    ),
    "damaged atom type": (
        lambda tmp: _read_damaged(tmp, "atom_type", "BOGUS"),
        "atom detail 'opaque' (atom-1): Unknown atom type 'BOGUS'",
        None,
    ),
    "damaged failure": (
        lambda tmp: _read_damaged(tmp, "failure", "[1]"),
        "atom detail 'opaque' (atom-1) cannot be read back (Invalid dict version of failure object",
        None,
    ),
    "directory record": (
        _read_a_directory_record,
        "save_logbook of book-1 failed on dir:///",
        None,
    ),
    "ZooKeeper backend option": (
        lambda tmp: backends.fetch({"connection": "zookeeper://127.0.0.1:1/x", "use_ssl": "maybe"}),
        "ZooKeeper backend at zookeeper://127.0.0.1:1/x: ",
        None,
    ),
    "etcd jobboard unreachable": (
        lambda tmp: jobboards.fetch("board", {"board": f"etcd://127.0.0.1:{_closed_port()}"}).connect(),
        "etcd jobboard 'board' at http://127.0.0.1:",
        "ConnectionFailedError",  # etcd3gw's errors say nothing in str(): the type is named
    ),
    "TaskFlow database": (
        lambda tmp: import_taskflow("nosuchdialect://host/db", f"sqlite:///{tmp}/runs.db"),
        "cannot open TaskFlow database nosuchdialect://host/db: ",
        None,
    ),
    "TaskFlow database file": (
        lambda tmp: import_taskflow(f"sqlite:///{_garbage(tmp)}", f"sqlite:///{tmp}/runs.db"),
        "cannot read TaskFlow database sqlite:///",
        "file is not a database",  # the driver's words, without SQLAlchemy's wrapping
    ),
    "Redis cache option": (
        lambda tmp: open_store(f"redis://127.0.0.1:{_closed_port()}/0?socket_timeout=soon"),
        "cache store redis://127.0.0.1:",
        None,
    ),
    "Redis cache unreachable": (
        lambda tmp: open_store(f"redis://127.0.0.1:{_closed_port()}/0"),
        "cannot reach cache store redis://127.0.0.1:",
        None,
    ),
    "Redis jobboard option": (
        lambda tmp: jobboards.fetch(
            "board", {"board": "redis", "url": f"redis://127.0.0.1:{_closed_port()}/0?socket_timeout=soon"}
        ).connect(),
        "malformed Redis jobboard configuration for redis://127.0.0.1:",
        None,
    ),
    "Redis of the worker-based engine": (
        lambda tmp: _run_on_workers(f"redis://127.0.0.1:{_closed_port()}/0"),
        "the worker-based engine cannot reach Redis at redis://127.0.0.1:",
        None,
    ),
    "job document not JSON": (
        lambda tmp: _posting.loads("{not json", "redis://127.0.0.1:6379/0 jobs/1"),
        "job document at redis://127.0.0.1:6379/0 jobs/1 is not JSON: ",
        None,
    ),
    "job document time": (
        lambda tmp: _posting.loads(
            '{"uuid": "u", "name": "n", "sequence": 1, "created_on": "yesterday"}', "redis://h/0 jobs/1"
        ),
        "job document at redis://h/0 jobs/1: ",
        None,
    ),
    "ZooKeeper unreachable": (
        lambda tmp: backends.fetch(
            {"connection": f"zookeeper://127.0.0.1:{_closed_port()}/flows", "timeout": 0.5}
        ).get_connection(),
        "cannot connect to ZooKeeper at zookeeper://127.0.0.1:",
        None,
    ),
    "cache directory": (
        lambda tmp: open_store(f"dir://{_blocked(tmp)}"),
        "cannot use cache directory ",
        None,
    ),
    "cache database": (
        lambda tmp: open_store(f"sqlite:///{_blocked(tmp)}.db"),
        "cannot open cache store sqlite:///",
        None,
    ),
    "task module": (
        lambda tmp: load_tasks(["flowkit_test_no_such_tasks_zz"]),
        "cannot import task module 'flowkit_test_no_such_tasks_zz': ",
        None,
    ),
    "spec file": (lambda tmp: load_flow(str(_not_text(tmp))), "", None),
}


@pytest.fixture
def no_create_path(zookeeper_server: services.ZooKeeperServer) -> Iterator[str]:
    """A ZooKeeper node anyone may read and nobody may create under: a board's path below it fails."""
    services.require_module("kazoo", "kazoo")
    from kazoo.security import make_acl  # type: ignore[import-untyped]

    path = f"{zookeeper_server.root}/{uuid.uuid4().hex}"
    with zookeeper_server.client() as client:
        client.create(path, acl=[make_acl("world", "anyone", read=True, delete=True)])
    try:
        yield path
    finally:
        zookeeper_server.delete_tree(path)


def _board(hosts: str, path: str) -> None:
    board = jobboards.fetch("board", {"board": "zookeeper", "hosts": hosts, "path": path})
    try:
        board.connect()
    finally:
        board.close()


def _backend(url: str) -> None:
    with contextlib.closing(backends.fetch({"connection": url})) as backend:
        backend.get_connection()


_NO_ENVI = "it refuses the 'envi' command"

#: name -> (what raises, given the test's request for the servers it needs; the start of its
#: message; the cause's words as the message quotes them, when not the first line of its str())
SERVER_CASES: dict[str, tuple[Callable[[pytest.FixtureRequest], object], str, str | None]] = {
    "ZooKeeper backend without envi": (
        lambda request: _backend(
            request.getfixturevalue("zookeeper_without_envi").url_for(f"/{uuid.uuid4().hex}")
        ),
        "ZooKeeper at zookeeper://127.0.0.1:",
        _NO_ENVI,
    ),
    "ZooKeeper jobboard without envi": (
        lambda request: _board(request.getfixturevalue("zookeeper_without_envi").hosts, "/jobs"),
        "ZooKeeper jobboard at zookeeper://127.0.0.1:",
        _NO_ENVI,
    ),
    "ZooKeeper jobboard path refused": (
        lambda request: _board(
            request.getfixturevalue("zookeeper_server").hosts,
            f"{request.getfixturevalue('no_create_path')}/jobs",
        ),
        "ZooKeeper jobboard at zookeeper://127.0.0.1:",
        "NoAuthError",  # kazoo's errors say nothing in str(): the type is named
    ),
}


def _said_once(error: exc.TaskFlowException, start: str, quoted: str | None) -> None:
    cause = error.__cause__
    assert cause is not None, "the cause stays chained"
    said = str(error)
    words = quoted or str(cause).splitlines()[0]
    assert said.startswith(start), said
    assert words in error.message
    assert said.count(words) == 1, said


@pytest.mark.parametrize("case", list(CASES))
def test_an_error_quoting_its_cause_says_it_once(case: str, tmp_path: Path) -> None:
    raises, start, quoted = CASES[case]
    with pytest.raises(exc.TaskFlowException) as raised:
        raises(tmp_path)
    _said_once(raised.value, start, quoted)


@pytest.mark.parametrize("case", list(SERVER_CASES))
def test_an_error_from_a_real_server_quoting_its_cause_says_it_once(
    case: str, request: pytest.FixtureRequest
) -> None:
    services.require_module("kazoo", "kazoo")
    raises, start, quoted = SERVER_CASES[case]
    with pytest.raises(exc.TaskFlowException) as raised:
        raises(request)
    _said_once(raised.value, start, quoted)
