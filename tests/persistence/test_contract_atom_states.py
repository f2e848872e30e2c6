"""``Connection.get_atom_states``, the narrow read, answers what the full read implies, on every backend.

Parametrised (through ``backend_url``) over memory, dir, sqlite, postgresql and
zookeeper. The SQL backend reads it with one SELECT of a few columns and
counts the ``ready`` events in the database where it can; the document stores
take a few fields of each atom's document without building details, and the
directory's keeps them for the next read while each file keeps its signature.
Whatever the path, the answer is compared with :meth:`AtomStatus.of` of every
atom of ``get_flow_details``, and with the values the records were written
with.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest

from flowkit import exceptions as exc
from flowkit import states
from flowkit.listeners.events import META_KEY, CauseKind
from flowkit.persistence import backends
from flowkit.persistence._archived import ARCHIVE_KEY, CHUNK, Chunker
from flowkit.persistence.base import EVENT_LOG_KEY, READY_CAUSE, AtomStatus, Connection, ready_events
from flowkit.persistence.models import AtomDetail, FlowDetail, LogBook, RetryDetail, TaskDetail


def _uuid() -> str:
    return str(uuid.uuid4())


def _event(kind: Any, seq: int = 1) -> dict[str, Any]:
    return {"seq": seq, "old": "PENDING", "state": "RUNNING", "cause": {"kind": kind, "atoms": ["a"]}}


def _atom(name: str, state: str | None, intention: str = states.EXECUTE, **meta: Any) -> TaskDetail:
    ad = TaskDetail(name, _uuid())
    ad.state, ad.intention, ad.meta = state, intention, dict(meta)
    ad.results = {"big": "x" * 1000}  # what a poll need not read
    return ad


def _saved(conn: Connection, *atoms: AtomDetail) -> FlowDetail:
    book = LogBook("book")
    fd = FlowDetail("flow", _uuid())
    for ad in atoms:
        fd.add(ad)
    book.add(fd)
    conn.save_logbook(book)
    return fd


def _full(conn: Connection, fd_uuid: str) -> dict[str, AtomStatus]:
    return {ad.name: AtomStatus.of(ad) for ad in conn.get_flow_details(fd_uuid)}


def test_the_names_it_reads_the_event_log_by_are_the_event_logs() -> None:
    # The persistence layer sits below the listeners, so it names them again.
    assert EVENT_LOG_KEY == META_KEY and READY_CAUSE == CauseKind.READY


def test_atom_states_in_every_state_and_intention_answer_what_the_full_read_implies(conn: Connection) -> None:
    retry = RetryDetail("retry", _uuid())
    retry.state, retry.intention = states.RETRYING, states.RETRY
    retry.results = [(1, {}), (2, {})]
    retry.meta = {META_KEY: [_event(CauseKind.READY, 1), _event("retry", 2), _event(CauseKind.READY, 3)]}
    atoms = [
        _atom("never-run", None),
        _atom("pending", states.PENDING),
        _atom("running", states.RUNNING, **{META_KEY: [_event(CauseKind.READY)]}),
        _atom("done", states.SUCCESS, **{META_KEY: [_event(CauseKind.READY, 1), _event("returned", 2)]}),
        _atom("failed", states.FAILURE, progress=0.5),
        _atom("reverting", states.REVERTING, states.REVERT),
        _atom("reverted", states.REVERTED, states.REVERT),
        _atom("ignored", states.IGNORE, states.IGNORE),
        _atom("retried", states.PENDING, states.RETRY, **{META_KEY: [_event(CauseKind.READY)] * 3}),
        retry,
    ]
    fd = _saved(conn, *atoms)
    narrow = conn.get_atom_states(fd.uuid)
    assert narrow == _full(conn, fd.uuid)
    assert narrow == {ad.name: AtomStatus(ad.state, ad.intention, ready_events(ad.meta)) for ad in atoms}
    assert narrow["retried"] == AtomStatus(states.PENDING, states.RETRY, 3)
    assert narrow["retry"] == AtomStatus(states.RETRYING, states.RETRY, 2)
    assert narrow["never-run"] == AtomStatus(None, states.EXECUTE, 0)


def test_atom_states_follow_progress_written_after_the_first_save(conn: Connection) -> None:
    first = _atom("a", states.PENDING)
    fd = _saved(conn, first, _atom("b", None))
    first.state = states.RUNNING
    first.meta = {META_KEY: [_event(CauseKind.READY)]}
    added = _atom("spawned", states.PENDING)
    conn.save_flow_progress(fd, [first, added], True)
    narrow = conn.get_atom_states(fd.uuid)
    assert narrow == _full(conn, fd.uuid)
    assert set(narrow) == {"a", "b", "spawned"} and narrow["a"] == AtomStatus(
        states.RUNNING, states.EXECUTE, 1
    )


@pytest.mark.parametrize(
    "meta",
    [
        pytest.param({META_KEY: {"0": _event(CauseKind.READY)}}, id="log-not-a-list"),
        pytest.param({META_KEY: "ready"}, id="log-a-string"),
        pytest.param({META_KEY: None}, id="log-null"),
        pytest.param({META_KEY: [1, "ready", None, [_event(CauseKind.READY)]]}, id="entries-not-events"),
        pytest.param({META_KEY: [{"cause": "ready"}, {"cause": ["ready"]}]}, id="causes-not-objects"),
        pytest.param(
            {META_KEY: [_event(["ready"]), _event(1), _event(None), _event("READY")]}, id="kinds-not-ready"
        ),
        pytest.param({"progress": math.nan, META_KEY: [_event(CauseKind.READY)]}, id="nan-in-meta"),
        pytest.param(
            {"note": 'a "archive_of" in a string', META_KEY: [_event(CauseKind.READY)]}, id="marker-as-text"
        ),
        pytest.param({"other": [_event(CauseKind.READY)]}, id="events-under-another-key"),
    ],
)
def test_atom_states_count_the_ready_events_of_a_damaged_log_as_the_full_read(
    conn: Connection, meta: dict[str, Any]
) -> None:
    fd = _saved(conn, _atom("odd", states.SUCCESS, **meta), _atom("plain", states.SUCCESS))
    assert conn.get_atom_states(fd.uuid) == _full(conn, fd.uuid)


def test_atom_states_count_the_events_of_a_history_stored_in_chunks(conn: Connection) -> None:
    # A long event log (a loop's atom) is stored in chunks, partly in other records.
    looped = _atom("looped", states.RUNNING)
    fd = _saved(conn, looped, _atom("after", states.PENDING))
    looped.meta = {
        META_KEY: [_event(CauseKind.READY if i % 3 == 0 else "returned", i) for i in range(3 * CHUNK)]
    }
    stored, _marks = Chunker().stored_form([looped])
    assert len(stored) > 1  # archives besides the owner: the stored form is chunked
    conn.save_flow_progress(fd, stored, True)
    narrow = conn.get_atom_states(fd.uuid)
    assert narrow == _full(conn, fd.uuid)
    assert set(narrow) == {"looped", "after"} and narrow["looped"].ready == CHUNK


def test_atom_states_follow_every_write_read_in_between(conn: Connection) -> None:
    # A store may keep what it read (the directory's, by file signature): each write is seen.
    a, b = _atom("a", states.PENDING), _atom("b", states.PENDING)
    fd = _saved(conn, a, b)
    assert conn.get_atom_states(fd.uuid) == _full(conn, fd.uuid)
    for state in (states.RUNNING, states.SUCCESS, states.REVERTING, states.REVERTED):
        # RUNNING, SUCCESS and the like are spelled in as many letters: a document of the same size.
        a.state = state
        conn.save_flow_progress(fd, [a], False)
        narrow = conn.get_atom_states(fd.uuid)
        assert narrow == _full(conn, fd.uuid) and narrow["a"].state == state
    a.meta = {META_KEY: [_event(CauseKind.READY)]}
    conn.update_atom_details(a)
    assert conn.get_atom_states(fd.uuid)["a"] == AtomStatus(states.REVERTED, states.EXECUTE, 1)


def test_atom_states_leave_out_an_atom_moved_to_another_flow(conn: Connection) -> None:
    moving = _atom("moving", states.SUCCESS)
    first = _saved(conn, moving, _atom("stays", states.SUCCESS))
    assert set(conn.get_atom_states(first.uuid)) == {"moving", "stays"}
    second = _saved(conn)
    moving.state = states.RUNNING
    conn.save_flow_progress(second, [moving], False)
    assert (
        conn.get_atom_states(first.uuid)
        == _full(conn, first.uuid)
        == {"stays": AtomStatus.of(_atom("s", states.SUCCESS))}
    )
    assert conn.get_atom_states(second.uuid) == _full(conn, second.uuid)
    assert conn.get_atom_states(second.uuid)["moving"].state == states.RUNNING


def test_atom_states_read_records_without_metadata_or_intention_as_the_full_read(conn: Connection) -> None:
    no_meta = _atom("no-meta", states.SUCCESS)
    no_meta.meta = None  # type: ignore[assignment]  # as old records (TaskFlow's too) may hold
    no_intention = _atom("no-intention", states.PENDING)
    no_intention.intention = None  # type: ignore[assignment]
    listed = _atom("meta-a-list", states.FAILURE)
    listed.meta = [_event(CauseKind.READY)]  # type: ignore[assignment]
    fd = _saved(conn, no_meta, no_intention, listed)
    narrow = conn.get_atom_states(fd.uuid)
    assert narrow == _full(conn, fd.uuid)
    assert narrow["no-intention"] == AtomStatus(states.PENDING, states.EXECUTE, 0)
    assert narrow["meta-a-list"] == AtomStatus(states.FAILURE, states.EXECUTE, 0)


def test_atom_states_of_two_atoms_of_one_name_keep_the_later_as_the_full_read(conn: Connection) -> None:
    # The later one wins, at the first one's place; one of them a chunked history, read otherwise.
    looped = _atom("twin", states.RUNNING)
    fd = _saved(conn, looped, _atom("twin", states.PENDING), _atom("other", states.SUCCESS))
    looped.meta = {META_KEY: [_event(CauseKind.READY, i) for i in range(CHUNK + 1)]}
    stored, _marks = Chunker().stored_form([looped])
    conn.save_flow_progress(fd, stored, True)
    narrow = conn.get_atom_states(fd.uuid)
    full = _full(conn, fd.uuid)
    assert narrow == full and list(narrow) == list(full)
    assert narrow["twin"] in (
        AtomStatus(states.RUNNING, states.EXECUTE, CHUNK + 1),
        AtomStatus(states.PENDING, states.EXECUTE, 0),
    )


def test_atom_states_of_a_history_missing_a_chunk_count_what_the_full_read_shows(conn: Connection) -> None:
    # An owner whose chunks are not all there is shown in its stored form: its tail alone.
    owner = _atom("owner", states.RUNNING)
    fd = _saved(conn, owner)
    owner.meta = {META_KEY: [_event(CauseKind.READY, i) for i in range(2 * CHUNK + 1)]}
    stored, _marks = Chunker().stored_form([owner])
    kept = [ad for ad in stored if not ad.meta.get(ARCHIVE_KEY) or ad.meta[ARCHIVE_KEY]["chunk"] != 1]
    assert len(kept) == len(stored) - 1
    conn.save_flow_progress(fd, kept, True)
    narrow = conn.get_atom_states(fd.uuid)
    assert narrow == _full(conn, fd.uuid) and narrow["owner"].ready == 1


def test_atom_states_of_a_flow_without_atoms_are_empty(conn: Connection) -> None:
    fd = _saved(conn)
    assert conn.get_atom_states(fd.uuid) == {} == _full(conn, fd.uuid)


def test_atom_states_of_an_unknown_flow_raise_what_the_full_read_raises(conn: Connection) -> None:
    _saved(conn, _atom("a", states.SUCCESS))
    with pytest.raises(exc.NotFound) as full:
        conn.get_flow_details("no-such-flow")
    with pytest.raises(exc.NotFound) as narrow:
        conn.get_atom_states("no-such-flow")
    assert type(narrow.value) is type(full.value) and str(narrow.value) == str(full.value)
    assert "no-such-flow" in str(narrow.value)


def test_atom_states_read_through_a_backend_not_writable(backend_url: str, conn: Connection) -> None:
    if backend_url.startswith("memory"):
        pytest.skip("a memory store belongs to its one backend: no other backend can read it")
    fd = _saved(conn, _atom("a", states.SUCCESS, **{META_KEY: [_event(CauseKind.READY)]}), _atom("b", None))
    reader = backends.fetch({"connection": backend_url, "writable": False})
    try:
        with reader.get_connection() as ro:
            ro.upgrade()  # checks only, as the monitor's reader does
            assert ro.get_atom_states(fd.uuid) == _full(conn, fd.uuid)
            assert ro.get_atom_states(fd.uuid)["a"] == AtomStatus(states.SUCCESS, states.EXECUTE, 1)
            with pytest.raises(exc.NotFound):
                ro.get_atom_states("no-such-flow")
    finally:
        reader.close()


def test_the_sql_backend_reads_states_without_reading_atom_details(
    backend_url: str, conn: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The point of the read: on SQL, one SELECT of a few columns, no atom detail built.
    if not backend_url.startswith(("sqlite", "postgresql")):
        pytest.skip("the SQL backend's own statement")
    fd = _saved(
        conn,
        _atom("a", states.SUCCESS, **{META_KEY: [_event(CauseKind.READY), _event("returned", 2)]}),
        _atom("b", None, **{META_KEY: {"0": _event(CauseKind.READY)}}),
    )
    expected = _full(conn, fd.uuid)
    full_reads: list[str] = []
    read_whole = conn.get_flow_details

    def counted(fd_uuid: str, lazy: bool = False) -> FlowDetail:
        full_reads.append(fd_uuid)
        return read_whole(fd_uuid, lazy)

    monkeypatch.setattr(conn, "get_flow_details", counted)
    assert conn.get_atom_states(fd.uuid) == expected and full_reads == []
    # A history stored in chunks is read whole (its events are in other records too).
    looped = _atom("looped", states.RUNNING, **{META_KEY: [_event(CauseKind.READY, i) for i in range(CHUNK)]})
    stored, _marks = Chunker().stored_form([looped])
    conn.save_flow_progress(fd, stored, True)
    assert conn.get_atom_states(fd.uuid)["looped"].ready == CHUNK and full_reads == [fd.uuid]
    if backend_url.startswith("sqlite"):
        # As is metadata SQLite's JSON functions refuse (Python writes NaN as JSON does not).
        conn.save_flow_progress(fd, [_atom("nan", None, progress=math.nan)], False)
        full_reads.clear()
        assert conn.get_atom_states(fd.uuid)["nan"] == AtomStatus(None, states.EXECUTE, 0)
        assert full_reads == [fd.uuid]


def test_the_sql_backend_reads_states_in_one_statement_whether_the_flow_is_there_or_not(
    backend_url: str, backend: Any, conn: Connection
) -> None:
    # A query asking whether the flow exists ran before the states' at every poll of the monitor.
    if not backend_url.startswith(("sqlite", "postgresql")):
        pytest.skip("the SQL backend's own statement")
    from sqlalchemy import event

    fd = _saved(conn, _atom("a", states.SUCCESS, **{META_KEY: [_event(CauseKind.READY)]}), _atom("b", None))
    empty = _saved(conn)
    expected = _full(conn, fd.uuid)
    statements: list[str] = []

    def ran(_conn: Any, _cursor: Any, text: str, _params: Any, _context: Any, _many: bool) -> None:
        if text.lstrip().upper().startswith("SELECT"):
            statements.append(text)

    event.listen(backend.engine, "before_cursor_execute", ran)
    try:
        assert conn.get_atom_states(fd.uuid) == expected
        assert len(statements) == 1
        assert conn.get_atom_states(empty.uuid) == {}
        assert len(statements) == 2
        with pytest.raises(exc.NotFound, match="no-such-flow"):
            conn.get_atom_states("no-such-flow")
        assert len(statements) == 3
    finally:
        event.remove(backend.engine, "before_cursor_execute", ran)
