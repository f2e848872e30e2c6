"""The persistence contract: every backend passes the same tests.

Parametrised (through ``backend_url`` in ``conftest.py``) over memory, dir,
sqlite, postgresql and zookeeper. Orders that a backend need not keep (books
in a store, atoms in a flow) are compared as sets.
"""

from __future__ import annotations

import importlib
import uuid
from datetime import datetime
from typing import Any

import pytest

from flowkit import exceptions as exc
from flowkit import states
from flowkit.persistence import backends
from flowkit.persistence.base import Backend, Connection, FenceRefused, WriteFence
from flowkit.persistence.models import AtomDetail, FlowDetail, LogBook, RetryDetail, TaskDetail
from flowkit.types.failure import Failure


def _uuid() -> str:
    return str(uuid.uuid4())


def _failure(message: str = "boom") -> Failure:
    try:
        raise ValueError(message)
    except ValueError:
        return Failure()


def _task(name: str = "task", **fields: Any) -> TaskDetail:
    ad = TaskDetail(name, _uuid())
    for key, value in fields.items():
        setattr(ad, key, value)
    return ad


def _book_with(*flows: FlowDetail, name: str = "book") -> LogBook:
    book = LogBook(name)
    for fd in flows:
        book.add(fd)
    return book


def _flow(*atoms: AtomDetail, name: str = "flow") -> FlowDetail:
    fd = FlowDetail(name, _uuid())
    for ad in atoms:
        fd.add(ad)
    return fd


def _atom_uuids(fd: FlowDetail) -> set[str]:
    return {ad.uuid for ad in fd}


# -- setup and housekeeping ----------------------------------------------------


def test_upgrade_twice_is_harmless_and_validate_passes(conn: Connection) -> None:
    conn.upgrade()
    conn.validate()


def test_validate_fails_on_a_store_never_upgraded(backend_url: str, backend: Backend) -> None:
    if backend_url.startswith("memory"):
        pytest.skip("a memory store has no layout to create")
    with backend.get_connection() as fresh, pytest.raises(exc.StorageFailure):
        fresh.validate()


def test_connection_knows_its_backend(backend: Backend, conn: Connection) -> None:
    assert conn.backend is backend


def test_connection_is_of_its_modules_connection_class(backend_url: str, conn: Connection) -> None:
    # TaskFlow code names these classes (impl_dir.Connection, impl_zookeeper.ZkConnection...).
    classes = {
        "memory": ("impl_memory", "Connection"),
        "dir": ("impl_dir", "Connection"),
        "sqlite": ("impl_sqlalchemy", "Connection"),
        "postgresql": ("impl_sqlalchemy", "Connection"),
        "zookeeper": ("impl_zookeeper", "ZkConnection"),
    }
    module, name = next(found for scheme, found in classes.items() if backend_url.startswith(scheme))
    cls = getattr(importlib.import_module(f"flowkit.persistence.backends.{module}"), name)
    assert cls is not Connection
    assert isinstance(conn, cls)


def test_connection_is_a_context_manager(backend: Backend) -> None:
    with backend.get_connection() as conn:
        conn.upgrade()
        assert list(conn.get_logbooks()) == []


def test_closing_twice_is_harmless_and_the_backend_stays_usable(backend: Backend) -> None:
    first = backend.get_connection()
    first.upgrade()
    first.close()
    first.close()
    with backend.get_connection() as second:
        second.validate()
        assert list(second.get_logbooks()) == []


def test_new_store_has_no_logbooks(conn: Connection) -> None:
    assert list(conn.get_logbooks()) == []


# -- logbooks ------------------------------------------------------------------


def test_saved_logbook_reads_back_with_flows_and_atoms(conn: Connection) -> None:
    ad = _task("a", state=states.SUCCESS, results={"x": 1}, version="1.0")
    fd = _flow(ad, name="f")
    fd.state = states.RUNNING
    fd.meta = {"k": "v"}
    book = _book_with(fd, name="my book")
    book.meta = {"owner": "me", "n": [1, 2]}
    conn.save_logbook(book)

    got = conn.get_logbook(book.uuid)
    assert (got.name, got.uuid, got.meta) == ("my book", book.uuid, {"owner": "me", "n": [1, 2]})
    assert isinstance(got.created_at, datetime)
    got_fd = got.find(fd.uuid)
    assert got_fd is not None
    assert (got_fd.name, got_fd.state, got_fd.meta) == ("f", states.RUNNING, {"k": "v"})
    got_ad = got_fd.find(ad.uuid)
    assert isinstance(got_ad, TaskDetail)
    assert (got_ad.name, got_ad.state, got_ad.results, got_ad.version) == (
        "a",
        states.SUCCESS,
        {"x": 1},
        "1.0",
    )
    assert got_ad.intention == states.EXECUTE


def test_save_logbook_returns_a_fresh_merged_book(conn: Connection) -> None:
    ad = _task()
    book = _book_with(_flow(ad))
    saved = conn.save_logbook(book)
    assert saved is not book
    assert saved.uuid == book.uuid
    assert len(saved) == 1
    [fd] = list(saved)
    assert _atom_uuids(fd) == {ad.uuid}
    fd.meta["changed"] = True
    assert "changed" not in conn.get_flow_details(fd.uuid).meta


def test_saving_a_book_again_merges_into_the_stored_one(conn: Connection) -> None:
    first = _flow(_task("a"), name="first")
    book = _book_with(first)
    conn.save_logbook(book)

    again = LogBook(book.name, uuid=book.uuid)
    again.meta = {"version": 2}
    second = _flow(_task("b"), name="second")
    again.add(second)
    saved = conn.save_logbook(again)

    for got in (saved, conn.get_logbook(book.uuid)):
        assert got.meta == {"version": 2}
        assert {fd.uuid for fd in got} == {first.uuid, second.uuid}
        got_first = got.find(first.uuid)
        assert got_first is not None and len(got_first) == 1


def test_saving_a_book_merges_changed_flow_and_atom_fields(conn: Connection) -> None:
    ad = _task("a")
    fd = _flow(ad)
    book = _book_with(fd)
    conn.save_logbook(book)
    fd.state = states.SUCCESS
    ad.put(states.SUCCESS, [1, 2])
    conn.save_logbook(book)
    got = conn.get_flow_details(fd.uuid)
    assert got.state == states.SUCCESS
    got_ad = got.find(ad.uuid)
    assert got_ad is not None and (got_ad.state, got_ad.results) == (states.SUCCESS, [1, 2])


def test_get_logbook_of_unknown_uuid_raises_not_found_naming_it(conn: Connection) -> None:
    missing = _uuid()
    # TaskFlow's words (its SQL backend's), the same from every backend.
    with pytest.raises(exc.NotFound, match=f"^No logbook found with uuid '{missing}'"):
        conn.get_logbook(missing)


def test_get_logbooks_lists_every_book(conn: Connection) -> None:
    books = [_book_with(_flow(_task()), name=f"b{i}") for i in range(3)]
    for book in books:
        conn.save_logbook(book)
    got = {book.uuid: book for book in conn.get_logbooks()}
    assert set(got) == {book.uuid for book in books}
    assert all(len(book) == 1 for book in got.values())


def test_lazy_loading_leaves_the_level_below_out(conn: Connection) -> None:
    # TaskFlow's meaning: a lazy book has no flow details, a lazy flow detail no atom details.
    fd = _flow(_task("a"), _task("b"))
    book = _book_with(fd)
    conn.save_logbook(book)

    lazy_book = conn.get_logbook(book.uuid, lazy=True)
    assert (lazy_book.uuid, lazy_book.name, len(lazy_book)) == (book.uuid, book.name, 0)
    assert [len(got) for got in conn.get_logbooks(lazy=True)] == [0]
    assert [(got.uuid, len(got)) for got in conn.get_flows_for_book(book.uuid, lazy=True)] == [(fd.uuid, 0)]
    assert [len(got) for got in conn.get_flows_for_book(book.uuid)] == [2]
    assert len(conn.get_flow_details(fd.uuid, lazy=True)) == 0
    assert len(conn.get_flow_details(fd.uuid)) == 2
    assert [len(got_fd) for got in conn.get_logbooks() for got_fd in got] == [2]


def test_get_flows_for_book_returns_its_flows_only(conn: Connection) -> None:
    mine, other = _flow(_task(), name="mine"), _flow(_task(), name="other")
    book = _book_with(mine)
    conn.save_logbook(book)
    conn.save_logbook(_book_with(other))
    flows = list(conn.get_flows_for_book(book.uuid))
    assert [fd.uuid for fd in flows] == [mine.uuid]
    assert len(flows[0]) == 1


def test_get_flows_for_book_of_unknown_uuid_raises_not_found(conn: Connection) -> None:
    missing = _uuid()
    with pytest.raises(exc.NotFound, match=f"^No logbook found with uuid '{missing}'"):
        list(conn.get_flows_for_book(missing))


def test_a_book_without_flows_and_a_flow_without_atoms_list_nothing(conn: Connection) -> None:
    fd = _flow()
    conn.save_logbook(_book_with(fd))
    empty = _book_with()
    conn.save_logbook(empty)
    assert list(conn.get_flows_for_book(empty.uuid)) == []
    assert len(conn.get_logbook(empty.uuid)) == 0
    assert list(conn.get_atoms_for_flow(fd.uuid)) == []


# -- flow details ----------------------------------------------------------------


def test_get_flow_details_of_unknown_uuid_raises_not_found(conn: Connection) -> None:
    missing = _uuid()
    with pytest.raises(exc.NotFound, match=f"^No flow details found with uuid '{missing}'"):
        conn.get_flow_details(missing)


def test_update_flow_details_of_unsaved_flow_raises_not_found(conn: Connection) -> None:
    fd = _flow(_task())
    with pytest.raises(exc.NotFound, match=fd.uuid):
        conn.update_flow_details(fd)
    with pytest.raises(exc.NotFound):
        conn.get_atom_details(next(iter(fd)).uuid)


def test_update_flow_details_merges_fields_and_upserts_atoms(conn: Connection) -> None:
    old = _task("old")
    fd = _flow(old)
    conn.save_logbook(_book_with(fd))

    change = FlowDetail(fd.name, fd.uuid)
    change.state = states.REVERTING
    change.meta = {"m": 1}
    new = _task("new", state=states.PENDING)
    change.add(new)
    updated = conn.update_flow_details(change)

    for got in (updated, conn.get_flow_details(fd.uuid)):
        assert (got.state, got.meta) == (states.REVERTING, {"m": 1})
        assert _atom_uuids(got) == {old.uuid, new.uuid}
    assert updated is not change


def test_get_atoms_for_flow_returns_its_atoms(conn: Connection) -> None:
    atoms = [_task(f"t{i}") for i in range(4)]
    fd = _flow(*atoms)
    conn.save_logbook(_book_with(fd))
    assert {ad.uuid for ad in conn.get_atoms_for_flow(fd.uuid)} == {ad.uuid for ad in atoms}


def test_get_atoms_for_flow_of_unknown_uuid_raises_not_found(conn: Connection) -> None:
    missing = _uuid()
    with pytest.raises(exc.NotFound, match=f"^No flow details found with uuid '{missing}'"):
        list(conn.get_atoms_for_flow(missing))


# -- atom details ----------------------------------------------------------------


def test_get_atom_details_of_unknown_uuid_raises_not_found(conn: Connection) -> None:
    missing = _uuid()
    with pytest.raises(exc.NotFound, match=f"^No atom details found with uuid '{missing}'"):
        conn.get_atom_details(missing)


def test_update_atom_details_of_unsaved_atom_raises_not_found(conn: Connection) -> None:
    ad = _task()
    with pytest.raises(exc.NotFound, match=ad.uuid):
        conn.update_atom_details(ad)


def _takes_ignore_missing(backend_url: str) -> None:
    # TaskFlow's path-based connections (memory, dir, ZooKeeper) take ignore_missing=;
    # its SQLAlchemy one does not, and its tables cannot hold a detail without a parent.
    if backend_url.startswith(("sqlite", "postgresql")):
        pytest.skip("the SQLAlchemy connection takes no ignore_missing=, as in TaskFlow")


def test_update_atom_details_ignore_missing_writes_an_unsaved_atom_on_its_own(
    backend_url: str, conn: Connection
) -> None:
    _takes_ignore_missing(backend_url)
    ad = _task("alone", state=states.SUCCESS, results=[1, 2])
    written = conn.update_atom_details(ad, ignore_missing=True)
    assert (written.uuid, written.state, written.results) == (ad.uuid, states.SUCCESS, [1, 2])
    assert conn.get_atom_details(ad.uuid).results == [1, 2]

    # A flow saved later with that atom in it adopts it.
    fd = _flow(_task("b"))
    conn.save_logbook(_book_with(fd))
    adopting = FlowDetail(fd.name, fd.uuid)
    adopting.add(ad)
    conn.update_flow_details(adopting)
    assert ad.uuid in {got.uuid for got in conn.get_atoms_for_flow(fd.uuid)}
    # Once stored, ignore_missing changes nothing: the update merges.
    ad.state = states.REVERTED
    assert conn.update_atom_details(ad, ignore_missing=True).state == states.REVERTED
    assert conn.get_atom_details(ad.uuid).state == states.REVERTED


def test_update_flow_details_ignore_missing_writes_an_unsaved_flow_on_its_own(
    backend_url: str, conn: Connection
) -> None:
    _takes_ignore_missing(backend_url)
    ad = _task("a")
    fd = _flow(ad)
    fd.state = states.RUNNING
    written = conn.update_flow_details(fd, ignore_missing=True)
    assert (written.uuid, written.state, _atom_uuids(written)) == (fd.uuid, states.RUNNING, {ad.uuid})
    assert _atom_uuids(conn.get_flow_details(fd.uuid)) == {ad.uuid}
    assert conn.get_atom_details(ad.uuid).name == "a"
    assert list(conn.get_logbooks()) == []

    # A book saved later with that flow in it adopts it, and destroying the book removes it.
    book = _book_with(fd)
    conn.save_logbook(book)
    assert _atom_uuids(conn.get_logbook(book.uuid).find(fd.uuid)) == {ad.uuid}  # type: ignore[arg-type]
    conn.destroy_logbook(book.uuid)
    with pytest.raises(exc.NotFound):
        conn.get_flow_details(fd.uuid)


def test_merging_a_detail_of_another_kind_is_refused_and_nothing_changes(conn: Connection) -> None:
    # A task detail does not merge with a retry detail of the same uuid (TaskFlow's models refuse).
    ad = _task("a", state=states.SUCCESS, results=1)
    fd = _flow(ad)
    book = _book_with(fd)
    conn.save_logbook(book)
    other_kind = RetryDetail("a", ad.uuid)
    with pytest.raises(exc.NotImplementedError, match="task details"):
        conn.update_atom_details(other_kind)
    changed_flow = FlowDetail(fd.name, fd.uuid)
    changed_flow.add(other_kind)
    with pytest.raises(exc.NotImplementedError, match="task details"):
        conn.update_flow_details(changed_flow)
    changed_book = LogBook(book.name, uuid=book.uuid)
    changed_book.add(changed_flow)
    with pytest.raises(exc.NotImplementedError, match="task details"):
        conn.save_logbook(changed_book)
    got = conn.get_atom_details(ad.uuid)
    assert isinstance(got, TaskDetail) and got.results == 1


def test_update_atom_details_stores_every_field(conn: Connection) -> None:
    ad = _task("a")
    fd = _flow(ad)
    conn.save_logbook(_book_with(fd))

    ad.state = states.REVERT_FAILURE
    ad.intention = states.REVERT
    ad.failure = _failure("exec")
    ad.revert_failure = _failure("revert")
    ad.revert_results = {"undo": True}
    ad.meta = {"progress": 0.5}
    ad.version = "2.1"
    updated = conn.update_atom_details(ad)

    for got in (updated, conn.get_atom_details(ad.uuid)):
        assert isinstance(got, TaskDetail)
        assert (got.state, got.intention, got.revert_results) == (
            states.REVERT_FAILURE,
            states.REVERT,
            {"undo": True},
        )
        assert (got.meta, got.version) == ({"progress": 0.5}, "2.1")
        assert got.failure is not None and got.failure.exception_str == "exec"
        assert got.revert_failure is not None and got.revert_failure.exception_str == "revert"
    assert updated is not ad


def test_results_and_failures_round_trip_through_json(conn: Connection) -> None:
    failure = _failure("bad value")
    ad = _task("a", state=states.FAILURE, results=(1, [2, (3,)], {"k": (4,)}), failure=failure)
    fd = _flow(ad)
    conn.save_logbook(_book_with(fd))
    got = conn.get_atom_details(ad.uuid)
    assert got.results == [1, [2, [3]], {"k": [4]}]
    assert got.failure is not None
    assert got.failure.matches(failure)
    assert got.failure.check(ValueError) is ValueError
    assert got.failure.traceback_str == failure.traceback_str
    assert got.failure.exception is None  # the live exception never crosses storage


def test_retry_history_round_trips_with_its_failures(conn: Connection) -> None:
    retry = RetryDetail("retry", _uuid())
    retry.put(states.SUCCESS, 1)
    retry.results[-1][1]["task"] = _failure("first try")
    retry.put(states.SUCCESS, {"attempt": 2})
    fd = _flow(retry)
    conn.save_logbook(_book_with(fd))

    got = conn.get_atom_details(retry.uuid)
    assert isinstance(got, RetryDetail)
    assert [value for value, _ in got.results] == [1, {"attempt": 2}]
    assert got.results[0][1]["task"].exception_str == "first try"
    assert got.last_results == {"attempt": 2}
    assert got.last_failures == {}


# -- fresh objects -------------------------------------------------------------


def test_changing_returned_objects_does_not_change_the_store(conn: Connection) -> None:
    ad = _task("a", results={"list": [1]})
    fd = _flow(ad)
    book = _book_with(fd)
    conn.save_logbook(book)

    got = conn.get_logbook(book.uuid)
    got.meta["x"] = 1
    got_fd = got.find(fd.uuid)
    assert got_fd is not None
    got_fd.meta["y"] = 2
    got_fd.add(_task("sneaky"))
    got_ad = got_fd.find(ad.uuid)
    assert got_ad is not None
    got_ad.results["list"].append(2)

    again = conn.get_logbook(book.uuid)
    assert again.meta == {}
    again_fd = again.find(fd.uuid)
    assert again_fd is not None and again_fd.meta == {} and len(again_fd) == 1
    assert conn.get_atom_details(ad.uuid).results == {"list": [1]}


def test_changing_saved_objects_afterwards_does_not_change_the_store(conn: Connection) -> None:
    ad = _task("a", results={"list": [1]})
    fd = _flow(ad)
    book = _book_with(fd)
    conn.save_logbook(book)
    book.meta["late"] = True
    fd.state = states.FAILURE
    ad.results["list"].append(2)
    assert conn.get_logbook(book.uuid).meta == {}
    assert conn.get_flow_details(fd.uuid).state is None
    assert conn.get_atom_details(ad.uuid).results == {"list": [1]}


def test_each_read_returns_new_objects(conn: Connection) -> None:
    fd = _flow(_task())
    book = _book_with(fd)
    conn.save_logbook(book)
    assert conn.get_logbook(book.uuid) is not conn.get_logbook(book.uuid)
    assert conn.get_flow_details(fd.uuid) is not conn.get_flow_details(fd.uuid)


# -- save_flow_progress --------------------------------------------------------


def test_save_flow_progress_inserts_new_atoms_and_overwrites_known_ones(conn: Connection) -> None:
    known = _task("known", state=states.FAILURE, failure=_failure(), meta={"old": True})
    fd = _flow(known)
    conn.save_logbook(_book_with(fd))

    rewritten = TaskDetail("known", known.uuid)
    rewritten.state = states.SUCCESS
    rewritten.results = [1, 2]
    fresh = _task("fresh", state=states.RUNNING)
    fd.state = states.RUNNING
    conn.save_flow_progress(fd, [rewritten, fresh])

    got = conn.get_flow_details(fd.uuid)
    assert got.state == states.RUNNING
    assert _atom_uuids(got) == {known.uuid, fresh.uuid}
    got_known = got.find(known.uuid)
    assert got_known is not None
    # Overwritten whole: no merge with what was stored before.
    assert (got_known.state, got_known.results, got_known.failure, got_known.meta) == (
        states.SUCCESS,
        [1, 2],
        None,
        {},
    )
    got_fresh = conn.get_atom_details(fresh.uuid)
    assert got_fresh.state == states.RUNNING


def test_save_flow_progress_writes_flow_state_and_meta_only_when_flow_changed(conn: Connection) -> None:
    fd = _flow()
    fd.state = states.PENDING
    conn.save_logbook(_book_with(fd))

    fd.state = states.RUNNING
    fd.meta = {"m": 1}
    conn.save_flow_progress(fd, [], flow_changed=False)
    got = conn.get_flow_details(fd.uuid)
    assert (got.state, got.meta) == (states.PENDING, {})

    conn.save_flow_progress(fd, [], flow_changed=True)
    got = conn.get_flow_details(fd.uuid)
    assert (got.state, got.meta) == (states.RUNNING, {"m": 1})


def test_save_flow_progress_without_flow_change_still_adds_atoms(conn: Connection) -> None:
    fd = _flow()
    conn.save_logbook(_book_with(fd))
    ad = _task("a", state=states.SUCCESS, results=7)
    conn.save_flow_progress(fd, [ad], flow_changed=False)
    got = conn.get_flow_details(fd.uuid)
    assert _atom_uuids(got) == {ad.uuid}
    assert conn.get_atom_details(ad.uuid).results == 7


def test_save_flow_progress_for_unknown_flow_raises_not_found(conn: Connection) -> None:
    fd = _flow()
    ad = _task()
    with pytest.raises(exc.NotFound, match=fd.uuid):
        conn.save_flow_progress(fd, [ad])
    with pytest.raises(exc.NotFound):
        conn.get_atom_details(ad.uuid)


def test_save_flow_progress_moves_an_atom_of_another_flow_under_this_one(conn: Connection) -> None:
    # "Under flow_detail", as the docstring says (the document backends once lost it from both
    # flows: their hot path learnt only whether an atom existed, not under which flow).
    ad = _task("a")
    first, second = _flow(ad, name="first"), _flow(name="second")
    conn.save_logbook(_book_with(first, second))
    conn.save_flow_progress(second, [ad])
    assert [got.uuid for got in conn.get_atoms_for_flow(second.uuid)] == [ad.uuid]
    assert list(conn.get_atoms_for_flow(first.uuid)) == []
    conn.save_flow_progress(first, [ad], flow_changed=False)  # and back, the flow unchanged
    assert [got.uuid for got in conn.get_atoms_for_flow(first.uuid)] == [ad.uuid]
    assert list(conn.get_atoms_for_flow(second.uuid)) == []
    conn.save_flow_progress(first, [ad], flow_changed=False)  # already there: stays
    assert [got.uuid for got in conn.get_flow_details(first.uuid)] == [ad.uuid]


def test_save_flow_progress_keeps_retry_histories(conn: Connection) -> None:
    fd = _flow()
    conn.save_logbook(_book_with(fd))
    retry = RetryDetail("r", _uuid())
    retry.put(states.SUCCESS, "first")
    retry.results[-1][1]["t"] = _failure()
    conn.save_flow_progress(fd, [retry])
    got = conn.get_atom_details(retry.uuid)
    assert isinstance(got, RetryDetail)
    assert got.results[0][0] == "first"
    assert got.results[0][1]["t"].check(ValueError) is ValueError


# -- deleting ------------------------------------------------------------------


def test_destroy_logbook_removes_its_flows_and_atoms(conn: Connection) -> None:
    ad = _task()
    fd = _flow(ad)
    book = _book_with(fd)
    keep_ad = _task()
    keep = _book_with(_flow(keep_ad))
    conn.save_logbook(book)
    conn.save_logbook(keep)

    conn.destroy_logbook(book.uuid)
    with pytest.raises(exc.NotFound):
        conn.get_logbook(book.uuid)
    with pytest.raises(exc.NotFound):
        conn.get_flow_details(fd.uuid)
    with pytest.raises(exc.NotFound):
        conn.get_atom_details(ad.uuid)
    assert [got.uuid for got in conn.get_logbooks()] == [keep.uuid]
    assert conn.get_atom_details(keep_ad.uuid).uuid == keep_ad.uuid


def test_destroy_unknown_logbook_raises_not_found(conn: Connection) -> None:
    missing = _uuid()
    with pytest.raises(exc.NotFound, match=missing):
        conn.destroy_logbook(missing)


def test_clear_all_removes_everything_and_the_store_stays_usable(conn: Connection) -> None:
    ad = _task()
    fd = _flow(ad)
    conn.save_logbook(_book_with(fd))
    conn.save_logbook(_book_with(_flow()))
    conn.clear_all()
    assert list(conn.get_logbooks()) == []
    with pytest.raises(exc.NotFound):
        conn.get_flow_details(fd.uuid)
    with pytest.raises(exc.NotFound):
        conn.get_atom_details(ad.uuid)
    book = _book_with(_flow(_task()))
    conn.save_logbook(book)
    assert [got.uuid for got in conn.get_logbooks()] == [book.uuid]


# -- sharing -------------------------------------------------------------------


def test_two_connections_of_one_backend_see_each_others_writes(backend: Backend, conn: Connection) -> None:
    with backend.get_connection() as other:
        ad = _task()
        fd = _flow(ad)
        book = _book_with(fd)
        conn.save_logbook(book)
        assert other.get_logbook(book.uuid).uuid == book.uuid

        fd.state = states.SUCCESS
        ad.state = states.SUCCESS
        other.save_flow_progress(fd, [ad])
        assert conn.get_flow_details(fd.uuid).state == states.SUCCESS
        assert conn.get_atom_details(ad.uuid).state == states.SUCCESS


def test_a_second_backend_on_the_same_url_sees_the_data(backend_url: str, conn: Connection) -> None:
    if backend_url.startswith("memory"):
        pytest.skip("memory backends share nothing by design")
    book = _book_with(_flow(_task()))
    conn.save_logbook(book)
    with backends.backend({"connection": backend_url}) as second, second.get_connection() as other:
        got = other.get_logbook(book.uuid)
        assert len(got) == 1


# -- write fences (every backend here has them) ------------------------------


def _fenced_flow(conn: Connection) -> FlowDetail:
    assert conn.supports_fences
    fd = _flow(_task("a", state=states.PENDING))
    conn.save_logbook(_book_with(fd))
    return fd


def test_fence_flow_reads_the_flow_and_its_fenced_writes_go_through(conn: Connection) -> None:
    fd = _fenced_flow(conn)
    fence = WriteFence("job-1", 3)
    read = conn.fence_flow(fd.uuid, fence)
    assert read.uuid == fd.uuid and [ad.name for ad in read] == ["a"]
    fd.state = states.RUNNING
    conn.save_flow_progress_fenced(fd, [_task("b", results=1)], True, fence)
    stored = conn.get_flow_details(fd.uuid)
    assert stored.state == states.RUNNING and {ad.name for ad in stored} == {"a", "b"}


def test_flow_fence_reads_the_fence_held_now(conn: Connection) -> None:
    fd = _fenced_flow(conn)
    assert conn.flow_fence(fd.uuid) is None
    conn.fence_flow(fd.uuid, WriteFence("job-1", 1))
    conn.fence_flow(fd.uuid, WriteFence("job-1", 2))
    assert conn.flow_fence(fd.uuid) == WriteFence("job-1", 2)
    with pytest.raises(exc.NotFound):
        conn.flow_fence("no-such-flow")


def test_take_fence_reads_the_flow_and_the_fence_it_replaced_in_one_step(conn: Connection) -> None:
    # What a conductor taking a job asks: the flow, and whether an earlier claim of the job fenced it.
    fd = _fenced_flow(conn)
    first = conn.take_fence(fd.uuid, WriteFence("job-1", 1))
    assert first.replaced is None and first.flow.uuid == fd.uuid and [ad.name for ad in first.flow] == ["a"]
    again = conn.take_fence(fd.uuid, WriteFence("job-1", 2), take_over=False)
    assert again.replaced == WriteFence("job-1", 1)
    taken = conn.take_fence(fd.uuid, WriteFence("job-2", 1), take_over=WriteFence("job-1", 2))
    assert taken.replaced == WriteFence("job-1", 2) and conn.flow_fence(fd.uuid) == WriteFence("job-2", 1)
    with pytest.raises(FenceRefused) as refused:
        conn.take_fence(fd.uuid, WriteFence("job-3", 1), take_over=False)
    assert refused.value.current == WriteFence("job-2", 1)
    with pytest.raises(exc.NotFound):
        conn.take_fence("no-such-flow", WriteFence("job-1", 1))


def test_fenced_progress_moves_an_atom_of_another_flow_under_this_one(conn: Connection) -> None:
    ad = _task("a")
    first, second = _flow(ad, name="first"), _flow(name="second")
    conn.save_logbook(_book_with(first, second))
    fence = WriteFence("job-1", 1)
    conn.fence_flow(second.uuid, fence)
    for _ in range(2):  # moved, then saved again in place
        conn.save_flow_progress_fenced(second, [ad], False, fence)
        assert [got.uuid for got in conn.get_atoms_for_flow(second.uuid)] == [ad.uuid]
        assert list(conn.get_atoms_for_flow(first.uuid)) == []


def test_a_later_claim_takes_the_fence_and_the_earlier_ones_writes_are_refused(conn: Connection) -> None:
    fd = _fenced_flow(conn)
    old, new = WriteFence("job-1", 3), WriteFence("job-1", 4)
    conn.fence_flow(fd.uuid, old)
    conn.fence_flow(fd.uuid, new)
    fd.state = states.FAILURE
    with pytest.raises(FenceRefused) as refused:
        conn.save_flow_progress_fenced(fd, [_task("late")], True, old)
    assert refused.value.flow == fd.uuid and refused.value.fence == old and refused.value.current == new
    assert isinstance(refused.value, exc.StorageFailure)
    stored = conn.get_flow_details(fd.uuid)
    assert stored.state != states.FAILURE and {ad.name for ad in stored} == {"a"}, "a refused write landed"
    conn.save_flow_progress_fenced(fd, [_task("b")], False, new)


def test_an_earlier_claim_cannot_take_the_fence_back(conn: Connection) -> None:
    fd = _fenced_flow(conn)
    conn.fence_flow(fd.uuid, WriteFence("job-1", 4))
    with pytest.raises(FenceRefused) as refused:
        conn.fence_flow(fd.uuid, WriteFence("job-1", 3))
    assert refused.value.current == WriteFence("job-1", 4)
    conn.fence_flow(fd.uuid, WriteFence("job-1", 4))  # the holder again: harmless


def test_another_jobs_claim_takes_the_fence_whatever_its_token(conn: Connection) -> None:
    fd = _fenced_flow(conn)
    conn.fence_flow(fd.uuid, WriteFence("job-1", 40))
    conn.fence_flow(fd.uuid, WriteFence("job-2", 1))
    with pytest.raises(FenceRefused):
        conn.save_flow_progress_fenced(fd, [], True, WriteFence("job-1", 40))


def test_a_fence_not_taken_over_from_another_job_refuses_naming_the_holder(conn: Connection) -> None:
    # What conductors ask first: another job may be running the flow detail.
    fd = _fenced_flow(conn)
    held = WriteFence("job-1", 40)
    conn.fence_flow(fd.uuid, held)
    with pytest.raises(FenceRefused, match="job-1") as refused:
        conn.fence_flow(fd.uuid, WriteFence("job-2", 1), take_over=False)
    assert refused.value.current == held
    conn.save_flow_progress_fenced(fd, [], True, held)  # still the first job's
    conn.fence_flow(fd.uuid, WriteFence("job-1", 41), take_over=False)  # its own later claim may
    unfenced = _fenced_flow(conn)
    conn.fence_flow(unfenced.uuid, WriteFence("job-2", 1), take_over=False)  # nobody's: taken


def test_a_fence_taken_over_from_one_named_fence_only_is_a_compare_and_set(conn: Connection) -> None:
    fd = _fenced_flow(conn)
    conn.fence_flow(fd.uuid, WriteFence("job-1", 40))
    conn.fence_flow(fd.uuid, WriteFence("job-1", 41))  # moved since the caller looked
    with pytest.raises(FenceRefused) as refused:
        conn.fence_flow(fd.uuid, WriteFence("job-2", 1), take_over=WriteFence("job-1", 40))
    assert refused.value.current == WriteFence("job-1", 41)
    conn.fence_flow(fd.uuid, WriteFence("job-2", 1), take_over=WriteFence("job-1", 41))
    with pytest.raises(FenceRefused):
        conn.save_flow_progress_fenced(fd, [], True, WriteFence("job-1", 41))
    conn.save_flow_progress_fenced(fd, [], True, WriteFence("job-2", 1))


def test_fenced_writes_to_an_unfenced_flow_are_refused(conn: Connection) -> None:
    fd = _fenced_flow(conn)
    with pytest.raises(FenceRefused) as refused:
        conn.save_flow_progress_fenced(fd, [_task("b")], True, WriteFence("job-1", 1))
    assert refused.value.current is None


def test_fencing_an_unknown_flow_raises_not_found(conn: Connection) -> None:
    _fenced_flow(conn)
    missing = _uuid()
    with pytest.raises(exc.NotFound, match=missing):
        conn.fence_flow(missing, WriteFence("job-1", 1))
    unsaved = _flow()
    with pytest.raises(exc.NotFound, match=unsaved.uuid):
        conn.save_flow_progress_fenced(unsaved, [], True, WriteFence("job-1", 1))
