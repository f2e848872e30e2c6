"""A database TaskFlow itself made, copied into flowkit and resumed there.

The source databases are written by TaskFlow (installed for the compat
suite), on SQLite and on the session's PostgreSQL server, so what is tested is
TaskFlow's real schema and encodings (native JSON on PostgreSQL, enums), not
flowkit's idea of them.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from flowkit import engines, states
from flowkit import exceptions as exc
from flowkit import task as fk_task
from flowkit.patterns import linear_flow
from flowkit.persistence import backends
from flowkit.persistence import models as fk_models
from flowkit.persistence.backends.sqlalchemy.from_taskflow import import_taskflow, read_taskflow
from tests import services
from tests.persistence.test_cli_db import _flowkit

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # eventlet's deprecation, raised by TaskFlow's imports
    tf_backends = pytest.importorskip("taskflow.persistence.backends")
    tf_models = pytest.importorskip("taskflow.persistence.models")
    tf_failure = pytest.importorskip("taskflow.types.failure")
    tf_engines = pytest.importorskip("taskflow.engines")
    tf_task = pytest.importorskip("taskflow.task")
    tf_linear = pytest.importorskip("taskflow.patterns.linear_flow")


@pytest.fixture(params=["sqlite", "postgresql"])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(TaskFlow's database, an empty one for flowkit), both of one kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/taskflow.db", f"sqlite:///{tmp_path}/flowkit.db"
        return
    server: services.PostgresServer = request.getfixturevalue("postgresql_server")
    names = [f"tfdb_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    made = [server.create_database(name) for name in names]
    try:
        yield made[0], made[1]
    finally:
        for name in names:
            server.drop_database(name)


def _taskflow_backend(url: str) -> Any:
    backend = tf_backends.fetch({"connection": url})
    conn = backend.get_connection()
    conn.upgrade()
    conn.close()
    return backend


def _failure() -> Any:
    try:
        raise ValueError("bad input", 7)
    except ValueError:
        return tf_failure.Failure()


def _saved_by_taskflow(url: str) -> Any:
    """A logbook of every kind of record, saved by TaskFlow; returns what was saved.

    (Not what TaskFlow reads back: TaskFlow's reading of a retry history puts
    the last failure's record where each attempt's result was.)
    """
    backend = _taskflow_backend(url)
    book = tf_models.LogBook("orders", uuid="book-1")
    book.meta = {"owner": "octavia", "ids": [1, 2]}
    fd = tf_models.FlowDetail("create-lb", "flow-1")
    fd.state = states.RUNNING
    fd.meta = {"note": "in flight"}
    done = tf_models.TaskDetail("allocate", "atom-1")
    done.state, done.results, done.meta = states.SUCCESS, {"port": "42", "ids": [1]}, {"progress": 1.0}
    done.version = "1.2"
    failed = tf_models.TaskDetail("plug", "atom-2")
    failed.state, failed.intention, failed.failure = states.REVERTED, states.REVERT, _failure()
    failed.revert_results = "unplugged"
    revert_failed = tf_models.TaskDetail("cleanup", "atom-3")
    revert_failed.state, revert_failed.revert_failure = states.REVERT_FAILURE, _failure()
    retry = tf_models.RetryDetail("again", "atom-4")
    retry.state, retry.results = states.RETRYING, [(1, {"plug": _failure()}), ("second", {})]
    text = tf_models.TaskDetail("text", "atom-5")
    text.state, text.results = states.SUCCESS, "42"  # a string that looks like JSON stays a string
    for ad in (done, failed, revert_failed, retry, text):
        fd.add(ad)
    book.add(fd)
    conn = backend.get_connection()
    conn.save_logbook(book)
    conn.close()
    backend.close()
    return book


def test_every_record_arrives_as_taskflow_holds_it(urls: tuple[str, str]) -> None:
    source, target = urls
    expected = _saved_by_taskflow(source)
    if source.startswith("postgresql"):
        engine = sa.create_engine(source)
        with engine.connect() as conn:
            types = {c["name"]: c["type"] for c in sa.inspect(conn).get_columns("atomdetails")}
        engine.dispose()
        assert isinstance(types["results"], sa.JSON)  # TaskFlow's native JSON, read as such
    summary = import_taskflow(source, target)
    assert (summary.logbooks, summary.flow_details, summary.atom_details) == (1, 1, 5)
    backend = backends.fetch(target)
    with backend.get_connection() as conn:
        book = conn.get_logbook("book-1")
    backend.close()
    assert (book.name, book.meta) == ("orders", {"owner": "octavia", "ids": [1, 2]})
    assert book.created_at is not None
    assert book.created_at.replace(tzinfo=None) == expected.created_at.replace(tzinfo=None)
    fd = book.find("flow-1")
    tf_fd = expected.find("flow-1")
    assert (fd.name, fd.state, fd.meta) == ("create-lb", states.RUNNING, {"note": "in flight"})
    assert len(fd) == 5
    for tf_ad in tf_fd:
        ad = fd.find(tf_ad.uuid)
        assert type(ad).__name__ == type(tf_ad).__name__
        got, want = ad.to_dict(), tf_ad.to_dict()
        # Tuples come back as lists through JSON on both sides.
        assert _lists(got) == _lists(want), tf_ad.name
    assert fd.find("atom-5").results == "42"
    assert fd.find("atom-2").failure.check(ValueError) is ValueError
    assert fd.find("atom-4").results[0][1]["plug"].exception_str == "('bad input', 7)"


def _lists(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_lists(item) for item in value]
    if isinstance(value, dict):
        return {key: _lists(item) for key, item in value.items()}
    return value


def test_the_taskflow_database_is_left_as_it_was(urls: tuple[str, str]) -> None:
    source, target = urls
    _saved_by_taskflow(source)
    before = _dump(source)
    import_taskflow(source, target)
    assert _dump(source) == before
    # TaskFlow still reads and writes it.
    backend = _taskflow_backend(source)
    conn = backend.get_connection()
    assert [book.uuid for book in conn.get_logbooks()] == ["book-1"]
    conn.close()
    backend.close()


def _dump(url: str) -> dict[str, list[Any]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            names = sorted(sa.inspect(conn).get_table_names())
            return {
                name: sorted(map(repr, conn.execute(sa.text(f"SELECT * FROM {name}")).all()))
                for name in names
            }
    finally:
        engine.dispose()


def test_flowkit_pointed_at_a_taskflow_database_says_to_import_it(urls: tuple[str, str]) -> None:
    source, _ = urls
    _saved_by_taskflow(source)
    before = _dump(source)
    backend = backends.fetch(source)
    with backend.get_connection() as conn:
        for operation in (conn.validate, conn.upgrade, lambda: conn.get_logbook("book-1")):
            with pytest.raises(exc.StorageFailure, match="import-taskflow --from"):
                operation()
    backend.close()
    tables = {name: rows for name, rows in _dump(source).items() if name in ("logbooks", "atomdetails")}
    assert tables == {name: before[name] for name in tables}


def test_a_second_import_into_the_same_database_writes_nothing(urls: tuple[str, str]) -> None:
    source, target = urls
    _saved_by_taskflow(source)
    import_taskflow(source, target)
    _refused_leaving_target_as_it_was(source, target, "already holds logbook 'book-1'.*nothing was imported")


def test_one_clashing_atom_detail_stops_the_whole_import(urls: tuple[str, str]) -> None:
    source, target = urls
    _saved_by_taskflow(source)
    backend = backends.fetch(target)
    with backend.get_connection() as conn:
        conn.upgrade()
        other = fk_models.LogBook("other", uuid="book-other")
        fd = fk_models.FlowDetail("other-flow", "flow-other")
        fd.add(fk_models.TaskDetail("clash", "atom-3"))
        other.add(fd)
        conn.save_logbook(other)
    backend.close()
    _refused_leaving_target_as_it_was(source, target, "atom detail 'atom-3'.*nothing was imported")


def _refused_leaving_target_as_it_was(source: str, target: str, match: str) -> None:
    """Importing ``source`` fails with ``match`` and not one row of ``target`` changed."""
    before = _dump(target)
    with pytest.raises(exc.StorageFailure, match=match):
        import_taskflow(source, target)
    assert _dump(target) == before


def test_times_and_order_of_flow_and_atom_details_are_kept(urls: tuple[str, str]) -> None:
    source, target = urls
    _saved_by_taskflow(source)
    import_taskflow(source, target)
    assert _times(target, "flowdetails") == _times(source, "flowdetails")
    assert _times(target, "atomdetails") == _times(source, "atomdetails")
    backend = backends.fetch(target)
    with backend.get_connection() as conn:
        names = [ad.name for ad in conn.get_logbook("book-1").find("flow-1")]
    backend.close()
    assert names == ["allocate", "plug", "cleanup", "again", "text"]  # the order TaskFlow saved them


def _times(url: str, table: str) -> dict[str, Any]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT uuid, created_at FROM {table}")).all()
    finally:
        engine.dispose()
    # SQLite hands back text, PostgreSQL datetimes (naive from TaskFlow, aware from flowkit).
    return {uuid_: str(when)[:26].replace("T", " ") for uuid_, when in rows}


def test_any_flowkit_backend_can_be_the_target(tmp_path: Path) -> None:
    (tmp_path / "odd #").mkdir()
    source = f"sqlite:///{tmp_path}/odd #/taskflow.db"
    _saved_by_taskflow(source)
    summary = import_taskflow(source, f"dir://{tmp_path}/books")
    assert summary.atom_details == 5
    backend = backends.fetch(f"dir://{tmp_path}/books")
    with backend.get_connection() as conn:
        fd = conn.get_logbook("book-1").find("flow-1")
    backend.close()
    assert list(fd.find("atom-4").results[1]) == ["second", {}]
    assert fd.find("atom-2").intention == states.REVERT


def test_the_command_copies_and_masks_passwords(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path}/taskflow.db"
    _saved_by_taskflow(source)
    target = f"sqlite:///{tmp_path}/flowkit.db"
    done = _flowkit("db", "import-taskflow", "--from", source, "--connection", target)
    assert done.returncode == 0, done.stderr
    assert "copied 1 logbook(s), 1 flow detail(s), 5 atom detail(s)" in done.stdout
    again = _flowkit("db", "import-taskflow", "--from", source, "--connection", target)
    assert again.returncode == 1
    assert "already holds logbook 'book-1'" in again.stderr
    secret = "postgresql://tf:s3cret@127.0.0.1:1/taskflow"
    failed = _flowkit("db", "import-taskflow", "--from", secret, "--connection", target)
    assert failed.returncode == 1
    assert "s3cret" not in failed.stderr + failed.stdout
    assert "tf:***@127.0.0.1:1/taskflow" in failed.stderr


def test_importing_a_database_into_itself_is_refused(urls: tuple[str, str]) -> None:
    source, _ = urls
    _saved_by_taskflow(source)
    with pytest.raises(exc.StorageFailure, match="into itself"):
        import_taskflow(source, source)


def test_a_database_that_is_not_taskflow_s_is_named(tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path}/nowhere.db"
    with pytest.raises(exc.StorageFailure, match="nowhere.db"):
        read_taskflow(missing)
    assert not (tmp_path / "nowhere.db").exists()
    empty = tmp_path / "empty.db"
    sa.create_engine(f"sqlite:///{empty}").connect().close()
    with pytest.raises(exc.StorageFailure, match=r"empty\.db is not a TaskFlow persistence database"):
        read_taskflow(f"sqlite:///{empty}")
    flowkit_db = f"sqlite:///{tmp_path}/flowkit.db"
    backend = backends.fetch(flowkit_db)
    with backend.get_connection() as conn:
        conn.upgrade()
    backend.close()
    with pytest.raises(exc.StorageFailure, match="is a flowkit database already"):
        read_taskflow(flowkit_db)


def test_the_password_is_masked_in_errors(postgresql_server: services.PostgresServer) -> None:
    url = postgresql_server.url.replace("flowkit@", "flowkit:s3cret@").rsplit("/", 1)[0] + "/no_such_db"
    with pytest.raises(exc.StorageFailure) as raised:
        read_taskflow(url)
    assert "s3cret" not in str(raised.value)
    assert "no_such_db" in str(raised.value)


# -- a flow in flight under TaskFlow, finished by flowkit --------------------------------

RAN: list[str] = []


class _FkStep(fk_task.Task):
    def execute(self) -> str:
        RAN.append(self.name)
        return f"{self.name}-done"


class _TfStep(tf_task.Task):  # type: ignore[misc, name-defined]
    def execute(self) -> str:
        return f"{self.name}-done"


class _FkNeedsInput(fk_task.Task):
    def execute(self, lb_id: str) -> str:
        RAN.append(self.name)
        return f"{self.name}-{lb_id}"


class _TfNeedsInput(tf_task.Task):  # type: ignore[misc, name-defined]
    def execute(self, lb_id: str) -> str:
        return f"{self.name}-{lb_id}"


def _in_flight_under_taskflow(url: str) -> tuple[str, str]:
    """A three-step flow TaskFlow left mid-run: first done, second RUNNING, third PENDING."""
    backend = _taskflow_backend(url)
    book = tf_models.LogBook("conductor-book")
    flow = tf_linear.Flow("lb-create").add(
        _TfStep("first", provides="first_out"),
        _TfNeedsInput("second", provides="second_out"),
        _TfStep("third", provides="third_out"),
    )
    engine = tf_engines.load(flow, backend=backend, book=book, store={"lb_id": "lb-7"})
    engine.compile()
    engine.prepare()
    engine.storage.save("first", "first-from-taskflow")
    engine.storage.set_atom_state("second", states.RUNNING)
    engine.storage.set_flow_state(states.RUNNING)
    flow_uuid = engine.storage.flow_uuid
    backend.close()
    return book.uuid, flow_uuid


def test_a_flow_in_flight_under_taskflow_is_resumed_by_flowkit(urls: tuple[str, str]) -> None:
    source, target = urls
    book_uuid, flow_uuid = _in_flight_under_taskflow(source)
    import_taskflow(source, target)
    backend = backends.fetch(target)
    with backend.get_connection() as conn:
        book = conn.get_logbook(book_uuid)
    fd = book.find(flow_uuid)
    assert fd.state == states.RUNNING
    assert sorted(ad.name for ad in fd) == ["first", "second", "third"]  # no injector pseudo atom
    flow = linear_flow.Flow("lb-create").add(
        _FkStep("first", provides="first_out"),
        _FkNeedsInput("second", provides="second_out"),
        _FkStep("third", provides="third_out"),
    )
    RAN.clear()
    engine = engines.load(flow, flow_detail=fd, book=book, backend=backend)
    engine.run()
    assert RAN == ["second", "third"]  # SUCCESS under TaskFlow is not run again; RUNNING is
    assert engine.storage.fetch_all() == {
        "first_out": "first-from-taskflow",
        "second_out": "second-lb-7",  # store= given to TaskFlow reaches the resumed task
        "lb_id": "lb-7",
        "third_out": "third-done",
    }
    with backend.get_connection() as conn:
        stored = conn.get_logbook(book_uuid).find(flow_uuid)
    backend.close()
    assert stored.state == states.SUCCESS
    assert {ad.name: ad.state for ad in stored} == dict.fromkeys(("first", "second", "third"), states.SUCCESS)


REVERTED: list[str] = []


class _FkRevertible(_FkStep):
    def revert(self, *args: Any, **kwargs: Any) -> None:
        REVERTED.append(self.name)


def test_a_flow_reverting_under_taskflow_finishes_reverting_in_flowkit(urls: tuple[str, str]) -> None:
    source, target = urls
    backend = _taskflow_backend(source)
    book = tf_models.LogBook("reverting-book")
    flow = tf_linear.Flow("lb-delete").add(
        _TfStep("first", provides="first_out"), _TfStep("second", provides="second_out")
    )
    engine = tf_engines.load(flow, backend=backend, book=book)
    engine.compile()
    engine.prepare()
    engine.storage.save("first", "first-from-taskflow")
    engine.storage.save("second", _failure(), states.FAILURE)
    engine.storage.set_atom_intention("second", states.REVERT)
    engine.storage.set_atom_intention("first", states.REVERT)
    engine.storage.set_atom_state("first", states.REVERTING)
    engine.storage.set_flow_state(states.RUNNING)  # TaskFlow flows revert while RUNNING
    flow_uuid = engine.storage.flow_uuid
    backend.close()

    import_taskflow(source, target)
    fk_backend = backends.fetch(target)
    with fk_backend.get_connection() as conn:
        fk_book = conn.get_logbook(book.uuid)
    RAN.clear()
    REVERTED.clear()
    fk_flow = linear_flow.Flow("lb-delete").add(
        _FkRevertible("first", provides="first_out"), _FkRevertible("second", provides="second_out")
    )
    fk_engine = engines.load(fk_flow, flow_detail=fk_book.find(flow_uuid), book=fk_book, backend=fk_backend)
    with pytest.raises(exc.WrappedFailure) as raised:
        fk_engine.run()
    assert raised.value.check(ValueError)  # TaskFlow's failure record (bare type names), raised again
    assert "bad input" in str(raised.value)
    assert RAN == []
    # The failed task, then the one TaskFlow left REVERTING (in doubt: reverted again).
    assert REVERTED == ["second", "first"]
    with fk_backend.get_connection() as conn:
        stored = conn.get_logbook(book.uuid).find(flow_uuid)
    fk_backend.close()
    assert stored.state == states.REVERTED
    assert {ad.name: ad.state for ad in stored} == dict.fromkeys(("first", "second"), states.REVERTED)


@pytest.mark.parametrize(
    ("column", "value", "said"),
    [
        ("results", "{not json", "column 'results' of atom detail 'allocate' (atom-1) is not JSON ("),
        ("atom_type", "BOGUS", "atom detail 'allocate' (atom-1) from "),
        ("failure", "[1]", "atom detail 'allocate' (atom-1) from "),
    ],
)
def test_a_damaged_taskflow_record_is_refused_saying_why_once(
    tmp_path: Path, column: str, value: str, said: str
) -> None:
    # The reason ended the message and was said again on the cause's line below it.
    source, target = f"sqlite:///{tmp_path}/taskflow.db", f"sqlite:///{tmp_path}/flowkit.db"
    _saved_by_taskflow(source)
    damage = sa.create_engine(source)
    with damage.begin() as db:
        db.exec_driver_sql(f"UPDATE atomdetails SET {column} = ? WHERE uuid = 'atom-1'", (value,))
    damage.dispose()
    with pytest.raises(exc.StorageFailure) as refused:
        import_taskflow(source, target)
    error = refused.value
    assert said in error.message
    words = str(error.__cause__).splitlines()[0]
    assert words in error.message and str(error).count(words) == 1, str(error)
