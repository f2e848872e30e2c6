"""The document stores save progress at a cost independent of the flow's size.

The engine calls ``save_flow_progress`` once per task, so a save must touch
only the flow's own document and the atoms it is given, never a record that
grows with the flow. These tests count what goes through the
:class:`DocumentStore` interface (documents and bytes read and written,
listings) instead of timing anything; the counts for a 10-atom flow and a
1,000-atom flow must be identical.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pytest

from flowkit import exceptions as exc
from flowkit import states
from flowkit.persistence import backends
from flowkit.persistence.backends._path_based import (
    ATOMS,
    Batch,
    DocumentConnection,
    DocumentStore,
    Members,
    Read,
)
from flowkit.persistence.base import Backend
from flowkit.persistence.models import FlowDetail, LogBook, TaskDetail

DOCUMENT_STORES = ["memory", "dir", "zookeeper"]


@dataclass
class Counts:
    docs_read: int = 0
    atoms_read: int = 0  # atom documents among docs_read
    bytes_read: int = 0
    listed: int = 0  # keys or members returned by a listing
    docs_written: int = 0  # documents, links and flow version bumps
    bytes_written: int = 0
    commits: int = 0

    def clear(self) -> None:
        for field in fields(self):
            setattr(self, field.name, 0)


class CountingStore(DocumentStore):
    """Passes everything to another store, counting what is read and written."""

    def __init__(self, inner: DocumentStore) -> None:
        self.inner = inner
        self.optimistic = inner.optimistic
        self.counts = Counts()

    def _reads(self, found: Sequence[Read | None], kind: str = "") -> None:
        self.counts.docs_read += len(found)
        if kind == ATOMS:
            self.counts.atoms_read += len(found)
        self.counts.bytes_read += sum(len(item.data) for item in found if item is not None)

    def describe(self) -> str:
        return self.inner.describe()

    def read(self, kind: str, key: str) -> Read | None:
        found = self.inner.read(kind, key)
        self._reads([found], kind)
        return found

    def read_many(self, kind: str, keys: Sequence[str]) -> list[Read | None]:
        found = self.inner.read_many(kind, keys)
        self._reads(found, kind)
        return found

    def read_many_checked(
        self, kind: str, keys: Sequence[str], seen: Mapping[tuple[str, str], Any]
    ) -> tuple[list[Read | None], bool | None]:
        found, checked = self.inner.read_many_checked(kind, keys, seen)
        self._reads(found, kind)
        self.counts.docs_read += len(seen) if checked is not None else 0
        return found, checked

    def guess_exists(self, kind: str, keys: Sequence[str]) -> list[bool] | None:
        return self.inner.guess_exists(kind, keys)

    def linked_many(self, flow: str, atoms: Sequence[str]) -> list[bool]:
        self.counts.docs_read += len(atoms)
        return self.inner.linked_many(flow, atoms)

    def read_and_linked(self, flow: str, atoms: Sequence[str]) -> tuple[Read | None, list[bool]]:
        found, linked = self.inner.read_and_linked(flow, atoms)
        self._reads([found])
        self.counts.docs_read += len(atoms)
        return found, linked

    def members(self, flow: str) -> Members:
        found = self.inner.members(flow)
        self.counts.listed += len(found.uuids)
        return found

    def read_flow(self, key: str) -> tuple[Read | None, Members]:
        found, members = self.inner.read_flow(key)
        self._reads([found])
        self.counts.listed += len(members.uuids)
        return found, members

    def keys(self, kind: str) -> list[str]:
        found = self.inner.keys(kind)
        self.counts.listed += len(found)
        return found

    def writing(self) -> AbstractContextManager[None]:
        return self.inner.writing()

    def reading(self) -> AbstractContextManager[None]:
        return self.inner.reading()

    def unchanged(self, seen: Mapping[tuple[str, str], Any]) -> bool:
        self.counts.docs_read += len(seen)
        return self.inner.unchanged(seen)

    def commit(self, batch: Batch) -> None:
        self.counts.commits += 1
        self.counts.docs_written += len(batch.writes) + len(batch.links) + len(batch.touched)
        self.counts.bytes_written += sum(len(data) for data in batch.writes.values() if data is not None)
        self.inner.commit(batch)

    def ensure(self) -> None:
        self.inner.ensure()

    def clear(self) -> None:
        self.inner.clear()


@pytest.fixture(params=DOCUMENT_STORES)
def document_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "memory":
        url = "memory://"
    elif request.param == "dir":
        url = f"dir://{tmp_path}/store"
    else:
        url = str(request.getfixturevalue("zookeeper_path_url"))
    made = backends.fetch({"connection": url})
    try:
        yield made
    finally:
        made.close()


def _inner_store(backend: Backend) -> DocumentStore:
    started = getattr(backend, "_started_store", None)
    store = started() if started is not None else backend._store  # type: ignore[attr-defined]
    assert isinstance(store, DocumentStore)
    return store


def _atom(index: int, state: str = states.PENDING) -> TaskDetail:
    # Same-length names and uuids, so documents of every flow have the same size.
    ad = TaskDetail(f"task-{index:06d}", str(uuid.uuid4()))
    ad.state = state
    return ad


def _save_costs(backend: Backend, size: int) -> dict[str, Counts]:
    """What one save of one new and one changed atom costs in a flow of ``size`` atoms."""
    store = CountingStore(_inner_store(backend))
    conn = DocumentConnection(backend, store)
    conn.upgrade()
    book = LogBook("scaling")
    fd = FlowDetail("flow", str(uuid.uuid4()))
    book.add(fd)
    conn.save_logbook(book)
    atoms = [_atom(i) for i in range(size)]
    conn.save_flow_progress(fd, atoms, flow_changed=True)  # the engine's prepare step
    costs: dict[str, Counts] = {}
    for label, flow_changed in (("atoms only", False), ("atoms and flow", True)):
        atoms[0].state = states.RUNNING if flow_changed else states.SUCCESS
        fd.state = states.RUNNING
        store.counts.clear()
        conn.save_flow_progress(fd, [_atom(size + len(costs)), atoms[0]], flow_changed=flow_changed)
        costs[label] = Counts(**vars(store.counts))
    assert len(conn.get_flow_details(fd.uuid)) == size + 2
    return costs


def test_saving_progress_costs_the_same_in_a_small_and_a_large_flow(document_backend: Backend) -> None:
    small = _save_costs(document_backend, 10)
    large = _save_costs(document_backend, 1000)
    assert small == large
    for counts in large.values():
        assert counts.listed == 0
        assert counts.commits == 1
        # At most: the flow document, one link probe per atom, and the new atom (not
        # linked: it might be another flow's) read; two atoms, a link, the flow's
        # version bump and the flow document written.
        assert counts.docs_read <= 4
        assert counts.docs_written <= 5


def test_saving_progress_reads_an_atom_only_to_move_it_from_another_flow(document_backend: Backend) -> None:
    # The hot path learns whether each atom is linked to the flow, never what it holds;
    # only an atom linked elsewhere is read, to unlink it there.
    store = CountingStore(_inner_store(document_backend))
    conn = DocumentConnection(document_backend, store)
    conn.upgrade()
    book = LogBook("reads")
    first, second = FlowDetail("first", str(uuid.uuid4())), FlowDetail("second", str(uuid.uuid4()))
    book.add(first)
    book.add(second)
    conn.save_logbook(book)
    atoms = [_atom(i) for i in range(3)]
    conn.save_flow_progress(first, atoms)
    for flow_changed in (False, True, False):
        atoms[0].state = states.RUNNING if flow_changed else states.SUCCESS
        store.counts.clear()
        conn.save_flow_progress(first, atoms[:2], flow_changed=flow_changed)
        assert store.counts.atoms_read == 0
    store.counts.clear()
    conn.save_flow_progress(second, [atoms[2]], flow_changed=False)
    assert store.counts.atoms_read == 1
    assert [ad.uuid for ad in conn.get_flow_details(second.uuid)] == [atoms[2].uuid]
    assert {ad.uuid for ad in conn.get_flow_details(first.uuid)} == {ad.uuid for ad in atoms[:2]}


def test_a_flow_lists_exactly_its_atoms_after_saves_and_updates(document_backend: Backend) -> None:
    with document_backend.get_connection() as conn:
        conn.upgrade()
        book = LogBook("members")
        first, second = FlowDetail("first", str(uuid.uuid4())), FlowDetail("second", str(uuid.uuid4()))
        book.add(first)
        book.add(second)
        conn.save_logbook(book)
        atoms = [_atom(i) for i in range(5)]
        conn.save_flow_progress(first, atoms[:3], flow_changed=False)
        conn.save_flow_progress(first, atoms[:3], flow_changed=False)  # all present now
        conn.save_flow_progress(second, atoms[3:], flow_changed=True)
        assert {ad.uuid for ad in conn.get_flow_details(first.uuid)} == {ad.uuid for ad in atoms[:3]}
        assert {ad.uuid for ad in conn.get_atoms_for_flow(second.uuid)} == {ad.uuid for ad in atoms[3:]}


def test_an_atom_saved_under_another_flow_moves_to_it(document_backend: Backend) -> None:
    with document_backend.get_connection() as conn:
        conn.upgrade()
        book = LogBook("moves")
        first, second = FlowDetail("first", str(uuid.uuid4())), FlowDetail("second", str(uuid.uuid4()))
        ad = _atom(0)
        first.add(ad)
        book.add(first)
        book.add(second)
        conn.save_logbook(book)
        second.add(ad.copy())
        conn.update_flow_details(second)
        assert [got.uuid for got in conn.get_flow_details(second.uuid)] == [ad.uuid]
        assert list(conn.get_flow_details(first.uuid)) == []


def test_destroying_a_book_removes_the_links_of_its_flows(document_backend: Backend) -> None:
    store = _inner_store(document_backend)
    with document_backend.get_connection() as conn:
        conn.upgrade()
        book = LogBook("doomed")
        fd = FlowDetail("flow", str(uuid.uuid4()))
        book.add(fd)
        conn.save_logbook(book)
        conn.save_flow_progress(fd, [_atom(i) for i in range(3)])
        conn.destroy_logbook(book.uuid)
        links = store.members(fd.uuid)
        assert links.uuids == []
        assert links.version is None  # the set itself is gone too (in ZooKeeper, its znode)
        with pytest.raises(exc.NotFound):
            conn.get_flow_details(fd.uuid)


def test_saving_progress_of_a_missing_flow_is_not_found(document_backend: Backend) -> None:
    with document_backend.get_connection() as conn:
        conn.upgrade()
        missing = FlowDetail("ghost", str(uuid.uuid4()))
        for flow_changed in (False, True):
            with pytest.raises(exc.NotFound, match=missing.uuid):
                conn.save_flow_progress(missing, [_atom(0)], flow_changed=flow_changed)


def test_a_store_that_never_saw_the_atoms_still_saves_their_progress(document_backend: Backend) -> None:
    # A second backend (another process, in effect) starts knowing nothing of
    # which atoms exist: ZooKeeper's guesses are wrong and must be corrected.
    url = document_backend.conf["connection"]
    if url == "memory://":
        pytest.skip("memory backends share nothing by design")
    with document_backend.get_connection() as conn:
        conn.upgrade()
        book = LogBook("shared")
        fd = FlowDetail("flow", str(uuid.uuid4()))
        book.add(fd)
        conn.save_logbook(book)
        atoms = [_atom(i) for i in range(3)]
        conn.save_flow_progress(fd, atoms)
    other = backends.fetch({"connection": url})
    try:
        with other.get_connection() as conn:
            for ad in atoms:
                ad.state = states.SUCCESS
            conn.save_flow_progress(fd, [*atoms, _atom(3)], flow_changed=False)
            got = conn.get_flow_details(fd.uuid)
    finally:
        other.close()
    assert len(got) == 4
    assert {ad.state for ad in got if ad.name != "task-000003"} == {states.SUCCESS}


def test_dir_recovers_a_half_done_write_of_new_atoms_and_their_links(tmp_path: Path) -> None:
    made = backends.fetch(f"dir://{tmp_path}")
    conn = made.get_connection()
    conn.upgrade()
    book = LogBook("b")
    fd = FlowDetail("f", "flow-1")
    book.add(fd)
    conn.save_logbook(book)
    # A writer killed after writing its journal, before applying any of it.
    docs = [
        [
            "atoms",
            f"a{i}",
            json.dumps({"type": "TaskDetail", "atom": {"name": f"t{i}", "uuid": f"a{i}"}, "flow": "flow-1"}),
        ]
        for i in range(2)
    ]
    journal = {"version": 2, "writes": docs, "links": [["flow-1", "a0", True], ["flow-1", "a1", True]]}
    (tmp_path / "journal.json").write_text(json.dumps(journal))
    assert {ad.uuid for ad in conn.get_flow_details("flow-1")} == {"a0", "a1"}
    assert not (tmp_path / "journal.json").exists()
    assert sorted(p.name for p in (tmp_path / "members" / "flow-1").iterdir()) == ["a0", "a1"]
