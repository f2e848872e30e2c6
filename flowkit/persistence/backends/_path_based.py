"""The connection logic shared by the document-store backends (memory, dir, ZooKeeper).

Each of those backends stores three collections of JSON documents keyed by
uuid, plus the membership of atoms in flows::

    books/<uuid>  {"book": LogBook.to_dict(), "flows": [flow uuids]}
    flows/<uuid>  {"flow": FlowDetail.to_dict(), "book": book uuid,
                   "fence": {"holder": job uuid, "token": claim token} (once fenced)}
    atoms/<uuid>  {"type": "TASK_DETAIL", "atom": AtomDetail.to_dict(), "flow": flow uuid}
    members of flow <uuid>: one link per atom, kept by the store (a set entry,
        an empty file, a child znode)

(A flow or atom detail written on its own, by ``update_*_details(...,
ignore_missing=True)``, has ``null`` for its book or flow, and no link.)

A book lists its flows, so loading a book never scans. A flow does *not* list
its atoms: the engine saves progress once per task, and a list inside the flow
document would make each of those saves read and rewrite a document that grows
with the flow. A per-atom link is written once, when the atom is new (or moves
in from another flow), so a save costs the same however big the flow is; only
loading a whole flow lists its links. A save asks whether each of its atoms is
linked to the flow (one link, not the list) and reads an atom's document only
when it is not: to learn whether it is new or another flow's, whose link it
removes. (Flow documents written before links existed may still hold an
``"atoms"`` list; readers honour it, and a save links such an atom.)

:class:`DocumentConnection` implements every
:class:`~flowkit.persistence.base.Connection` method once, over the small
:class:`DocumentStore` interface; a backend only says how to read, list and
commit documents and links and how to keep writers apart.

Every change goes through a :class:`Batch`: reads made while deciding what to
write are recorded, the writes are collected, and the store commits them as one
unit. Stores that lock (memory, dir) hold their lock over the whole read-decide-
commit step; optimistic stores (ZooKeeper) commit with version checks and raise
:class:`Conflict`, and the connection runs the step again on fresh reads.

Write fences (:meth:`DocumentConnection.fence_flow`) live in the flow's own
document, so a fenced write reads that document in its step: under the lock
of a locking store nobody can move the fence between the check and the write,
and an optimistic store's commit checks the document's version, so a fence
moved in between makes the commit fail and the step re-run (and be refused).
"""

from __future__ import annotations

import contextlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from flowkit import exceptions as exc
from flowkit._utils.records import Record
from flowkit._utils.text import error_text
from flowkit.persistence._archived import fold_listed, fold_one, is_chunked
from flowkit.persistence._json import unstorable
from flowkit.persistence.backends._missing import ATOMS, BOOKS, FLOWS, not_found
from flowkit.persistence.base import (
    AtomStatus,
    Backend,
    Connection,
    FenceRefused,
    FenceTaken,
    WriteFence,
    encode_json,
    ready_events,
)
from flowkit.persistence.models import (
    AtomDetail,
    FlowDetail,
    LogBook,
    StoredAtom,
    atom_detail_class,
    atom_detail_type,
)

__all__ = [
    "ATOMS",
    "BOOKS",
    "FLOWS",
    "MEMBERS",
    "Batch",
    "Conflict",
    "DocumentConnection",
    "DocumentStore",
    "KnownAtom",
    "Members",
    "Read",
]

KINDS = (BOOKS, FLOWS, ATOMS)
MEMBERS = "members"
"""The pseudo-kind under which :attr:`Batch.seen` records the version of a flow's links."""

_T = TypeVar("_T")
Doc = dict[str, Any]


class Read(Record):
    """One document as a store read it."""

    data: bytes
    version: Any
    """What an optimistic store checks on commit (``None`` for locking stores)."""


class Members(Record):
    """The atoms linked to a flow as a store listed them."""

    uuids: list[str]
    """In no particular order."""
    version: Any
    """Changes whenever a link is added or removed (``None`` for locking stores)."""


class KnownAtom(Record):
    """What a states read took from one atom's document (see :meth:`DocumentStore.known_atoms`)."""

    flow: str | None
    """The flow the document says the atom is in."""
    name: str
    status: AtomStatus


DELETE = None  # the pending value of a document being deleted

# How many times an optimistic store retries a step that lost a race, and
# reads that overlapped a write.
_MAX_ATTEMPTS = 20
_MAX_READ_ATTEMPTS = 200
# Reads that overlapped a write before the next one holds off the writers of
# the flows it reads (DocumentStore.excluding_writers): a monitor polling a
# flow that an engine writes without pause must still get an answer.
_OPTIMISTIC_READS = 10


class Conflict(Exception):
    """An optimistic commit lost a race; the step is re-run on fresh data."""


class DocumentStore(ABC):
    """Where documents live. Implementations are shared by all connections of a backend."""

    optimistic: bool = False
    """True when :meth:`commit` may raise :class:`Conflict` instead of locking."""

    @abstractmethod
    def describe(self) -> str:
        """Where the store is, for error messages (secrets masked)."""

    @abstractmethod
    def read(self, kind: str, key: str) -> Read | None:
        """Return ``(bytes, version)`` of one document, or ``None`` if absent."""

    def read_many(self, kind: str, keys: Sequence[str]) -> list[Read | None]:
        """:meth:`read` for several keys; stores override it to read in parallel."""
        return [self.read(kind, key) for key in keys]

    def read_many_checked(
        self, kind: str, keys: Sequence[str], seen: Mapping[tuple[str, str], Any]
    ) -> tuple[list[Read | None], bool | None]:
        """:meth:`read_many`, then (optimistic stores) :meth:`unchanged` on ``seen``.

        Optimistic stores override this to send the check right behind the
        reads, so it costs no extra round trip.

        Returns:
            the reads, and the check's outcome (``None`` when not checked).
        """
        return self.read_many(kind, keys), None

    def guess_exists(self, kind: str, keys: Sequence[str]) -> list[bool] | None:
        """(Optimistic stores) guess, without asking the server, whether documents exist.

        A commit that acts on a wrong guess fails with :class:`Conflict` (a
        create finds the document, an update misses it), and the step is run
        again with real answers. ``None``: no guess is offered.
        """
        return None

    @abstractmethod
    def linked_many(self, flow: str, atoms: Sequence[str]) -> list[bool]:
        """Whether each atom is linked to ``flow``, asking only about those links.

        The progress-saving hot path asks this instead of reading the atoms: an
        atom linked to the flow it is saved under needs nothing more, and only
        one not linked there (new, or stored under another flow) has its
        document read. Never list the flow's links here: that costs as much as
        the flow is big.
        """

    def read_and_linked(self, flow: str, atoms: Sequence[str]) -> tuple[Read | None, list[bool]]:
        """:meth:`read` a flow document and learn :meth:`linked_many` (in one round trip if possible)."""
        return self.read(FLOWS, flow), self.linked_many(flow, atoms)

    @abstractmethod
    def members(self, flow: str) -> Members:
        """The atom uuids linked to a flow (any order), and a version that changes with them."""

    def read_flow(self, key: str) -> tuple[Read | None, Members]:
        """:meth:`read` a flow document and its :meth:`members` (in one round trip if possible)."""
        return self.read(FLOWS, key), self.members(key)

    def known_atoms(self, keys: Sequence[str]) -> list[KnownAtom | None]:
        """What a states read took from each atom's document before, where it is unchanged since.

        For a store that can tell a document unchanged without reading it,
        cheaply: a monitor polls a running flow's states, and between two
        polls most of its atoms did not move. Asked in the read's consistent
        view (a locking store's lock is held). None for an atom to read; by
        default, every one.
        """
        return [None] * len(keys)

    def learn_atoms(self, found: Mapping[str, KnownAtom]) -> None:  # noqa: B027 - most stores keep none
        """Keep what a states read took from these atoms' documents (uuid -> it), read in this view.

        By default nothing is kept (:meth:`known_atoms` knows none).
        """

    @abstractmethod
    def keys(self, kind: str) -> list[str]:
        """Every key of a collection, in no particular order."""

    @abstractmethod
    def writing(self) -> AbstractContextManager[None]:
        """Hold off other writers (a lock; a no-op for optimistic stores)."""

    def reading(self) -> AbstractContextManager[None]:
        """Get a consistent view for a multi-document read; by default, the write lock."""
        return self.writing()

    def unchanged(self, seen: Mapping[tuple[str, str], Any]) -> bool:
        """(Optimistic stores) whether every document still has the version it was read at."""
        return True

    def excluding_writers(self, flows: Sequence[str]) -> AbstractContextManager[None]:
        """(Optimistic stores) hold off writes to ``flows`` (their documents and atoms) meanwhile.

        For a read that kept overlapping writes: optimistic reads of a flow
        that is written without pause can miss every time. Writers wait for
        the read to end, not fail. Locking stores need none (their
        :meth:`reading` already excludes writers): a no-op by default.
        """
        return contextlib.nullcontext()

    @abstractmethod
    def commit(self, batch: Batch) -> None:
        """Apply ``batch.writes`` and ``batch.links`` all together.

        (The ZooKeeper store writes a batch too big for one request in parts,
        each checking all that the whole would: see its ``_zk_requests``.)

        Creating a flow document creates its (empty) set of links; deleting it
        deletes them. Optimistic stores also give every flow in
        ``batch.touched`` a new :data:`MEMBERS` version, and fail with
        :class:`Conflict` if such a flow does not exist.

        Raises:
            Conflict: (optimistic stores) a document changed since ``batch`` read it.
        """

    @abstractmethod
    def ensure(self) -> None:
        """Create the collections if they do not exist."""

    @abstractmethod
    def clear(self) -> None:
        """Delete every document (need not be atomic)."""

    def validate(self) -> None:
        """Raise if the store cannot be used; by default, list one collection."""
        self.keys(BOOKS)

    def validate_readable(self) -> None:
        """Raise unless the store exists with its collections; create nothing, ask no write access.

        What a backend not writable does for ``upgrade()`` and ``validate()``: a
        reader given a mistyped location must not make it into an empty store
        that says it holds no flows, and one that may only read must not be
        refused for lacking write access. By default, :meth:`validate`.

        Raises:
            StoreMissing: no store at the location.
            StoreNotUpgraded: the store lacks its collections.
        """
        self.validate()


class Batch:
    """One read-decide-write step: records what was read, collects what to write."""

    __slots__ = ("_store", "attempt", "checked", "exists", "linked", "links", "seen", "touched", "writes")

    def __init__(self, store: DocumentStore, attempt: int = 0) -> None:
        self._store = store
        self.attempt = attempt
        """How many times this step already lost a race (stores may trust hints less)."""
        self.seen: dict[tuple[str, str], Any] = {}
        """``(kind, key)`` -> version read (``None`` when absent); ``(MEMBERS, flow)`` for links."""
        self.writes: dict[tuple[str, str], bytes | None] = {}
        """``(kind, key)`` -> new bytes, or :data:`DELETE`, in the order given."""
        self.links: dict[tuple[str, str], bool] = {}
        """``(flow, atom)`` -> ``True`` to link the atom to the flow, ``False`` to unlink it."""
        self.touched: set[str] = set()
        """Flows some of whose atoms are written (optimistic readers must notice)."""
        self.exists: dict[tuple[str, str], bool] = {}
        """Hints for writes of documents never read: whether they already exist."""
        self.linked: set[tuple[str, str]] = set()
        """``(flow, atom)`` links a write relies on, guessed or asked about without
        a version: an optimistic commit checks each still exists (the atom was not
        moved to another flow meanwhile)."""
        self.checked: bool | None = None
        """Whether every read so far is known unchanged (``None``: not known)."""

    def _decoded(self, kind: str, key: str, found: Read | None) -> Doc | None:
        where = (kind, key)
        self.seen[where] = found.version if found is not None else None
        if self.checked:
            self.checked = None  # read after the last check
        return _decode(found.data, kind, key) if found is not None else None

    def get(self, kind: str, key: str) -> Doc | None:
        """Read a document as this batch would leave it (pending writes included)."""
        where = (kind, key)
        if where in self.writes:
            data = self.writes[where]
            return _decode(data, kind, key) if data is not None else None
        return self._decoded(kind, key, self._store.read(kind, key))

    def get_many(self, kind: str, keys: Sequence[str]) -> list[Doc | None]:
        """:meth:`get` several documents, read together where the store can (recorded for checks)."""
        fresh = [key for key in keys if (kind, key) not in self.writes]
        found = dict(zip(fresh, self._store.read_many(kind, fresh), strict=True)) if fresh else {}
        return [self._decoded(kind, key, found[key]) if key in found else self.get(kind, key) for key in keys]

    def get_and_linked(self, flow: str, atoms: Sequence[str]) -> tuple[Doc | None, list[bool]]:
        """:meth:`get` a flow document and learn which ``atoms`` are linked to it (pending links included).

        The links are not recorded for checks: a caller relying on one adds it to :attr:`linked`.
        """
        if (FLOWS, flow) in self.writes:
            doc, linked = self.get(FLOWS, flow), self._store.linked_many(flow, atoms)
        else:
            found, linked = self._store.read_and_linked(flow, atoms)
            doc = self._decoded(FLOWS, flow, found)
        if self.links:  # (a fresh batch, as on the hot path, has none)
            linked = [self.links.get((flow, atom), here) for atom, here in zip(atoms, linked, strict=True)]
        return doc, linked

    def _pending_members(self, flow: str, stored: Iterable[str]) -> list[str]:
        result = dict.fromkeys(stored)
        for (linked_flow, atom), add in self.links.items():
            if linked_flow != flow:
                continue
            if add:
                result[atom] = None
            else:
                result.pop(atom, None)
        return list(result)

    def members(self, flow: str) -> list[str]:
        """The atoms linked to a flow, as this batch would leave them."""
        stored = self._store.members(flow)
        self.seen[(MEMBERS, flow)] = stored.version
        if self.checked:
            self.checked = None
        return self._pending_members(flow, stored.uuids)

    def get_flow(self, key: str) -> tuple[Doc | None, list[str]]:
        """:meth:`get` a flow document and its :meth:`members` together."""
        if (FLOWS, key) in self.writes:
            return self.get(FLOWS, key), self.members(key)
        found, stored = self._store.read_flow(key)
        self.seen[(MEMBERS, key)] = stored.version
        return self._decoded(FLOWS, key, found), self._pending_members(key, stored.uuids)

    def read_many(self, kind: str, keys: Sequence[str]) -> list[Doc | None]:
        """Read several documents (not recorded for conflict checks), checking the earlier reads."""
        if any((kind, key) in self.writes for key in keys):  # pending writes win over the store
            return [self.get(kind, key) for key in keys]
        found, checked = self._store.read_many_checked(kind, keys, self.seen)
        if checked is not None and self.checked is not False:
            self.checked = checked
        return [
            _decode(item.data, kind, key) if item is not None else None
            for key, item in zip(keys, found, strict=True)
        ]

    @property
    def consistent(self) -> bool:
        """Whether the reads are known to form one snapshot without a further check."""
        if self.checked is not None:
            return self.checked
        return len(self.seen) <= 1  # a single document is always read whole

    def put(self, kind: str, key: str, doc: Doc, exists: bool | None = None) -> None:
        self.writes[(kind, key)] = _encode(doc, kind, key)
        if exists is not None:
            self.exists[(kind, key)] = exists

    def delete(self, kind: str, key: str) -> None:
        self.writes[(kind, key)] = DELETE

    def link(self, flow: str, atom: str) -> None:
        self.links[(flow, atom)] = True
        self.touched.add(flow)

    def unlink(self, flow: str, atom: str) -> None:
        self.links[(flow, atom)] = False
        self.touched.add(flow)


def _encode(doc: Doc, kind: str, key: str) -> bytes:
    try:
        return encode_json(doc).encode()
    except (TypeError, ValueError, RecursionError) as err:
        # A document holds its record under the kind's singular ("atom": {"name": ...}).
        name = (doc.get(kind[:-1]) or {}).get("name")
        whose = f"{kind[:-1]} {key}" if name is None else f"{kind[:-1]} {name!r} ({key})"
        raise unstorable(f"data of {whose}", err, error=exc.StorageFailure) from err


def _decode(data: bytes, kind: str, key: str) -> Doc:
    try:
        doc: Doc = json.loads(data)
    except ValueError as err:
        raise exc.StorageFailure(f"stored {kind[:-1]} {key} is not valid JSON") from err
    return doc


def _add_unique(items: list[str], key: str) -> bool:
    if key in items:
        return False
    items.append(key)
    return True


def _atom_uuids(doc: Doc, members: list[str]) -> list[str]:
    """A flow's atoms: its links, plus any listed in a flow document of the older layout."""
    legacy: list[str] | None = doc.get("atoms")
    return list(dict.fromkeys(legacy + members)) if legacy else members


class DocumentConnection(Connection):
    """A :class:`~flowkit.persistence.base.Connection` over a :class:`DocumentStore`."""

    supports_fences = True

    def __init__(self, backend: Backend, store: DocumentStore) -> None:
        super().__init__(backend)
        self._store = store
        # Read once: every write step asks it, the engine's per-task save among them.
        self._writable = backend.writable

    # -- plumbing -------------------------------------------------------------

    @contextlib.contextmanager
    def _failing(self, operation: str, uuid: str | None = None) -> Iterator[None]:
        """Turn store errors into StorageFailure naming the operation and uuid.

        flowkit's own errors pass unchanged, the refused merge of details of two
        kinds (``exc.NotImplementedError``, not a ``TaskFlowException``) among them:
        they are the caller's, not the store's.
        """
        try:
            yield
        except (exc.TaskFlowException, exc.NotImplementedError):
            raise
        except Exception as err:
            what = f"{operation} of {uuid}" if uuid else operation
            raise exc.quoting_cause(
                exc.StorageFailure(f"{what} failed on {self._store.describe()}: {error_text(err)}")
            ) from err

    def _step(self, operation: str, uuid: str | None, body: Callable[[Batch], _T]) -> _T:
        """Run ``body`` on a fresh batch and commit it (again if it lost a race).

        Raises:
            StoreReadOnly: the backend is not writable (before anything is read or written).
        """
        if not self._writable:
            raise exc.StoreReadOnly(location=self._store.describe(), operation=operation)
        with self._failing(operation, uuid):
            for attempt in range(_MAX_ATTEMPTS):
                with self._store.writing():
                    batch = Batch(self._store, attempt)
                    result = body(batch)
                    try:
                        if batch.writes or batch.links:
                            self._store.commit(batch)
                    except Conflict:
                        continue
                    return result
            raise exc.StorageFailure(f"{operation} of {uuid}: too much contention, gave up")

    def _read(self, operation: str, uuid: str | None, body: Callable[[Batch], _T]) -> _T:
        """Run a multi-document read on a consistent view of the store."""
        with self._failing(operation, uuid):
            if not self._store.optimistic:
                with self._store.reading():
                    return body(Batch(self._store))
            # No lock to hold: read, then check that nothing read has changed
            # since. Every write of an atom gives its flow a new MEMBERS
            # version (Batch.touched), so unchanged members mean untorn atoms.
            # After a few misses, the flows read so far are read with their
            # writers held off, so a flow written without pause is read too.
            flows: set[str] = set()
            for attempt in range(_MAX_READ_ATTEMPTS):
                batch = Batch(self._store, attempt)
                held = sorted(flows) if attempt >= _OPTIMISTIC_READS else []
                with self._store.excluding_writers(held):
                    result = body(batch)
                    if batch.checked is not False and (batch.consistent or self._store.unchanged(batch.seen)):
                        return result
                flows.update(key for kind, key in batch.seen if kind in (FLOWS, MEMBERS))
            raise exc.StorageFailure(f"{operation} of {uuid}: data kept changing while read, gave up")

    # -- loading --------------------------------------------------------------

    @staticmethod
    def _must(batch: Batch, kind: str, key: str) -> Doc:
        doc = batch.get(kind, key)
        if doc is None:
            raise not_found(kind, key)
        return doc

    @staticmethod
    def _must_flow(batch: Batch, key: str) -> tuple[Doc, list[str]]:
        doc, members = batch.get_flow(key)
        if doc is None:
            raise not_found(FLOWS, key)
        return doc, _atom_uuids(doc, members)

    def _atoms(self, batch: Batch, flow_uuid: str, uuids: Sequence[str]) -> list[AtomDetail]:
        return [_atom_from(doc) for doc in self._atom_docs(batch, flow_uuid, uuids) if doc is not None]

    def _atom_docs(self, batch: Batch, flow_uuid: str, uuids: Sequence[str]) -> list[Doc | None]:
        """The documents of the flow's atoms ``uuids``, decoded (no detail built), one for each.

        None for a member to skip: gone, or moved to another flow (changed by
        someone else mid-read, on an optimistic store).

        Raises:
            StorageFailure: (locking stores) a linked atom has no document.
        """
        docs = batch.read_many(ATOMS, uuids)
        if not self._store.optimistic:
            # Read under the store's lock: a linked atom without its document is
            # damage (a deleted file), not a race. Resuming without it would run
            # that atom again as if it never had: refuse instead.
            for key, doc in zip(uuids, docs, strict=True):
                if doc is None:
                    raise exc.StorageFailure(
                        f"atom {key} of flow {flow_uuid} is linked but its record is missing "
                        f"from {self._store.describe()}; the store is damaged"
                    )
        # A member gone (or moved to another flow) was changed by someone else mid-read: skip it.
        return [doc if doc is not None and doc["flow"] == flow_uuid else None for doc in docs]

    def _flow(self, batch: Batch, key: str, lazy: bool) -> FlowDetail | None:
        if lazy:
            doc = batch.get(FLOWS, key)
            return FlowDetail.from_dict(doc["flow"]) if doc is not None else None
        doc, members = batch.get_flow(key)
        if doc is None:
            return None
        fd = FlowDetail.from_dict(doc["flow"])
        for ad in self._atoms(batch, key, _atom_uuids(doc, members)):
            fd.add(ad)
        return fd

    def _flows(self, batch: Batch, uuids: Iterable[str], lazy: bool) -> list[FlowDetail]:
        return [fd for fd in (self._flow(batch, key, lazy) for key in uuids) if fd is not None]

    def _book(self, batch: Batch, doc: Doc, lazy: bool) -> LogBook:
        book = LogBook.from_dict(doc["book"], unmarshal_time=True)
        if lazy:  # as in TaskFlow: a lazy book is the book alone, without its flows
            return book
        stored_update = book.updated_at
        for fd in self._flows(batch, doc["flows"], lazy=False):
            book.add(fd)
        book.updated_at = stored_update  # add() stamps "now"; the stored time is the truth
        return book

    # -- Connection API: reading ------------------------------------------------

    def get_logbook(self, book_uuid: str, lazy: bool = False) -> LogBook:
        return self._read(
            "get_logbook", book_uuid, lambda b: self._book(b, self._must(b, BOOKS, book_uuid), lazy)
        )

    def get_logbooks(self, lazy: bool = False) -> Iterator[LogBook]:
        with self._failing("get_logbooks"):
            keys = self._store.keys(BOOKS)
        for key in keys:
            with contextlib.suppress(exc.NotFound):  # destroyed since we listed it
                yield self.get_logbook(key, lazy=lazy)

    def get_flows_for_book(self, book_uuid: str, lazy: bool = False) -> Iterator[FlowDetail]:
        def body(batch: Batch) -> list[FlowDetail]:
            return self._flows(batch, self._must(batch, BOOKS, book_uuid)["flows"], lazy)

        return iter(self._read("get_flows_for_book", book_uuid, body))

    def get_flow_details(self, fd_uuid: str, lazy: bool = False) -> FlowDetail:
        def body(batch: Batch) -> FlowDetail:
            fd = self._flow(batch, fd_uuid, lazy)
            if fd is None:
                raise not_found(FLOWS, fd_uuid)
            return fd

        return self._read("get_flow_details", fd_uuid, body)

    def get_atoms_for_flow(self, fd_uuid: str) -> Iterator[AtomDetail]:
        def body(batch: Batch) -> list[AtomDetail]:
            _doc, uuids = self._must_flow(batch, fd_uuid)
            # Chunks of a long history are records of the flow, not atoms (see _archived).
            return fold_listed(self._atoms(batch, fd_uuid, uuids))

        return iter(self._read("get_atoms_for_flow", fd_uuid, body))

    def get_atom_states(self, fd_uuid: str) -> dict[str, AtomStatus]:
        """Each atom's status by name, from its stored document, building no detail.

        The full read's path (the flow's links, then its atoms' documents, on
        one consistent view: under the lock, or checked as every optimistic
        read is), taking of each document only what a status needs. A
        document holds the state and the event log with the results, so it
        is read and decoded whole: what a poll of a running flow saves is the
        documents that did not change since the last poll, which a store that
        can tell so without reading them (the directory's, by each file's
        signature: :meth:`DocumentStore.known_atoms`) does not read again.

        Raises:
            NotFound: no such flow detail (as :meth:`get_flow_details` says it).
        """

        def body(batch: Batch) -> dict[str, AtomStatus]:
            _doc, uuids = self._must_flow(batch, fd_uuid)
            return self._statuses(batch, fd_uuid, uuids)

        return self._read("get_atom_states", fd_uuid, body)

    def _statuses(self, batch: Batch, flow_uuid: str, uuids: Sequence[str]) -> dict[str, AtomStatus]:
        """The status of each atom of ``uuids`` (the flow's, in the full read's order) by name.

        What :meth:`~flowkit.persistence.base.Connection.get_atom_states`'s default
        answers from the flow read whole, without building the details. Only a
        record of a chunked history (an owner, whose events are partly in other
        records, or one of those chunks: see :mod:`~flowkit.persistence._archived`)
        is made a detail, and folded as the full read folds them
        (:func:`~flowkit.persistence._archived.fold_listed`): rare, and right
        by construction (and never kept for the next read). Of two atoms with
        one name, the later one is kept, at the first one's place,
        as the default's dict keeps it.
        """
        known = self._store.known_atoms(uuids)
        unread = [uuid for uuid, atom in zip(uuids, known, strict=True) if atom is None]
        docs = dict(zip(unread, self._atom_docs(batch, flow_uuid, unread), strict=True)) if unread else {}
        chunked: list[AtomDetail] = []
        learned: dict[str, KnownAtom] = {}
        for uuid, doc in docs.items():
            if doc is None:
                continue
            stored = StoredAtom.of(doc["atom"])
            if is_chunked(stored.meta):
                chunked.append(_atom_from(doc))
                continue
            status = AtomStatus(stored.state, stored.intention, ready_events(stored.meta))
            learned[uuid] = KnownAtom(flow_uuid, stored.name, status)  # (the doc's flow: see _atom_docs)
        if learned:
            self._store.learn_atoms(learned)
        folded = {ad.uuid: ad for ad in fold_listed(chunked)}
        found: dict[str, AtomStatus] = {}
        for uuid, before in zip(uuids, known, strict=True):
            atom = before if before is not None else learned.get(uuid)
            if atom is not None:
                if atom.flow == flow_uuid:  # (a known atom moved to another flow is no longer this one's)
                    found[atom.name] = atom.status
                continue
            owner = folded.get(uuid)
            if owner is not None:  # (else gone, another flow's, or a chunk of a history)
                found[owner.name] = AtomStatus.of(owner)
        return found

    def get_atom_details(self, ad_uuid: str) -> AtomDetail:
        def body(batch: Batch) -> AtomDetail:
            found = _atom_from(self._must(batch, ATOMS, ad_uuid))
            return fold_one(
                found, lambda keys: [_atom_from(doc) if doc else None for doc in batch.read_many(ATOMS, keys)]
            )

        return self._read("get_atom_details", ad_uuid, body)

    # -- Connection API: writing ------------------------------------------------

    def _merge_atom(self, batch: Batch, ad: AtomDetail, flow_uuid: str | None) -> None:
        """Merge ``ad`` into its stored document, under ``flow_uuid`` (None: in no flow)."""
        stored_doc = batch.get(ATOMS, ad.uuid)
        merged = ad
        if stored_doc is None:
            if flow_uuid is not None:
                batch.link(flow_uuid, ad.uuid)
        else:
            # A detail of another kind does not merge: merge() raises, as TaskFlow's and
            # the SQL backend's do, before anything of this step is written.
            merged = _atom_from(stored_doc).merge(ad)
            if stored_doc["flow"] != flow_uuid:  # moved to another flow (or out of none)
                if stored_doc["flow"] is not None:
                    batch.unlink(stored_doc["flow"], ad.uuid)
                if flow_uuid is not None:
                    batch.link(flow_uuid, ad.uuid)
        batch.put(ATOMS, ad.uuid, _atom_doc(merged, flow_uuid))
        if flow_uuid is not None:
            batch.touched.add(flow_uuid)

    def _merge_flow(self, batch: Batch, fd: FlowDetail, doc: Doc | None, book_uuid: str | None) -> None:
        """Merge ``fd`` and its atoms into its stored document, under ``book_uuid`` (None: in no book)."""
        if doc is None:
            doc = {"flow": fd.to_dict(), "book": book_uuid}
        else:
            doc["flow"] = FlowDetail.from_dict(doc["flow"]).merge(fd).to_dict()
            if doc.get("book") is None:  # written alone (ignore_missing); now in a book
                doc["book"] = book_uuid
        batch.put(FLOWS, fd.uuid, doc)
        for ad in fd:
            self._merge_atom(batch, ad, fd.uuid)

    def save_logbook(self, book: LogBook) -> LogBook:
        def body(batch: Batch) -> LogBook:
            doc = batch.get(BOOKS, book.uuid)
            if doc is None:
                doc = {"book": book.to_dict(marshal_time=True), "flows": []}
            else:
                stored = LogBook.from_dict(doc["book"], unmarshal_time=True).merge(book)
                doc["book"] = stored.to_dict(marshal_time=True)
            for fd in book:
                self._merge_flow(batch, fd, batch.get(FLOWS, fd.uuid), book.uuid)
                _add_unique(doc["flows"], fd.uuid)
            batch.put(BOOKS, book.uuid, doc)
            return self._book(batch, batch.get(BOOKS, book.uuid) or doc, lazy=False)

        return self._step("save_logbook", book.uuid, body)

    def update_flow_details(self, flow_detail: FlowDetail, ignore_missing: bool = False) -> FlowDetail:
        """Merge ``flow_detail`` into its stored version and upsert its atom details.

        Args:
            flow_detail: the flow detail to write.
            ignore_missing: as in TaskFlow's path-based backends: a flow detail
                never saved is written as it is, in no logbook (readable by
                :meth:`get_flow_details`; a later ``save_logbook`` adopts it),
                instead of raising ``NotFound``.

        Raises:
            NotFound: the flow detail was never saved and ``ignore_missing`` is false.
        """

        def body(batch: Batch) -> FlowDetail:
            key = flow_detail.uuid
            doc = batch.get(FLOWS, key) if ignore_missing else self._must(batch, FLOWS, key)
            self._merge_flow(batch, flow_detail, doc, doc["book"] if doc is not None else None)
            merged = self._flow(batch, flow_detail.uuid, lazy=False)
            assert merged is not None  # written by this very batch
            return merged

        return self._step("update_flow_details", flow_detail.uuid, body)

    def update_atom_details(self, atom_detail: AtomDetail, ignore_missing: bool = False) -> AtomDetail:
        """Merge ``atom_detail`` into its stored version.

        Args:
            atom_detail: the atom detail to write.
            ignore_missing: as in TaskFlow's path-based backends: an atom detail
                never saved is written as it is, in no flow detail (readable by
                :meth:`get_atom_details`; a later save of a flow detail holding it
                adopts it), instead of raising ``NotFound``.

        Raises:
            NotFound: the atom detail was never saved and ``ignore_missing`` is false.
        """

        def body(batch: Batch) -> AtomDetail:
            key = atom_detail.uuid
            doc = batch.get(ATOMS, key) if ignore_missing else self._must(batch, ATOMS, key)
            self._merge_atom(batch, atom_detail, doc["flow"] if doc is not None else None)
            return _atom_from(self._must(batch, ATOMS, atom_detail.uuid))

        return self._step("update_atom_details", atom_detail.uuid, body)

    def save_flow_progress(
        self,
        flow_detail: FlowDetail,
        atom_details: Sequence[AtomDetail],
        flow_changed: bool = True,
    ) -> None:
        # The engine's hot path: one flow document and the given atoms are
        # read or written, never anything whose size grows with the flow.
        flow_uuid = flow_detail.uuid
        uuids = [ad.uuid for ad in atom_details]

        def body(batch: Batch) -> None:
            guess = self._store.guess_exists(ATOMS, uuids) if batch.attempt == 0 else None
            if guess is not None and atom_details and not flow_changed:
                # Nothing to read: the commit fails if the flow is gone (see
                # DocumentStore.commit) or a guess is wrong; the next attempt reads.
                doc, linked = None, guess
            else:
                if guess is not None:
                    doc, linked = batch.get(FLOWS, flow_uuid), guess
                else:
                    doc, linked = batch.get_and_linked(flow_uuid, uuids)
                if doc is None:
                    raise not_found(FLOWS, flow_uuid)
            _put_progress(batch, flow_detail, atom_details, linked, guess, doc if flow_changed else None)

        self._step("save_flow_progress", flow_uuid, body)

    # -- Connection API: write fences -------------------------------------------

    def fence_flow(
        self, fd_uuid: str, fence: WriteFence, *, take_over: bool | WriteFence = True
    ) -> FlowDetail:
        """Store ``fence`` in the flow's document and read the flow, in one step.

        ``take_over`` as :meth:`flowkit.persistence.base.Connection.fence_flow`,
        checked in the same step as the change.

        Raises:
            NotFound: no such flow detail.
            FenceRefused: a later claim of the same job holds the fence, or
                another job's fence that ``take_over`` does not let go.
        """
        return self.take_fence(fd_uuid, fence, take_over=take_over).flow

    def take_fence(
        self, fd_uuid: str, fence: WriteFence, *, take_over: bool | WriteFence = True
    ) -> FenceTaken:
        """:meth:`fence_flow`, with the fence the document held before, read in that same step."""

        def body(batch: Batch) -> FenceTaken:
            doc = batch.get(FLOWS, fd_uuid)
            if doc is None:
                raise not_found(FLOWS, fd_uuid)
            current = _fence_of(doc)
            if current is not None and current.holder == fence.holder and current.token > fence.token:
                raise FenceRefused.make(fd_uuid, fence, current, "fencing")
            another = current is not None and current.holder != fence.holder
            if another and take_over is not True and (take_over is False or current != take_over):
                raise FenceRefused.make(fd_uuid, fence, current, "fencing")
            # Written even when unchanged: an optimistic store's commit then checks the reads below.
            doc["fence"] = {"holder": fence.holder, "token": fence.token}
            batch.put(FLOWS, fd_uuid, doc)
            # Read in the same step: the lock (or the commit's version checks of the
            # flow's links) keeps every atom write either before the fence or refused.
            fd = self._flow(batch, fd_uuid, lazy=False)
            assert fd is not None  # read just above
            return FenceTaken(fd, current)

        return self._step("fence_flow", fd_uuid, body)

    def flow_fence(self, fd_uuid: str) -> WriteFence | None:
        """The write fence the flow's document holds now (None: never fenced).

        Raises:
            NotFound: no such flow detail.
        """

        def body(batch: Batch) -> WriteFence | None:
            doc = batch.get(FLOWS, fd_uuid)
            if doc is None:
                raise not_found(FLOWS, fd_uuid)
            return _fence_of(doc)

        return self._read("flow_fence", fd_uuid, body)

    def save_flow_progress_fenced(
        self,
        flow_detail: FlowDetail,
        atom_details: Sequence[AtomDetail],
        flow_changed: bool,
        fence: WriteFence,
    ) -> None:
        """:meth:`save_flow_progress` in a step that first finds ``fence`` in the flow's document.

        Raises:
            NotFound: no such flow detail.
            FenceRefused: the flow detail is fenced for someone else (or not at all);
                nothing was written.
        """
        flow_uuid = flow_detail.uuid
        uuids = [ad.uuid for ad in atom_details]

        def body(batch: Batch) -> None:
            # Always read the flow document (never guess): its version is what an
            # optimistic store checks at commit, so a fence moved meanwhile fails it.
            # The atoms' links are asked about with it; a guess only spares reading new atoms.
            guess = self._store.guess_exists(ATOMS, uuids) if batch.attempt == 0 else None
            doc, linked = batch.get_and_linked(flow_uuid, uuids)
            if doc is None:
                raise not_found(FLOWS, flow_uuid)
            current = _fence_of(doc)
            if current != fence:
                raise FenceRefused.make(flow_uuid, fence, current, "writing progress of")
            _put_progress(batch, flow_detail, atom_details, linked, guess, doc if flow_changed else None)

        self._step("save_flow_progress_fenced", flow_uuid, body)

    def destroy_logbook(self, book_uuid: str) -> None:
        def body(batch: Batch) -> None:
            doc = self._must(batch, BOOKS, book_uuid)
            for fd_uuid in doc["flows"]:
                flow, members = batch.get_flow(fd_uuid)
                if flow is None:
                    continue
                for ad_uuid in _atom_uuids(flow, members):
                    batch.delete(ATOMS, ad_uuid)
                for ad_uuid in members:
                    batch.unlink(fd_uuid, ad_uuid)
                batch.delete(FLOWS, fd_uuid)
            batch.delete(BOOKS, book_uuid)

        self._step("destroy_logbook", book_uuid, body)

    # -- Connection API: housekeeping -------------------------------------------

    def upgrade(self) -> None:
        """Create the store's collections; on a backend not writable, check they exist instead.

        Raises:
            StoreMissing: (not writable) no store at the location (it is named).
            StoreNotUpgraded: (not writable) the store lacks its collections; the
                message names ``flowkit db upgrade``.
        """
        with self._failing("upgrade"):
            if self._writable:
                self._store.ensure()
            else:
                self._store.validate_readable()

    def validate(self) -> None:
        with self._failing("validate"):
            if self._writable:
                self._store.validate()
            else:
                self._store.validate_readable()

    def clear_all(self) -> None:
        if not self._writable:
            raise exc.StoreReadOnly(location=self._store.describe(), operation="clear_all")
        with self._failing("clear_all"):
            self._store.clear()

    def close(self) -> None:
        """Nothing to release: the store belongs to the backend."""


def _put_progress(
    batch: Batch,
    flow_detail: FlowDetail,
    atom_details: Sequence[AtomDetail],
    linked: Sequence[bool],
    guess: Sequence[bool] | None,
    flow_doc: Doc | None,
) -> None:
    """Write progress: the flow's state and meta into ``flow_doc`` (None: unchanged), then the atoms.

    ``linked`` says which atoms are linked to the flow already: those are
    simply rewritten (without reading them, the common case), and
    :attr:`Batch.linked` lets an optimistic commit check their links are still
    there. Any other atom is read, to learn where it is: absent (new), in no
    flow, or under another flow; it is then linked here and unlinked there, as
    the SQL backend moves it. An atom that ``guess`` (the store's guess, when
    it offered one) says is absent is not read either: it is written as new,
    and an optimistic commit fails if it exists after all.
    """
    flow_uuid = flow_detail.uuid
    if flow_doc is not None:
        flow_doc["flow"]["state"] = flow_detail.state
        flow_doc["flow"]["meta"] = flow_detail.meta
        batch.put(FLOWS, flow_uuid, flow_doc)
    stored: dict[str, Doc | None] = {}
    if not all(linked):  # the rare case: some atom is new, or moves in
        to_read = [
            ad.uuid
            for index, (ad, here) in enumerate(zip(atom_details, linked, strict=True))
            if not here and (guess is None or guess[index])
        ]
        if to_read:
            stored = dict(zip(to_read, batch.get_many(ATOMS, to_read), strict=True))
    for ad, here in zip(atom_details, linked, strict=True):
        if here:
            batch.put(ATOMS, ad.uuid, _atom_doc(ad, flow_uuid), exists=True)
            batch.linked.add((flow_uuid, ad.uuid))
            continue
        found = stored.get(ad.uuid)
        batch.put(ATOMS, ad.uuid, _atom_doc(ad, flow_uuid), exists=found is not None)
        if found is not None and found["flow"] not in (None, flow_uuid):
            batch.unlink(found["flow"], ad.uuid)  # moved here from another flow
        batch.link(flow_uuid, ad.uuid)
    if atom_details:
        batch.touched.add(flow_uuid)


def _atom_doc(ad: AtomDetail, flow_uuid: str | None) -> Doc:
    return {"type": atom_detail_type(ad), "atom": ad.to_dict(), "flow": flow_uuid}


def _fence_of(doc: Doc) -> WriteFence | None:
    """The fence a flow document holds, if any."""
    held = doc.get("fence")
    return WriteFence(str(held["holder"]), int(held["token"])) if held else None


def _atom_from(doc: Doc) -> AtomDetail:
    return atom_detail_class(doc["type"]).from_dict(doc["atom"])
